"""Reductions (sum, max, min with axis/keepdims), mean, logsumexp and argmax."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import Op, TensorType, Var, dtype_error, is_float, shape_error
from ._base import as_var, normalize_axes, normalize_axis
from .registry import Case, register

_NP = {"sum": np.sum, "max": np.max, "min": np.min}


@dataclass(frozen=True)
class Reduce(Op):
    """Reduce `axes` with `kind` in sum/max/min."""

    kind: str
    axes: tuple
    keepdims: bool = False

    @property
    def name(self):
        return self.kind

    def infer(self, x):
        if self.kind != "sum":
            for a in self.axes:
                if x.shape[a] == 0:
                    raise shape_error(self.kind, f"zero-size axis {a} of {x.shape} has no {self.kind}")
        return (TensorType(x.dtype, _reduced(x.shape, self.axes, self.keepdims)),)

    def infer_shape(self, node, shapes):
        if self.kind != "sum" and any(shapes[0][a] == 0 for a in self.axes):
            from ..core import ShapeError

            raise ShapeError(f"{self.kind}: zero-size axis in call-time shape {tuple(shapes[0])}")
        return [_reduced(shapes[0], self.axes, self.keepdims)]

    def perform(self, node, x):
        return (np.asarray(_NP[self.kind](x, axis=self.axes, keepdims=self.keepdims), dtype=x.dtype),)

    def vjp(self, node, cotangents):
        from .elementwise import cast, divide, equal, multiply
        from .shape import ExpandDims, broadcast_like

        (g,) = cotangents
        x, out = node.inputs[0], node.outputs[0]
        if not self.keepdims and self.axes:
            g = ExpandDims(self.axes)(g)
            out = ExpandDims(self.axes)(out)
        if self.kind == "sum":
            return [broadcast_like(g, x)]
        # max/min: the gradient is shared evenly between tied extrema.
        mask = cast(equal(x, out), x.dtype)
        return [multiply(g, divide(mask, sum(mask, self.axes, keepdims=True)))]


def _reduced(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce(kind, x, axis, keepdims):
    x = as_var(x)
    axes = normalize_axes(axis, x.shape, kind)
    if kind == "sum" and x.dtype in ("bool", "int32"):
        from .elementwise import cast

        x = cast(x, "int64")  # NumPy sums small ints in int64
    if not axes:
        return x
    return Reduce(kind, axes, bool(keepdims))(x)


def sum(x, axis=None, keepdims: bool = False) -> Var:  # noqa: A001 - NumPy's name
    """Sum over `axis` (None = all axes).

    >>> import graphc as gc
    >>> gc.sum(gc.placeholder("x", (None, 3)), axis=0).shape
    (3,)
    """
    return _reduce("sum", x, axis, keepdims)


def max(x, axis=None, keepdims: bool = False) -> Var:  # noqa: A001
    """Maximum over `axis`; ties share the gradient evenly.

    >>> import graphc as gc
    >>> gc.max(gc.placeholder("x", (2, 3)), axis=1, keepdims=True).shape
    (2, 1)
    """
    return _reduce("max", x, axis, keepdims)


def min(x, axis=None, keepdims: bool = False) -> Var:  # noqa: A001
    """Minimum over `axis`; ties share the gradient evenly.

    >>> import graphc as gc
    >>> gc.min(gc.placeholder("x", (2, 3))).shape
    ()
    """
    return _reduce("min", x, axis, keepdims)


def mean(x, axis=None, keepdims: bool = False) -> Var:
    """Arithmetic mean over `axis`; integer inputs give float64. Unknown sizes are read at call time.

    >>> import graphc as gc
    >>> gc.mean(gc.placeholder("x", (None, 3)), axis=0).shape
    (3,)
    """
    from .elementwise import cast, divide, multiply
    from .shape import dim

    x = as_var(x)
    if not is_float(x.dtype):
        x = cast(x, "float64")
    axes = normalize_axes(axis, x.shape, "mean")
    count = 1
    for a in axes:
        count = multiply(count, dim(x, a)) if x.shape[a] is None else count * x.shape[a]
    total = sum(x, axes, keepdims)
    if isinstance(count, Var):
        return divide(total, cast(count, x.dtype))
    return divide(total, float(count)) if count != 1 else total


def logsumexp(x, axis=None, keepdims: bool = False) -> Var:
    """``log(sum(exp(x)))`` computed stably: the max is subtracted first.

    >>> import graphc as gc
    >>> gc.logsumexp(gc.placeholder("x", (4, 10)), axis=1).shape
    (4,)
    """
    from .elementwise import add, cast, equal, exp, log, subtract, where
    from .shape import Squeeze, stop_gradient

    x = as_var(x)
    if not is_float(x.dtype):
        x = cast(x, "float64")
    axes = normalize_axes(axis, x.shape, "logsumexp")
    m = stop_gradient(max(x, axes, keepdims=True))
    m = where(equal(subtract(m, m), 0), m, 0)  # an infinite max (all -inf row) must not give nan
    out = add(log(sum(exp(subtract(x, m)), axes, keepdims=True)), m)
    return out if keepdims or not axes else Squeeze(axes)(out)


@dataclass(frozen=True)
class Argmax(Op):
    """Index of the maximum along `axis` (None = of the flattened tensor), as int64."""

    axis: int | None
    differentiable = False

    def infer(self, x):
        if any(d == 0 for d in x.shape):
            raise shape_error("argmax", f"argmax of an empty tensor {x.shape}")
        shape = () if self.axis is None else tuple(d for i, d in enumerate(x.shape) if i != self.axis)
        return (TensorType("int64", shape),)

    def perform(self, node, x):
        return (np.asarray(np.argmax(x, axis=self.axis), "int64"),)

    def vjp(self, node, cotangents):
        return [None]


def argmax(x, axis: int | None = None) -> Var:
    """Index of the largest entry along `axis` (first one on ties), as int64.

    >>> import graphc as gc
    >>> gc.argmax(gc.placeholder("x", (None, 10)), axis=1).shape
    (None,)
    """
    x = as_var(x)
    if x.dtype == "bool":
        raise dtype_error("argmax", "argmax of a bool tensor; cast it first")
    return Argmax(None if axis is None else normalize_axis(axis, x.shape, "argmax"))(x)


def _sample_reduce(fn, spread=False):
    def sample(d):
        shape = d.shape(0, 3)
        axis = d.choice([None] + list(range(len(shape))) + ([tuple(range(len(shape)))] if shape else []))
        keep = d.boolean()
        return Case(lambda x: fn(x, axis, keep), [d.array(shape, -3, 3)])

    return sample


register("sum")(_sample_reduce(sum))
register("mean")(_sample_reduce(mean))
register("max")(_sample_reduce(max))
register("min")(_sample_reduce(min))
register("logsumexp")(_sample_reduce(logsumexp))


@register("argmax", differentiable=False)
def _sample_argmax(d):
    shape = d.shape(1, 3)
    axis = d.choice([None] + list(range(len(shape))))
    return Case(lambda x: argmax(x, axis), [d.array(shape)])
