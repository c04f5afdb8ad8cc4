"""softmax, log_softmax and the fused softmax cross-entropy (conv and pooling come later)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import Op, ShapeError, TensorType, Var, dtype_error, is_float, is_int, shape_error
from ._base import as_var, normalize_axis
from .registry import Case, register


def _np_log_softmax(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    z = x - m
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


@dataclass(frozen=True)
class Softmax(Op):
    """exp(x) / sum(exp(x)) along `axis`, computed after subtracting the max."""

    keeps_shape = True

    axis: int

    def infer(self, x):
        return (x,)

    def perform(self, node, x):
        return (np.exp(_np_log_softmax(x, self.axis)).astype(x.dtype),)

    def vjp(self, node, cotangents):
        from .elementwise import multiply, subtract
        from .reduce import sum

        (g,) = cotangents
        y = node.outputs[0]
        return [multiply(y, subtract(g, sum(multiply(g, y), self.axis, keepdims=True)))]


@dataclass(frozen=True)
class LogSoftmax(Op):
    """x - logsumexp(x) along `axis`."""

    keeps_shape = True

    axis: int

    def infer(self, x):
        return (x,)

    def perform(self, node, x):
        return (_np_log_softmax(x, self.axis).astype(x.dtype),)

    def vjp(self, node, cotangents):
        from .elementwise import exp, multiply, subtract
        from .reduce import sum

        (g,) = cotangents
        y = node.outputs[0]
        return [subtract(g, multiply(exp(y), sum(g, self.axis, keepdims=True)))]


@dataclass(frozen=True)
class SoftmaxCrossEntropy(Op):
    """Per-example ``-log_softmax(logits)[label]`` over the last axis, in one stable pass.

    Inputs: logits (..., C) float and integer labels (...). Its gradient is
    ``softmax(logits) - one_hot(labels)``, which never divides by a probability.
    A label outside [0, C) selects nothing, exactly as with ``one_hot``: its loss and gradient
    are 0 (so -1 can mark padding, like PyTorch's ignore_index). This keeps the stabilising
    rewrite of ``sum(one_hot(t) * log_softmax(z))`` value-preserving for every input.
    """

    def infer(self, z, t):
        if not is_float(z.dtype):
            raise dtype_error("softmax_cross_entropy", f"logits must be float, got {z.dtype}")
        if not is_int(t.dtype):
            raise dtype_error("softmax_cross_entropy", f"labels must be int32/int64, got {t.dtype}")
        if z.ndim != t.ndim + 1 or any(a is not None and b is not None and a != b
                                       for a, b in zip(z.shape[:-1], t.shape)):
            raise shape_error("softmax_cross_entropy", f"logits {z.shape} need labels of shape {z.shape[:-1]}, "
                              f"got {t.shape}")
        if z.shape[-1] is None:
            raise shape_error("softmax_cross_entropy", "the class axis must have a static size")
        return (TensorType(z.dtype, z.shape[:-1]),)

    def infer_shape(self, node, shapes):
        z, t = shapes
        if tuple(z[:-1]) != tuple(t):
            raise ShapeError(f"softmax_cross_entropy: call-time logits {tuple(z)} and labels {tuple(t)} disagree")
        return [tuple(t)]

    def perform(self, node, z, t):
        c = z.shape[-1]
        valid = (t >= 0) & (t < c)
        ls = _np_log_softmax(z, -1)
        picked = np.take_along_axis(ls, np.where(valid, t, 0)[..., None].astype(np.int64), -1)[..., 0]
        return (np.where(valid, -picked, 0).astype(z.dtype),)

    def vjp(self, node, cotangents):
        # (softmax(z) * valid - one_hot(t)) * g, written so that fusion makes it one elementwise
        # loop after two row reductions: softmax as exp(z - logsumexp(z)) (no softmax matrix
        # is stored and read back), the one-hot row as the comparison t == column (no one-hot
        # matrix), and `valid` (0 for a label outside [0, C): no gradient) from t itself
        from ..core import constant
        from .elementwise import cast, divide, equal, exp, greater_equal, less, multiply, subtract, where
        from .reduce import max, sum
        from .shape import ExpandDims, stop_gradient

        (g, ) = cotangents
        z, t = node.inputs
        c = z.shape[-1]
        last = ExpandDims((z.ndim - 1,))
        # exp(z - m) / sum(exp(z - m)): shifting by the row max (softmax does not depend on the
        # shift, so no gradient flows through it) is exact, where z - logsumexp(z) would round
        # logsumexp at the size of z
        m = stop_gradient(max(z, -1, keepdims=True))
        m = where(equal(subtract(m, m), 0), m, 0)  # an infinite max (all -inf row) must not give nan
        e = exp(subtract(z, m))
        p = divide(e, sum(e, -1, keepdims=True))
        ti = last(t)
        hot = cast(equal(ti, constant(np.arange(c, dtype=t.dtype))), z.dtype)
        valid = multiply(cast(greater_equal(ti, 0), z.dtype), cast(less(ti, c), z.dtype))
        return [multiply(last(g), subtract(multiply(p, valid), hot)), None]


def _float(x):
    from .elementwise import cast

    x = as_var(x)
    return x if is_float(x.dtype) else cast(x, "float64")


def softmax(x, axis: int = -1) -> Var:
    """Softmax along `axis` (numerically stable).

    >>> import graphc as gc
    >>> gc.softmax(gc.placeholder("z", (None, 10))).shape
    (None, 10)
    """
    x = _float(x)
    return Softmax(normalize_axis(axis, x.shape, "softmax"))(x)


def log_softmax(x, axis: int = -1) -> Var:
    """Log of the softmax along `axis`, without forming the softmax (stable for large logits).

    >>> import graphc as gc
    >>> gc.log_softmax(gc.placeholder("z", (None, 10))).shape
    (None, 10)
    """
    x = _float(x)
    return LogSoftmax(normalize_axis(axis, x.shape, "log_softmax"))(x)


def softmax_cross_entropy(logits, labels) -> Var:
    """Per-example cross-entropy of integer `labels` under ``softmax(logits)`` (last axis).
    Labels outside [0, C) contribute 0 loss and 0 gradient, as with ``one_hot``.

    >>> import graphc as gc
    >>> z, t = gc.placeholder("z", (None, 10)), gc.placeholder("t", (None,), "int32")
    >>> gc.softmax_cross_entropy(z, t).shape
    (None,)
    """
    labels = as_var(labels) if isinstance(labels, Var) else as_var(np.asarray(labels))
    return SoftmaxCrossEntropy()(_float(logits), labels)


def _sample_axis_op(fn):
    def sample(d):
        shape = d.shape(1, 3)
        axis = d.integers(-len(shape), len(shape) - 1)
        return Case(lambda x: fn(x, axis), [d.array(shape, -3, 3)])

    return sample


register("softmax")(_sample_axis_op(softmax))
register("log_softmax")(_sample_axis_op(log_softmax))


@register("softmax_cross_entropy")
def _sample_sce(d):
    batch = d.shape(0, 2)
    c = d.integers(2, 5)
    return Case(softmax_cross_entropy, [d.array(batch + (c,), -3, 3), d.int_array(batch, -1, c)], wrt=(0,))
