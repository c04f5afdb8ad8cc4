"""graphc's own float32 gemm (kernels/gc_gemm.h) against NumPy in float64: every transpose case,
ragged tiles (rows not a multiple of 8, columns not a multiple of 16 or 48, k not a multiple of
16), the serial and the threaded path, the bias and SGD folds (beta = 1, alpha != 1), batched
operands and convolutions, which call the same gemm."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")

# (n, k, m): tiny, ragged, one tile, many tiles, long k (the packed transposed-B panel), and sizes
# above the threshold where the gemm runs threaded (2^23 multiply-adds)
SHAPES = [(1, 1, 1), (3, 5, 7), (8, 16, 48), (9, 17, 49), (13, 100, 95), (64, 64, 64), (16, 784, 512),
          (130, 257, 97), (200, 300, 250), (257, 129, 300), (7, 3000, 33)]


def _want(a, b):
    return a.astype(np.float64) @ b.astype(np.float64)


def _close(got, want, k):
    # float32 sums of k products of numbers below 1: the error grows like sqrt(k) ulps of the sum
    np.testing.assert_allclose(got, want, rtol=2e-5 * max(1.0, np.sqrt(k) / 8), atol=1e-5 * np.sqrt(k))


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_matches_numpy_for_every_transpose_and_ragged_shape(ta, tb):
    a_ph, b_ph = gc.placeholder("a", (None, None)), gc.placeholder("b", (None, None))
    f = gc.function([a_ph, b_ph], (a_ph.T if ta else a_ph) @ (b_ph.T if tb else b_ph), backend="c")
    assert "gc_sgemm" in f.source
    rng = np.random.default_rng(hash((ta, tb)) % 2**32)
    for n, k, m in SHAPES:
        a = rng.random((k, n) if ta else (n, k), dtype=np.float32) - 0.5
        b = rng.random((m, k) if tb else (k, m), dtype=np.float32) - 0.5
        got = f(a, b)
        want = _want(a.T if ta else a, b.T if tb else b)
        assert got.shape == (n, m) and got.dtype == np.float32
        _close(got, want, k)
        # tiles are claimed dynamically by the threads, but each element is summed by one
        # thread in a fixed order: the same inputs give the same bits
        np.testing.assert_array_equal(f(a, b), got)


def test_gemm_reads_strided_views_and_writes_only_its_output():
    x, w = gc.placeholder("x", (None, None)), gc.placeholder("w", (None, None))
    f = gc.function([x, w], x @ w, backend="c")
    rng = np.random.default_rng(3)
    big = rng.random((40, 90), dtype=np.float32)
    a = big[3:33, 5:75]  # row stride 90, not 70
    b = rng.random((70, 50), dtype=np.float32)
    before = big.copy()
    _close(f(a, b), _want(a, b), 70)
    np.testing.assert_array_equal(big, before)


@pytest.mark.parametrize("n,k,m", [(5, 33, 61), (150, 200, 130)])
def test_bias_fold_and_sgd_update_fold(n, k, m):
    """x @ W + bias starts C from the bias row (beta = 1); W - lr * x.T @ g is one gemm with
    alpha = -lr and beta = 1 writing W's storage."""
    rng = np.random.default_rng(n)
    x = gc.placeholder("x", (None, k))
    W = gc.shared((rng.random((k, m), dtype=np.float32) - 0.5), name="W")
    bias = gc.shared((rng.random(m, dtype=np.float32) - 0.5), name="bias")
    W0, b0 = W.get_value(), bias.get_value()
    y = x @ W + bias
    loss = gc.sum(gc.square(y)) * 0.5
    f = gc.function([x], y, updates=[(W, W - 0.01 * gc.grad(loss, W))], backend="c")
    assert "gc_sgemm" in f.source
    xv = rng.random((n, k), dtype=np.float32) - 0.5
    want_y = _want(xv, W0) + b0
    _close(f(xv), want_y, k)
    _close(W.get_value(), W0 - 0.01 * (xv.astype(np.float64).T @ want_y), n)


def test_batched_matmul_and_float64_agree_with_numpy():
    rng = np.random.default_rng(5)
    a, b = gc.placeholder("a", (None, None, None)), gc.placeholder("b", (None, None, None))
    f = gc.function([a, b], a @ b, backend="c")
    av, bv = rng.random((3, 19, 70), dtype=np.float32), rng.random((3, 70, 53), dtype=np.float32)
    _close(f(av, bv), np.einsum("bij,bjk->bik", av.astype(np.float64), bv.astype(np.float64)), 70)
    a64, b64 = gc.placeholder("a", (None, None), "float64"), gc.placeholder("b", (None, None), "float64")
    g = gc.function([a64, b64], a64 @ b64, backend="c")
    x, y = rng.random((37, 41)), rng.random((41, 29))
    np.testing.assert_allclose(g(x, y), x @ y, rtol=1e-12)


def test_convolution_and_its_gradients_use_the_same_gemm_correctly():
    rng = np.random.default_rng(7)
    x = gc.placeholder("x", (4, 3, 12, 12))
    w = gc.shared((rng.random((8, 3, 3, 3), dtype=np.float32) - 0.5), name="w")
    y = gc.conv2d(x, w)
    loss = gc.sum(gc.square(y))
    f_c = gc.function([x], [y, *gc.grad(loss, [x, w])], backend="c")
    assert "gc_sgemm" in f_c.source
    f_ref = gc.function([x], [y, *gc.grad(loss, [x, w])], backend="ref")
    xv = rng.random((4, 3, 12, 12), dtype=np.float32) - 0.5
    for got, want in zip(f_c(xv), f_ref(xv)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_spinning_openmp_workers_survive_the_generated_library_being_freed():
    """Regression: a generated library brought libgomp in as its dependency, so freeing the last
    compiled function (or exiting) unmapped libgomp under a worker still spinning in it (a
    segfault at exit with OMP_WAIT_POLICY=ACTIVE)."""
    code = (
        "import gc as pygc, numpy as np, graphc as gc\n"
        "a = np.ones((256, 256), np.float32)\n"
        "for i in range(3):\n"
        "    x, y = gc.placeholder('x', (256, 256)), gc.placeholder('y', (256, 256))\n"
        "    f = gc.function([x, y], x @ y + float(i), backend='c')\n"
        "    for _ in range(20): r = f(a, a)\n"
        "    assert float(r[0, 0]) == 256.0 + i\n"
        "    del f; pygc.collect()\n"
        "print('ok')\n")
    env = {**os.environ, "OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "2", "GRAPHC_BACKEND": "c"}
    for _ in range(4):  # the crash needed a worker caught mid-spin: most runs, not every run
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])
