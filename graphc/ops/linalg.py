"""Matrix products: batched `matmul` with NumPy semantics (1-D operands included)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import Op, ShapeError, TensorType, Var, broadcast_concrete, broadcast_static, shape_error
from ._base import as_var, promote
from .registry import Case, register


@dataclass(frozen=True)
class Matmul(Op):
    """``a @ b`` for operands of rank >= 2; leading (batch) axes broadcast."""

    def infer(self, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise shape_error("matmul", f"operands need rank >= 2 here, got {a.shape} and {b.shape}")
        if a.dtype != b.dtype:
            raise shape_error("matmul", f"operands must share a dtype, got {a.dtype} and {b.dtype}")
        k1, k2 = a.shape[-1], b.shape[-2]
        if k1 is not None and k2 is not None and k1 != k2:
            raise shape_error("matmul", f"shapes {a.shape} and {b.shape} do not align: "
                              f"inner dimensions {k1} and {k2} differ")
        batch = broadcast_static([a.shape[:-2], b.shape[:-2]], "matmul")
        return (TensorType(a.dtype, batch + (a.shape[-2], b.shape[-1])),)

    def infer_shape(self, node, shapes):
        a, b = shapes
        if a[-1] != b[-2]:
            raise ShapeError(f"matmul: call-time shapes {tuple(a)} and {tuple(b)} do not align "
                             f"(inner dimensions {a[-1]} and {b[-2]})")
        sa, sb = (v.shape[:-2] for v in node.inputs)
        return [broadcast_concrete([sa, sb], [a[:-2], b[:-2]], "matmul") + (a[-2], b[-1])]

    def perform(self, node, a, b):
        return (np.matmul(a, b),)

    def vjp(self, node, cotangents):
        from .shape import swap_last, unbroadcast

        (g,) = cotangents
        a, b = node.inputs
        return [unbroadcast(matmul(g, swap_last(b)), a), unbroadcast(matmul(swap_last(a), g), b)]


def matmul(a, b) -> Var:
    """Matrix product with NumPy's rules: 1-D operands are promoted and the added axis removed,
    leading axes broadcast.

    >>> import graphc as gc
    >>> gc.matmul(gc.placeholder("x", (None, 784)), gc.placeholder("W", (784, 10))).shape
    (None, 10)
    """
    from .elementwise import cast
    from .shape import ExpandDims, Squeeze

    a, b = as_var(a), as_var(b)
    if a.ndim == 0 or b.ndim == 0:
        raise shape_error("matmul", f"scalar operands are not allowed (shapes {a.shape} and {b.shape}); use *")
    _check_matmul_shapes(a.shape, b.shape)
    dtype = promote(a, b)
    a, b = cast(a, dtype), cast(b, dtype)
    squeeze = []
    if a.ndim == 1:
        a = ExpandDims((0,))(a)
        squeeze.append(-2)
    if b.ndim == 1:
        b = ExpandDims((1,))(b)
        squeeze.append(-1)
    out = Matmul()(a, b)
    if squeeze:
        out = Squeeze(tuple(sorted(out.ndim + s for s in squeeze)))(out)
    return out


def _check_matmul_shapes(sa, sb):
    """Check alignment and batch broadcasting on the shapes the user wrote (before 1-D promotion)."""
    k1 = sa[-1]
    k2 = sb[0] if len(sb) == 1 else sb[-2]
    if k1 is not None and k2 is not None and k1 != k2:
        raise shape_error("matmul", f"shapes {sa} and {sb} do not align: inner dimensions {k1} and {k2} differ")
    ba, bb = sa[:-2], sb[:-2]
    for x, y in zip(reversed(ba), reversed(bb)):
        if x is not None and y is not None and x != y and 1 not in (x, y):
            raise shape_error("matmul", f"batch dimensions of shapes {sa} and {sb} do not broadcast ({x} vs {y})")


@register("matmul")
def _sample_matmul(d):
    n, k, m = d.integers(1, 4), d.integers(1, 4), d.integers(1, 4)
    form = d.choice(["2d", "batched", "broadcast", "vec-left", "vec-right"])
    shapes = {"2d": ((n, k), (k, m)), "batched": ((2, n, k), (2, k, m)), "broadcast": ((3, n, k), (k, m)),
              "vec-left": ((k,), (2, k, m)), "vec-right": ((n, k), (k,))}[form]
    return Case(matmul, [d.array(s) for s in shapes])
