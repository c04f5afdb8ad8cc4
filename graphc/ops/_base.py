"""Helpers shared by the op families: turning user values into Vars, and dtype promotion."""

from __future__ import annotations

import numpy as np

from ..core import Var, constant, result_dtype

PY_SCALARS = (bool, int, float)


def as_var(x, dtype: str | None = None) -> Var:
    """A Var for `x`: Vars pass through, Python scalars and arrays become constants.

    >>> as_var(2.0, "float64").dtype
    'float64'
    """
    if isinstance(x, Var):
        return x
    if isinstance(x, (np.ndarray, np.generic)) and dtype is None:
        return constant(x)
    if isinstance(x, (list, tuple)) and dtype is None:
        return constant(np.asarray(x))
    return constant(x, dtype)


def promote(*xs) -> str:
    """NumPy-2 result dtype of mixed operands (Vars and arrays are strong, Python scalars weak)."""
    parts = []
    for x in xs:
        if isinstance(x, Var):
            parts.append(x.dtype)
        elif isinstance(x, PY_SCALARS):
            parts.append(x)
        else:
            parts.append(np.asarray(x).dtype.name)
    return result_dtype(*parts)


def normalize_axis(axis: int, shape, op: str) -> int:
    """`axis` as a non-negative int; `shape` is the tensor's shape (or its rank, when the axis
    refers to a tensor not built yet, as in stack)."""
    from ..core import format_shape, shape_error

    ndim = shape if isinstance(shape, int) else len(shape)
    where = f"{ndim} dimensions" if isinstance(shape, int) else f"shape {format_shape(shape)}"
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise shape_error(op, f"axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise shape_error(op, f"axis {axis} is out of range for a tensor of {where}")
    return int(axis) % ndim


def normalize_axes(axis, shape, op: str) -> tuple[int, ...]:
    """`axis` (None, an int or a sequence) as a sorted tuple of non-negative axes."""
    from ..core import shape_error

    ndim = shape if isinstance(shape, int) else len(shape)
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = tuple(sorted(normalize_axis(a, shape, op) for a in axes))
    if len(set(out)) != len(out):
        raise shape_error(op, f"repeated axis in {axis!r}")
    return out
