"""softmax, log_softmax and the fused softmax cross-entropy (conv and pooling come later)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import Op, ShapeError, TensorType, Var, compatible, dtype_error, is_float, is_int, shape_error
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
        (g,) = cotangents
        z, t = node.inputs
        return [SoftmaxCrossEntropyGrad()(g, z, t), None]


@dataclass(frozen=True)
class SoftmaxCrossEntropyGrad(Op):
    """The gradient of `softmax_cross_entropy` w.r.t. its logits, ``g[..., None] *
    (softmax(z) * valid - one_hot(t))``, as one kernel: each row's max, sum of exponentials and
    result are computed while the row is in cache (as separate reductions and elementwise
    loops, the gradient streamed the logits from memory four times and took three exps per
    element). The softmax is exp(z - m) / sum(exp(z - m)) with m the row max (an infinite max
    counts as 0), exactly as the forward shifts; ``valid`` is 0 for a label outside [0, C).

    Inputs: g (...) the cotangent of the per-example losses, z (..., C), t (...) int labels.
    """

    def infer(self, g, z, t):
        if g.dtype != z.dtype or not compatible(g.shape, z.shape[:-1]) or not compatible(t.shape, z.shape[:-1]) \
                or not is_int(t.dtype):
            raise shape_error("softmax_cross_entropy (gradient)",
                              f"cotangent {g.dtype}{g.shape} and labels {t.dtype}{t.shape} do not match "
                              f"logits {z.dtype}{z.shape}")
        return (TensorType(z.dtype, z.shape),)

    def infer_shape(self, node, shapes):
        return [tuple(shapes[1])]

    def perform(self, node, g, z, t):
        c = z.shape[-1]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            m = np.max(z, -1, keepdims=True) if c else np.zeros(z.shape[:-1] + (1,), z.dtype)
            m = np.where(m - m == 0, m, 0)
            e = np.exp(z - m)
            p = e / np.sum(e, -1, keepdims=True)
            ti = t[..., None]
            hot = (ti == np.arange(c)).astype(z.dtype)
            valid = ((ti >= 0) & (ti < c)).astype(z.dtype)
            return (np.asarray(g[..., None] * (p * valid - hot), dtype=z.dtype),)

    def vjp(self, node, cotangents):
        # y = g * (valid * p - hot): dy/dg = valid * p - hot; through p (softmax' jacobian),
        # dz = p * (u - sum(u * p)) with u = c * g * valid
        from ..core import constant
        from .elementwise import cast, equal, greater_equal, less, multiply, subtract
        from .reduce import sum
        from .shape import ExpandDims

        (c,) = cotangents
        g, z, t = node.inputs
        last = ExpandDims((z.ndim - 1,))
        n = z.shape[-1]
        p = Softmax(z.ndim - 1)(z)
        ti = last(t)
        hot = cast(equal(ti, constant(np.arange(n, dtype=t.dtype))), z.dtype)
        valid = multiply(cast(greater_equal(ti, 0), z.dtype), cast(less(ti, n), z.dtype))
        dg = sum(multiply(c, subtract(multiply(p, valid), hot)), -1)
        u = multiply(c, multiply(last(g), valid))
        dz = multiply(p, subtract(u, sum(multiply(u, p), -1, keepdims=True)))
        return [dg, dz, None]


@dataclass(frozen=True)
class SoftmaxCrossEntropyWithGrad(Op):
    """`softmax_cross_entropy(z, t)` and its gradient ``g[..., None] * (softmax(z) * valid -
    one_hot(t))`` from one pass over the logits: the two outputs of a training step's loss, which
    the "pair" pass fuses when a graph computes both on the same logits (and the cotangent `g`
    does not depend on the loss's value). Each row's max, sum of exponentials, loss and gradient
    are computed while the row is in cache.

    Inputs: g (...), z (..., C), t (...) int labels. Outputs: the losses (...), the gradient (..., C).
    """

    nout = 2

    def infer(self, g, z, t):
        (loss,) = SoftmaxCrossEntropy().infer(z, t)
        (grad,) = SoftmaxCrossEntropyGrad().infer(g, z, t)
        return loss, grad

    def infer_shape(self, node, shapes):
        return [tuple(shapes[2]), tuple(shapes[1])]

    def perform(self, node, g, z, t):
        (loss,) = SoftmaxCrossEntropy().perform(node, z, t)
        (grad,) = SoftmaxCrossEntropyGrad().perform(node, g, z, t)
        return loss, grad

    def vjp(self, node, cotangents):
        # the outputs are SoftmaxCrossEntropy(z, t) and SoftmaxCrossEntropyGrad(g, z, t): sum
        # their vector-Jacobian products
        cl, cd = cotangents
        g, z, t = node.inputs
        dg = dz = None
        if cl is not None:
            dz = SoftmaxCrossEntropyGrad()(cl, z, t)
        if cd is not None:
            grad = SoftmaxCrossEntropyGrad()(g, z, t)
            dg, dz_grad, _ = SoftmaxCrossEntropyGrad().vjp(grad.owner, [cd])
            dz = dz_grad if dz is None else dz + dz_grad
        return [dg, dz, None]


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
