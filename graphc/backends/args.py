"""Call arguments: a value given for a placeholder becomes an array of its dtype and shape, or a
TypeError/ShapeError naming the input. `Function` uses `convert_arg` for every backend; a backend
taking other arrays too (CUDA: device arrays in place) wraps it and reuses `cast_arg`."""

from __future__ import annotations

import numpy as np

from ..core import Placeholder, ShapeError, Var, is_float, is_int, matches

_NP_DTYPES: dict[str, np.dtype] = {}


def _np_dtype(name: str) -> np.dtype:
    dt = _NP_DTYPES.get(name)
    if dt is None:
        dt = _NP_DTYPES[name] = np.dtype(name)
    return dt


def convert_arg(p: Placeholder, value, allow_downcast: bool) -> np.ndarray:
    """Turn an argument into an array of the input's dtype and check its shape; name the input.

    >>> import numpy as np, graphc as gc
    >>> convert_arg(gc.placeholder("x", (None, 2)), [[1, 2]], False).dtype
    dtype('float32')
    >>> convert_arg(gc.placeholder("x", (2,)), np.zeros(2), False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: input 'x' expects float32, got float64; pass x.astype('float32') or ...
    """
    if type(value) is np.ndarray and value.dtype == _np_dtype(p.dtype):
        # the common case, kept cheap (it runs for every argument of every call)
        if not matches(p.shape, value.shape):
            raise ShapeError(f"input {p.name!r} expects shape {p.shape}, got {value.shape}")
        return value
    if isinstance(value, Var):
        raise TypeError(f"input {p.name!r}: got a symbolic Var; functions take arrays")
    from_python = not isinstance(value, (np.ndarray, np.generic))
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"input {p.name!r}: cannot convert {type(value).__name__} to an array ({e})") from e
    want = p.dtype
    have = arr.dtype
    if have.kind not in "biuf":
        raise TypeError(f"input {p.name!r} expects {want}, got an array of {have}")
    if have != _np_dtype(want):  # not by name: a byte-swapped float32 is also named float32
        arr = cast_arg(p, arr, want, from_python, allow_downcast)
    if not matches(p.shape, arr.shape):
        raise ShapeError(f"input {p.name!r} expects shape {p.shape}, got {arr.shape}")
    return arr


def cast_arg(p: Placeholder, arr, want: str, from_python: bool, allow_downcast: bool):
    """`arr` (a NumPy or device array) as dtype `want` when the cast is allowed: safe casts,
    integers that fit, Python numbers (weak, as in NumPy), and downcasts only when
    `allow_downcast`; otherwise a TypeError naming input `p` and the fix.

    >>> import numpy as np, graphc as gc
    >>> cast_arg(gc.placeholder("i", (2,), "int32"), np.array([1, 2]), "int32", False, False).dtype
    dtype('int32')
    """
    have = arr.dtype
    if np.can_cast(have, want, "safe"):
        return arr.astype(want)
    if is_int(want) and have.kind in "iu":
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise TypeError(f"input {p.name!r} expects {want}; values of the {have.name} array do not fit")
        return arr.astype(want)
    if is_float(want) and from_python and have.kind in "biuf":  # Python numbers are weak, like NumPy's
        return arr.astype(want)
    if is_float(want) and have.kind == "f" and allow_downcast:
        return arr.astype(want)
    if allow_downcast and not (is_int(want) and have.kind == "f"):
        return arr.astype(want)
    hint = f"pass x.astype('{want}')" + ("" if is_int(want) else " or compile with allow_input_downcast=True")
    raise TypeError(f"input {p.name!r} expects {want}, got {have.name}; {hint}")
