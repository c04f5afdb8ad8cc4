"""Symbol-to-symbol reverse-mode differentiation: `grad` adds gradient nodes to the graph.

The reverse sweep walks the nodes between `wrt` and `cost` backwards, asks each op for its vjp
(built from graph ops), and sums cotangents where a Var fans out. Because the result is an
ordinary graph, it can be optimised, compiled, or differentiated again (higher-order gradients).

Before the sweep the cost's graph is put in its stable form (passes.stabilize: log(softmax) ->
log_softmax, ...) so that the gradient of a naively written loss is the stable one, never a
division by an underflowed probability.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .core import GradError, Var, compatible, is_float, toposort
from .ops import add, zeros_like


def grad(cost: Var, wrt: Var | Sequence[Var], stabilize: bool = True) -> Var | list[Var]:
    """Symbolic gradient of scalar `cost` with respect to each Var in `wrt`.

    Returns a single Var when `wrt` is a Var, else a list. A `wrt` that `cost` does not depend
    on gets zeros. Integer and bool Vars have no gradient and are refused.

    >>> import graphc as gc
    >>> x = gc.placeholder("x", (), "float64")
    >>> gx = gc.grad(x * x * x, x)
    >>> float(gc.function([x], gx)(2.0))
    12.0
    """
    single = isinstance(wrt, Var)
    wrt_list = [wrt] if single else list(wrt) if isinstance(wrt, (list, tuple)) else None
    if wrt_list is None:
        raise GradError(f"grad: wrt must be a Var or a list of Vars, got {type(wrt).__name__}")
    _check(cost, wrt_list)
    if stabilize:
        cost = _stable_form(cost, wrt_list)
    grads = _reverse_sweep([cost], [_ones_like(cost)], wrt_list)
    out = [g if g is not None else zeros_like(w) for g, w in zip(grads, wrt_list)]
    return out[0] if single else out


def vjp(outputs: Var | Sequence[Var], wrt: Var | Sequence[Var], cotangents: Var | Sequence[Var]) -> Var | list[Var]:
    """Vector-Jacobian products: the gradient of ``sum(outputs[i] * cotangents[i])`` w.r.t. `wrt`.

    The primitive under `grad` (which is vjp of a scalar cost with cotangent 1). Each cotangent
    has its output's shape and dtype. Returns a Var when `wrt` is a Var, else a list.

    >>> import numpy as np, graphc as gc
    >>> x = gc.placeholder("x", (3,), "float64")
    >>> g = gc.vjp(x * x, x, gc.constant(np.array([1.0, 0.0, 2.0])))
    >>> gc.function([x], g, backend="ref")(np.array([1.0, 2.0, 3.0]))
    array([ 2.,  0., 12.])
    """
    from .core import DTypeError, ShapeError
    from .core.types import matches

    single = isinstance(wrt, Var)
    outs, cts, wrt_list = (_var_list(a, what) for a, what in ((outputs, "outputs"), (cotangents, "cotangents"),
                                                              (wrt, "wrt")))
    if len(outs) != len(cts):
        raise GradError(f"vjp: {len(outs)} output(s) but {len(cts)} cotangent(s)")
    for i, (o, c) in enumerate(zip(outs, cts)):
        if not isinstance(o, Var) or not isinstance(c, Var):
            raise GradError(f"vjp: outputs[{i}] and cotangents[{i}] must be Vars")
        if c.dtype != o.dtype:
            raise DTypeError(f"vjp: cotangents[{i}] is {c.dtype} but outputs[{i}] is {o.dtype}")
        if len(c.shape) != len(o.shape) or not matches(o.shape, c.shape) and not matches(c.shape, o.shape):
            raise ShapeError(f"vjp: cotangents[{i}] has shape {c.shape} but outputs[{i}] has shape {o.shape}")
        if not is_float(o.dtype):
            raise GradError(f"vjp: outputs[{i}] is {o.dtype}; only float outputs carry gradients")
    _check_wrt(wrt_list, "vjp")
    grads = _reverse_sweep(outs, cts, wrt_list)
    out = [g if g is not None else zeros_like(w) for g, w in zip(grads, wrt_list)]
    return out[0] if single else out


def _var_list(arg, what: str) -> list:
    # a NumPy array is iterable too: refuse it here rather than take its rows for several arguments
    if isinstance(arg, Var):
        return [arg]
    if isinstance(arg, (list, tuple)):
        return list(arg)
    raise GradError(f"vjp: {what} must be a Var or a list of Vars, got {type(arg).__name__}"
                    + ("; wrap a value in gc.constant(...)" if what == "cotangents" else ""))


def _check(cost, wrt_list):
    if not isinstance(cost, Var):
        raise GradError(f"grad: cost must be a Var, got {type(cost).__name__}")
    if cost.ndim != 0:
        raise GradError(f"grad: cost must be a scalar (shape ()), got shape {cost.shape}; "
                        "reduce it first, e.g. cost.sum() or cost.mean()")
    if not is_float(cost.dtype):
        raise GradError(f"grad: cost must be float, got {cost.dtype}")
    _check_wrt(wrt_list, "grad")


def _check_wrt(wrt_list, who: str) -> None:
    for i, w in enumerate(wrt_list):
        if not isinstance(w, Var):
            raise GradError(f"{who}: wrt[{i}] must be a Var, got {type(w).__name__}")
        if not is_float(w.dtype):
            raise GradError(f"{who}: wrt[{i}] ({w.name or w}) is {w.dtype}; only float Vars have gradients")


def _stable_form(cost: Var, wrt_list):
    from .passes.stabilize import stabilize_vars

    (stable,) = stabilize_vars([cost])
    # A rewrite may absorb an intermediate the caller differentiates with respect to; keep the
    # original graph then (the gradient must stay connected).
    reachable = {id(v) for n in toposort([stable]) for v in (*n.inputs, *n.outputs)} | {id(stable)}
    return stable if all(id(w) in reachable for w in wrt_list) else cost


def _reverse_sweep(outputs: Sequence[Var], seeds: Sequence[Var], wrt_list) -> list[Var | None]:
    nodes = toposort(outputs)
    # Only nodes on a path from some wrt to the cost need a vjp.
    needed = {id(w) for w in wrt_list}
    for node in nodes:
        if any(id(v) in needed for v in node.inputs):
            needed.update(id(o) for o in node.outputs)
    cotangents: dict[int, list[Var]] = {}
    for o, seed in zip(outputs, seeds):
        cotangents.setdefault(id(o), []).append(seed)

    def total(v: Var) -> Var | None:
        parts = cotangents.get(id(v))
        if not parts:
            return None
        if len(parts) > 1:
            acc = parts[0]
            for p in parts[1:]:
                acc = add(acc, p)
            cotangents[id(v)] = [acc]
        return cotangents[id(v)][0]

    for node in reversed(nodes):
        if not any(id(o) in needed for o in node.outputs):
            continue
        outs = [total(o) for o in node.outputs]
        if all(g is None for g in outs) or not node.op.differentiable:
            continue
        # ops holding an inner graph (scan) differentiate it with this module's vjp
        in_grads = node.op.vjp(node, outs, vjp=vjp) if node.op.inner_graph else node.op.vjp(node, outs)
        if len(in_grads) != len(node.inputs):
            raise AssertionError(f"{node.op.name}.vjp returned {len(in_grads)} grads for {len(node.inputs)} inputs")
        for x, gx in zip(node.inputs, in_grads):
            if gx is None or id(x) not in needed or not is_float(x.dtype):
                continue
            if gx.shape != x.shape and not compatible(gx.shape, x.shape):
                raise AssertionError(f"{node.op.name}.vjp: gradient shape {gx.shape} for input {x.shape}")
            cotangents.setdefault(id(x), []).append(gx)
    return [total(w) for w in wrt_list]


def _ones_like(v: Var) -> Var:
    from .core import constant

    return constant(1, v.dtype)


def jacobian(y: Var, x: Var | Sequence[Var]) -> Var | list[Var]:
    """The Jacobian ``d y / d x`` with shape ``y.shape + x.shape``, built on `scan` as in Theano:
    one vjp per element of `y`, so the loop is not unrolled into the graph.

    `y` needs a static size. Returns a list when `x` is a list.

    >>> import numpy as np, graphc as gc
    >>> x = gc.placeholder("x", (2,), "float64")
    >>> J = gc.jacobian(x * x, x)
    >>> gc.function([x], J, backend="ref")(np.array([1.0, 3.0]))
    array([[2., 0.],
           [0., 6.]])
    """
    from .ops import one_hot, reshape, scan

    single = isinstance(x, Var)
    xs = [x] if single else list(x)
    if not isinstance(y, Var):
        raise GradError(f"jacobian: y must be a Var, got {type(y).__name__}")
    if not is_float(y.dtype):
        raise GradError(f"jacobian: y must be float, got {y.dtype}")
    if any(d is None for d in y.shape):
        raise GradError(f"jacobian: y needs a static shape, got {y.shape} (the loop runs over its elements)")
    for i, w in enumerate(xs):
        if not isinstance(w, Var) or not is_float(w.dtype):
            raise GradError(f"jacobian: x[{i}] must be a float Var")
        if sum(d is None for d in w.shape) > 1:
            raise GradError(f"jacobian: x[{i}] has more than one unknown dimension {w.shape}")
    n = 1
    for d in y.shape:
        n *= d
    y_flat = reshape(y, (n,))
    from .core import constant

    def row(i):
        grads = vjp(y_flat, xs, one_hot(i, n, y.dtype))
        return tuple(grads) if len(xs) > 1 else grads[0]

    rows = scan(row, sequences=constant(np.arange(n, dtype="int32")))
    rows = rows if isinstance(rows, list) else [rows]
    out = []
    for r, w in zip(rows, xs):
        shape = (*y.shape, *(-1 if d is None else d for d in w.shape))
        out.append(reshape(r, shape) if len(y.shape) != 1 else r)
    return out[0] if single else out


def hessian(cost: Var, x: Var | Sequence[Var]) -> Var | list[Var]:
    """The Hessian of scalar `cost`: ``jacobian(grad(cost, x), x)``, shape ``x.shape + x.shape``.

    >>> import numpy as np, graphc as gc
    >>> x = gc.placeholder("x", (2,), "float64")
    >>> H = gc.hessian(gc.sum(x ** 3), x)
    >>> gc.function([x], H, backend="ref")(np.array([1.0, 2.0]))
    array([[ 6.,  0.],
           [ 0., 12.]])
    """
    single = isinstance(x, Var)
    xs = [x] if single else list(x)
    gs = grad(cost, xs)
    out = [jacobian(g, w) for g, w in zip(gs, xs)]
    return out[0] if single else out
