"""verify_grad and check_grads: symbolic gradients against float64 central differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..autodiff import grad
from ..core import Var, constant
from ..ops import sum as gc_sum
from ..runtime import function, placeholder


class GradientError(AssertionError):
    """A symbolic gradient that disagrees with finite differences. Attributes: `input` (its
    index), `index` (the worst element), `analytic`, `numeric`, `abs_err`, `rel_err`, `order`."""

    def __init__(self, message: str, *, input: int, index: tuple, analytic: float, numeric: float,
                 abs_err: float, rel_err: float, order: int = 1):
        super().__init__(message)
        self.input, self.index, self.analytic, self.numeric = input, index, analytic, numeric
        self.abs_err, self.rel_err, self.order = abs_err, rel_err, order


def _points(inputs: Sequence) -> list[np.ndarray]:
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise TypeError(f"verify_grad: inputs must be a non-empty list of arrays, got {type(inputs).__name__}")
    pts = []
    for i, a in enumerate(inputs):
        a = np.asarray(a)
        if a.dtype.kind not in "fiub":
            raise TypeError(f"verify_grad: input {i} has dtype {a.dtype}; only real numbers are differentiable")
        pts.append(a.astype(np.float64))
    return pts


def _project(out, rng: np.random.Generator) -> Var:
    if not isinstance(out, Var):
        raise TypeError(f"verify_grad: fn must return a Var, got {type(out).__name__}")
    if out.ndim == 0:
        return out
    if any(d is None for d in out.shape):
        raise ValueError(f"verify_grad: fn's output shape {out.shape} must be static")
    # a random direction: a wrong gradient cannot hide behind a symmetric sum of the outputs
    return gc_sum(out * constant(rng.uniform(0.5, 1.5, out.shape).astype(out.dtype)))


def _numeric(f: Callable, pts: list[np.ndarray], i: int, eps: float) -> np.ndarray:
    g = np.zeros_like(pts[i])
    for k in range(pts[i].size):
        xp, xm = pts[i].copy(), pts[i].copy()
        xp.reshape(-1)[k] += eps
        xm.reshape(-1)[k] -= eps
        fp = float(f(*pts[:i], xp, *pts[i + 1:]))
        fm = float(f(*pts[:i], xm, *pts[i + 1:]))
        g.reshape(-1)[k] = (fp - fm) / (2 * eps)
    return g


def verify_grad(fn: Callable[..., Var], inputs: Sequence, n_tests: int = 2, rng=None, eps: float | None = None,
                abs_tol: float | None = None, rel_tol: float | None = None, backend: str | None = None,
                _order: int = 1) -> None:
    """Check ``gc.grad`` of `fn` at the points `inputs` against float64 central differences,
    as PyTensor's ``verify_grad``: `fn` takes one Var per input and returns a Var (a non-scalar
    output is projected on a random direction, a new one for each of the `n_tests` tests).
    An element passes when its absolute error is under `abs_tol` or its relative error
    ``|a - n| / (|a| + |n|)`` under `rel_tol` (defaults 1e-4 each; `eps` defaults to 1e-6).
    Raises `GradientError` naming the input and the worst element; returns None on success.

    >>> import numpy as np, graphc as gc
    >>> verify_grad(lambda x: gc.sin(x) * x, [np.linspace(-1, 1, 5)])
    """
    eps = 1e-6 if eps is None else float(eps)
    abs_tol = 1e-4 if abs_tol is None else float(abs_tol)
    rel_tol = 1e-4 if rel_tol is None else float(rel_tol)
    if n_tests < 1:
        raise ValueError(f"verify_grad: n_tests must be >= 1, got {n_tests}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    pts = _points(inputs)
    for _ in range(n_tests):
        vs = [placeholder(f"x{i}", p.shape, "float64") for i, p in enumerate(pts)]
        cost = _project(fn(*vs), rng)
        grads = grad(cost, vs)
        f_cost = function(vs, cost, backend=backend)
        analytic = function(vs, grads, backend=backend)(*pts)
        for i, (a, p) in enumerate(zip(analytic, pts)):
            a = np.asarray(a, np.float64).reshape(p.shape)
            n = _numeric(f_cost, pts, i, eps)
            abs_err = np.abs(a - n)
            rel_err = abs_err / np.maximum(np.abs(a) + np.abs(n), 1e-300)
            bad = (abs_err > abs_tol) & (rel_err > rel_tol) | ~np.isfinite(a)
            if bad.any():
                # the worst element: the largest absolute error among the failing ones (NaN first)
                score = np.where(bad, np.nan_to_num(abs_err, nan=np.inf), -1.0)
                k = np.unravel_index(int(np.argmax(score)), p.shape) if p.ndim else ()
                what = "gradient" if _order == 1 else f"order-{_order} derivative"
                raise GradientError(
                    f"verify_grad: the {what} with respect to input {i} (shape {p.shape}) is wrong at element "
                    f"{tuple(int(j) for j in k)}: gc.grad gives {a[k]!r}, finite differences {n[k]!r} "
                    f"(abs error {abs_err[k]:.3g} > {abs_tol:g}, rel error {rel_err[k]:.3g} > {rel_tol:g}; "
                    f"{int(bad.sum())} of {p.size} elements fail)",
                    input=i, index=tuple(int(j) for j in k), analytic=float(a[k]), numeric=float(n[k]),
                    abs_err=float(abs_err[k]), rel_err=float(rel_err[k]), order=_order)


def check_grads(fn: Callable[..., Var], args: Sequence, order: int = 2, modes: Sequence[str] = ("rev",),
                eps: float | None = None, atol: float | None = None, rtol: float | None = None, rng=None,
                backend: str | None = None) -> None:
    """JAX-style ``check_grads``: derivatives of orders 1..`order` against finite differences.
    Order k checks the gradient of (a random projection of) the order k-1 gradient, so order 2
    covers Hessian-vector products. Modes: only "rev" (reverse mode, ``gc.grad``) exists in
    graphc; asking for "fwd" raises ValueError. Raises `GradientError` on a mismatch.

    >>> import numpy as np, graphc as gc
    >>> check_grads(lambda x, y: (x * y).sum() ** 2, [np.ones(2), np.arange(2.0)], order=2)
    """
    if not 1 <= int(order) <= 3:
        raise ValueError(f"check_grads: order must be 1, 2 or 3, got {order}")
    unknown = [m for m in modes if m not in ("rev", "reverse")]
    if unknown:
        raise ValueError(f"check_grads: graphc differentiates in reverse mode only; modes={list(modes)} "
                         "(use modes=('rev',))")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    f = fn
    for k in range(1, int(order) + 1):
        verify_grad(f, args, n_tests=1, rng=rng, eps=eps, abs_tol=atol, rel_tol=rtol, backend=backend, _order=k)
        f = _projected_grad(f, rng)


def _projected_grad(f: Callable[..., Var], rng: np.random.Generator) -> Callable[..., Var]:
    seed = int(rng.integers(2**31))

    def g(*vs: Var) -> Var:
        r = np.random.default_rng(seed)  # the same projection each time g is built
        gs = grad(_project(f(*vs), r), list(vs))
        total = None
        for gi in gs:
            term = gc_sum(gi * constant(r.uniform(0.5, 1.5, gi.shape).astype(gi.dtype))) if gi.ndim else gi
            total = term if total is None else total + term
        return total

    return g
