"""Index arithmetic both C-family backends share: sizes around an axis, batch strides of a
gemm operand, and the strided-view mappings of indexing and transposes (computed per call-time
signature on the host and passed to kernels through the dimension table D)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...core import Var
from ..cexpr import C_TYPES

Shapes = dict  # id(Var) -> call-time shape


def shape_of(v: Var, shapes: Shapes) -> tuple:
    """v's call-time shape (its static shape when the signature does not list it)."""
    return tuple(shapes.get(id(v), v.shape))


def numel(v: Var) -> Callable[[Shapes], int]:
    """shapes -> number of elements of `v`."""
    return lambda shapes: int(np.prod(shape_of(v, shapes), dtype=np.int64))


def prod(parts: list[str]) -> str:
    """The C product of size expressions (1 for none)."""
    return "*".join(parts) if parts else "1"


def split3(em, v: Var, axis: int) -> tuple[str, str, str]:
    """(outer, n, inner) size expressions of v around `axis`."""
    outer = em.size(v, range(axis)) if axis else "1"
    inner = em.size(v, range(axis + 1, v.ndim)) if axis + 1 < v.ndim else "1"
    return outer, em.dim(v, axis), inner


def split3_fn(v: Var, axis: int) -> Callable[[Shapes], tuple[int, int, int]]:
    """shapes -> (outer, n, inner) of v around `axis` (the host-side twin of `split3`)."""

    def fn(shapes):
        s = shape_of(v, shapes)
        return (int(np.prod(s[:axis], dtype=np.int64)), int(s[axis]), int(np.prod(s[axis + 1:], dtype=np.int64)))

    return fn


def batch_strides(em, v: Var, mm: Var) -> list[str]:
    """Per batch axis of the gemm output `mm`, v's element stride along it (0 where v broadcasts)."""
    nb = mm.ndim - 2
    lead = nb - (v.ndim - 2)
    mat = em.size(v, [v.ndim - 2, v.ndim - 1])
    out = []
    for ax in range(nb):
        va = ax - lead
        if va < 0 or v.shape[va] == 1:
            out.append("0")
        else:
            later = em.size(v, range(va + 1, v.ndim - 2)) if va + 1 < v.ndim - 2 else "1"
            out.append(f"({later})*({mat})")
    return out


def _row_major_strides(shape) -> list[int]:
    return [int(np.prod(shape[a + 1:], dtype=np.int64)) for a in range(len(shape))]


def subtensor_mapping(idx, of: Var) -> Callable[[Shapes], tuple[int, list[tuple[int, int]]]]:
    """shapes -> (element offset, [(size, stride) per view axis]) of the view ``of[idx]``."""

    def mapping(shapes):
        xs = shape_of(of, shapes)
        strides = _row_major_strides(xs)
        base, axes, a = 0, [], 0
        for e in idx:
            if e is None:
                axes.append((1, 0))
                continue
            d = xs[a]
            if isinstance(e, int):
                base += (e % d if d else 0) * strides[a]
            else:
                start, stop, step = slice(*e[1:]).indices(d)
                n = len(range(start, stop, step))
                base += (start if n else 0) * strides[a]
                axes.append((n, step * strides[a]))
            a += 1
        return base, axes

    return mapping


def transpose_mapping(x: Var, perm: tuple[int, ...]) -> Callable[[Shapes], tuple[int, list[tuple[int, int]]]]:
    """shapes -> (0, [(size, stride) in x per output axis]) of ``transpose(x, perm)``."""

    def mapping(shapes):
        xs = shape_of(x, shapes)
        strides = _row_major_strides(xs)
        return 0, [(xs[p], strides[p]) for p in perm]

    return mapping


def local(em, v, name: str, const: bool = True) -> str:
    """Declaration of a no-alias local pointer `name` to v's buffer."""
    return f"  {'const ' if const else ''}{C_TYPES[v.dtype]} *{em.restrict} {name} = {em.ptr(v, const)};\n"
