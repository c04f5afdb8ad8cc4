"""The dtypes graphc supports, and NumPy-2 type promotion (Python scalars are weak)."""

from __future__ import annotations

import numpy as np

from .errors import DTypeError

FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("int32", "int64")
DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",)


def canonical_dtype(dtype) -> str:
    """Normalise anything NumPy understands as a dtype to one of graphc's dtype names.

    >>> canonical_dtype(np.float32), canonical_dtype("f8")
    ('float32', 'float64')
    """
    try:
        name = np.dtype(dtype).name
    except TypeError as e:
        raise DTypeError(f"not a dtype: {dtype!r}") from e
    if name not in DTYPES:
        raise DTypeError(f"dtype {name} is not supported; graphc supports {', '.join(DTYPES)}")
    return name


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    return dtype in INT_DTYPES


def result_dtype(*operands) -> str:
    """The dtype NumPy 2 gives an operation on these operands.

    Each operand is a dtype name or a Python scalar; Python scalars are "weak" (NEP 50), so
    ``float32 * 2.0`` stays float32.

    >>> result_dtype("float32", 2.0), result_dtype("int32", "float32")
    ('float32', 'float64')
    """
    args = [np.dtype(o) if isinstance(o, str) else o for o in operands]
    return canonical_dtype(np.result_type(*args))


def float_dtype_for(dtype: str) -> str:
    """The float dtype a float-valued function (exp, mean, ...) returns for input `dtype`."""
    return dtype if is_float(dtype) else "float64"
