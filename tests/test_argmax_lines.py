"""argmax as a line kernel (C and the emulated CUDA render one template): NumPy's semantics on
ties (the first maximum), NaN (the first NaN wins) and every axis, strided lines included."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import graphc as gc

BACKENDS = ["c", pytest.param("cuda", marks=pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++"))]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    if request.param == "cuda":  # the generated CUDA kernels, run by the CPU emulator
        monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")
    return request.param


@pytest.mark.parametrize("axis", [None, 0, 1, 2])
def test_argmax_matches_numpy_on_ties_and_nans(axis, backend):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, size=(4, 37, 5)).astype("float32")  # many ties
    x[1, 3, 2] = np.nan
    x[2, 10, 0] = np.nan
    x[2, 20, 0] = np.nan  # the first NaN of a line wins
    v = gc.placeholder("x", (None, 37, 5))
    f = gc.function([v], gc.argmax(v, axis), backend=backend)
    np.testing.assert_array_equal(np.asarray(f(x)), np.argmax(x, axis=axis))


def test_argmax_of_minus_infinity_rows_is_the_first_position(backend):
    x = np.full((3, 6), -np.inf, "float64")
    x[1, 4] = 0.0
    v = gc.placeholder("x", (None, 6), "float64")
    f = gc.function([v], gc.argmax(v, 1), backend=backend)
    np.testing.assert_array_equal(np.asarray(f(x)), [0, 4, 0])
