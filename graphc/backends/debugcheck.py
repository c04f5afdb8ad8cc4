"""Debug mode shared by the compiled backends: compare every kernel's outputs with the reference
backend, in schedule order, and name the first kernel that disagrees."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def close_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise agreement: a float32/float64 tolerance, NaN equal to NaN, exact otherwise."""
    if a.dtype.kind == "f":
        tol = 1e-4 if a.dtype == np.float32 else 1e-9
        return np.isclose(a, b, rtol=tol, atol=tol, equal_nan=True)
    return a == b


def check_kernels(schedule, expected: dict[int, np.ndarray], value_of: Callable, backend: str,
                  source_path: str) -> None:
    """Raise AssertionError at the first kernel output that differs from `expected` (ref values
    by Var id). `value_of(var)` returns the compiled backend's value, or None when it was not kept."""
    for i, k in enumerate(schedule.kernels):
        for v in k.outputs:
            got = value_of(v)
            if got is None:
                continue
            want = expected[id(v)]
            ok = close_mask(got, want) if got.shape == want.shape else np.zeros((), bool)
            if not ok.all():
                bad = np.argwhere(~ok)
                where = tuple(bad[0]) if len(bad) else ()
                raise AssertionError(
                    f"debug mode: kernel k{i} ({k.label}) disagrees with the reference backend on {v.type} at "
                    f"index {where}: {backend} gave {got[where] if got.shape else got!r}, ref gave "
                    f"{want[where] if want.shape else want!r}. Generated source: {source_path}")
