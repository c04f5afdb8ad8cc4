"""Weight penalties, gradient clipping and the max-norm constraint, all as graph expressions.

* `l1`, `l2`: penalty Vars to add to the loss (Keras' definitions: ``coeff * sum|w|`` and
  ``coeff * sum w**2``, no factor 1/2), summed over a list of parameters.
* `clip_by_value`, `clip_by_global_norm`: new gradient Vars from gradient Vars (use them in the
  update expressions instead of the raw gradients).
* `max_norm`: the constrained weight expression, applied after the optimizer's update
  (``updates=[(W, max_norm(W_new, 3.0))]``).

>>> import numpy as np, graphc as gc
>>> W = gc.shared(np.array([[3.0, 0.0], [4.0, 1.0]]), name="W")
>>> f = gc.function([], [l2(W, 0.5), max_norm(W, 1.0)], backend="ref")
>>> penalty, constrained = f()
>>> float(penalty), constrained.round(6).tolist()
(13.0, [[0.6, 0.0], [0.8, 1.0]])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .. import ops
from ..core import Var, constant, is_float
from ..ops import as_var

__all__ = ["clip_by_global_norm", "clip_by_value", "global_norm", "l1", "l2", "max_norm"]


def _number(x, name: str, what: str, positive: bool = False) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or not math.isfinite(x):
        raise ValueError(f"{name}: {what} must be a finite number, got {x!r}")
    if positive and not x > 0:
        raise ValueError(f"{name}: {what} must be positive, got {x!r}")
    if not positive and x < 0:
        raise ValueError(f"{name}: {what} must be non-negative, got {x!r}")
    return float(x)


def _var_list(xs, name: str, what: str) -> tuple[list[Var], bool]:
    """(list of float Vars, whether a single Var was passed)."""
    single = isinstance(xs, Var)
    if single:
        items = [xs]
    elif isinstance(xs, (list, tuple)):
        items = list(xs)
    else:
        raise TypeError(f"{name}: {what} must be a Var or a list of Vars, got {type(xs).__name__}")
    for i, v in enumerate(items):
        if not isinstance(v, Var):
            raise TypeError(f"{name}: {what}[{i}] must be a Var, got {type(v).__name__}")
        if not is_float(v.dtype):
            raise TypeError(f"{name}: {what}[{i}] ({v.name or v}) is {v.dtype}; only float Vars are accepted")
    return items, single


def _total(terms: list[Var]) -> Var:
    acc = terms[0]
    for t in terms[1:]:
        acc = acc + t
    return acc


def l1(params: Var | Sequence[Var], coeff: float = 0.01) -> Var:
    """``coeff * sum over params of sum(|w|)`` (an empty list gives a float32 zero).

    >>> import graphc as gc
    >>> l1([gc.placeholder("w", (3, 2))], 1e-4).shape
    ()
    """
    coeff = _number(coeff, "l1", "coeff")
    items, _ = _var_list(params, "l1", "params")
    if not items:
        return constant(0.0, "float32")
    return _total([ops.sum(ops.abs(p)) for p in items]) * coeff


def l2(params: Var | Sequence[Var], coeff: float = 0.01) -> Var:
    """``coeff * sum over params of sum(w**2)`` (Keras' L2: its gradient is ``2 * coeff * w``).

    >>> import graphc as gc
    >>> l2(gc.placeholder("w", (3, 2)), 1e-4).shape
    ()
    """
    coeff = _number(coeff, "l2", "coeff")
    items, _ = _var_list(params, "l2", "params")
    if not items:
        return constant(0.0, "float32")
    return _total([ops.sum(ops.square(p)) for p in items]) * coeff


def clip_by_value(grads: Var | Sequence[Var], lo: float, hi: float) -> Var | list[Var]:
    """Each gradient limited elementwise to ``[lo, hi]``; returns a Var for a Var, else a list.

    >>> import graphc as gc
    >>> clip_by_value([gc.placeholder("g", (3,))], -1.0, 1.0)[0].shape
    (3,)
    """
    for v, what in ((lo, "lo"), (hi, "hi")):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or math.isnan(v):
            raise ValueError(f"clip_by_value: {what} must be a number, got {v!r}")
    if lo > hi:
        raise ValueError(f"clip_by_value: lo ({lo}) must not exceed hi ({hi})")
    items, single = _var_list(grads, "clip_by_value", "grads")
    out = [ops.clip(g, float(lo), float(hi)) for g in items]
    return out[0] if single else out


def global_norm(grads: Var | Sequence[Var]) -> Var:
    """``sqrt(sum over grads of sum(g**2))``: the L2 norm of all gradients taken as one vector.

    >>> import graphc as gc
    >>> global_norm([gc.placeholder("a", (3,)), gc.placeholder("b", (2, 2))]).shape
    ()
    """
    items, _ = _var_list(grads, "global_norm", "grads")
    if not items:
        raise ValueError("global_norm: grads is empty")
    return ops.sqrt(_total([ops.sum(ops.square(g)) for g in items]))


def clip_by_global_norm(grads: Var | Sequence[Var], max_norm: float) -> Var | list[Var]:
    """Rescale all gradients together so that their global norm is at most `max_norm`:
    ``g * max_norm / max(global_norm, max_norm)`` (TensorFlow's rule; directions are kept, and
    nothing changes when the norm is already within the bound).

    >>> import graphc as gc
    >>> len(clip_by_global_norm([gc.placeholder("a", (3,)), gc.placeholder("b", (2,))], 5.0))
    2
    """
    max_norm = _number(max_norm, "clip_by_global_norm", "max_norm", positive=True)
    items, single = _var_list(grads, "clip_by_global_norm", "grads")
    if not items:
        return []
    norm = global_norm(items)
    scale = max_norm / ops.maximum(norm, max_norm)
    out = [g * ops.cast(scale, g.dtype) for g in items]
    return out[0] if single else out


def max_norm(W, max_value: float, axis: int | Sequence[int] = 0, eps: float = 1e-7) -> Var:
    """The max-norm constraint: ``W * min(1, max_value / (||W||_axis + eps))``, where the L2 norm is taken
    over `axis` (0: each column of a Dense kernel ``(in, out)``, i.e. each unit's incoming weights; use
    ``axis=(1, 2, 3)`` for the filters of an OIHW convolution kernel). Vectors already within the
    bound are left (almost exactly) unchanged. Use it as a post-update constraint.

    >>> import graphc as gc
    >>> max_norm(gc.placeholder("W", (784, 10)), 3.0).shape
    (784, 10)
    """
    max_value = _number(max_value, "max_norm", "max_value", positive=True)
    eps = _number(eps, "max_norm", "eps")
    W = as_var(W) if isinstance(W, Var) else as_var(np.asarray(W))
    if not is_float(W.dtype):
        raise TypeError(f"max_norm: W must be float, got {W.dtype}")
    norms = ops.sqrt(ops.sum(ops.square(W), axis, keepdims=True))
    return W * ops.minimum(max_value / (norms + eps), 1.0)
