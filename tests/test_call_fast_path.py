"""The C backend's fast path for repeat calls (`CProgram.fast_call`, issue 14 item 2): it must
give the same results and the same errors as the checking path, and fresh outputs."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

import graphc as gc
from graphc.backends.cfamily import program as cfamily_program

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def _matmul():
    a, b = gc.placeholder("a", (None, 4)), gc.placeholder("b", (4, 4))
    return gc.function([a, b], a @ b, backend="c")


def test_repeat_call_takes_the_fast_path_and_returns_fresh_outputs():
    f = _matmul()
    x = np.arange(16, dtype="float32").reshape(4, 4)
    assert f._program.fast_call((x, x)) is None  # nothing seen yet
    y1 = f(x, x)
    assert f._program.fast_call((x, x)) is not None
    y2 = f(x + 1, x)
    assert y1 is not y2 and not np.shares_memory(y1, y2)
    np.testing.assert_allclose(y1, x @ x)  # not overwritten by the second call
    np.testing.assert_allclose(y2, (x + 1) @ x)


def test_bad_arguments_after_the_fast_path_still_give_the_checking_paths_errors():
    f = _matmul()
    x = np.ones((3, 4), "float32")
    f(x, np.ones((4, 4), "float32"))
    with pytest.raises(gc.ShapeError, match="'b'"):
        f(x, np.ones((4, 5), "float32"))
    with pytest.raises(TypeError, match="'b' expects float32, got float64"):
        f(x, np.ones((4, 4)))
    with pytest.raises(TypeError, match="takes 2 argument"):
        f(x)
    with pytest.raises(TypeError, match="takes 2 argument"):
        f(x, x, x)
    with pytest.raises(TypeError, match="symbolic Var"):
        f(x, gc.placeholder("c", (4, 4)))


def test_arguments_the_fast_path_leaves_to_the_checking_path_give_the_same_results():
    f = _matmul()
    w = np.arange(16, dtype="float32").reshape(4, 4) / 7
    x = np.arange(24, dtype="float32").reshape(6, 4) / 5
    f(x, w)
    expected = x @ w

    class Sub(np.ndarray):
        pass

    ro = w.copy()
    ro.flags.writeable = False
    for xv, wv in [(x, np.asfortranarray(w)),  # not C-contiguous
                   (x, np.repeat(w, 2, axis=1)[:, ::2]),  # strided
                   (x, w.astype(">f4")),  # byte-swapped: equal name, another dtype
                   (x, w.view(Sub)),  # subclass
                   (x.tolist(), w),  # nested lists
                   (x, ro)]:  # read-only
        np.testing.assert_allclose(f(xv, wv), expected, rtol=1e-6)
    np.testing.assert_allclose(f(a=x, b=w), expected, rtol=1e-6)  # keywords


def test_workspace_regrowth_and_signature_eviction_keep_results_right(monkeypatch):
    monkeypatch.setattr(cfamily_program, "MAX_SIGNATURES", 3)
    x = gc.placeholder("x", (None, 8))
    f = gc.function([x], gc.tanh(x * 2.0).sum(axis=1) + 1.0, backend="c")
    rng = np.random.default_rng(0)
    for n in [1, 2, 64, 1, 3, 5, 7, 2, 200, 1, 64]:  # grows the workspace, evicts signatures
        v = rng.standard_normal((n, 8)).astype("float32")
        for _ in range(2):  # the second call is a fast-path hit
            np.testing.assert_allclose(f(v), np.tanh(v * 2).sum(axis=1) + 1, rtol=1e-5, atol=1e-5)
    prog = f._program
    assert set(prog._fast) <= set(prog._signatures) and len(prog._signatures) <= 3


def test_several_outputs_an_unused_input_and_a_kernel_error():
    x, unused = gc.placeholder("x", (None, 2)), gc.placeholder("u", (3,))
    f = gc.function([x, unused], [x * 2.0, x.sum()], backend="c")
    v, u = np.ones((2, 2), "float32"), np.zeros(3, "float32")
    for _ in range(2):
        y, s = f(v, u)
        np.testing.assert_array_equal(y, 2 * v)
        assert float(s) == 4.0
    with pytest.raises(TypeError, match="'u'"):
        f(v, np.zeros(3))
    E = gc.shared(np.arange(8, dtype="float32").reshape(4, 2), name="E")
    i = gc.placeholder("i", (None,), "int32")
    g = gc.function([i], gc.take(E, i).sum(axis=0), backend="c")
    np.testing.assert_array_equal(g(np.array([0, 1], "int32")), [2, 4])
    with pytest.raises(IndexError, match="index 7 is out of range for axis 0 of size 4"):
        g(np.array([0, 7], "int32"))  # same shape: the fast path raises the kernel's error


def test_updates_through_the_fast_path_from_threads_lose_nothing():
    acc = gc.shared(np.zeros(2, "float32"), name="acc")
    x = gc.placeholder("x", (2,))
    f = gc.function([x], acc * 1.0, updates=[(acc, acc + x)], backend="c")
    one = np.ones(2, "float32")

    def work():
        for _ in range(200):
            f(one)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(acc.get_value(), [800, 800])
