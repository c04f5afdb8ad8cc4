"""Reliability (issue 15, items 1-5): deep graphs, bounded kernels and compile time-out, bounded
workspace memory across input shapes, thread safety, and 32-bit BLAS size checks."""

from __future__ import annotations

import os
import threading
import tracemalloc

import numpy as np
import pytest

import graphc as gc
from graphc.backends.c.build import compile_timeout
from graphc.backends.c.emit import BLAS_INT_MAX, blas_size_error
from graphc.core import CompileError, Graph
from graphc.lower import max_fused_nodes, schedule
from graphc.passes import optimize

# -- 1. deep graphs ---------------------------------------------------------------------------


def _rotations(depth: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """Random orthogonal matrices: activations and gradients neither vanish nor blow up over
    thousands of tanh layers, so the values compared below are far from 0."""
    rng = np.random.default_rng(seed)
    return [np.linalg.qr(rng.normal(size=(width, width)))[0] for _ in range(depth)]


def _check_deep_mlp_step_on_c(depth: int, width: int = 3):
    # One SGD step of a `depth`-layer tanh MLP on C against the reference backend: the loss, and
    # every weight after the update (w - lr * dloss/dw, the gradients computed by ref).
    x = gc.placeholder("x", (None, width), "float64")
    w0 = _rotations(depth, width)
    ws = [gc.shared(w.copy(), name=f"W{i}") for i, w in enumerate(w0)]
    h = x
    for w in ws:
        h = gc.tanh(h @ w)
    loss = gc.sum(h * h)
    grads = gc.grad(loss, ws)
    a = np.random.default_rng(1).normal(size=(5, width))
    want_loss, *want_grads = gc.function([x], [loss, *grads], backend="ref")(a)
    assert abs(want_grads[0]).max() > 1e-6  # the first layer still gets a gradient
    f = gc.function([x], loss, updates=[(w, w - 0.01 * g) for w, g in zip(ws, grads)], backend="c")
    np.testing.assert_allclose(f(a), want_loss, rtol=1e-10)
    for w, before, g in zip(ws, w0, want_grads):  # the step each weight took is its gradient
        np.testing.assert_allclose((before - w.get_value()) / 0.01, g, rtol=1e-6, atol=1e-12)
    # a deep network repeats a few kernels thousands of times: each distinct one is compiled once
    sched = f._program.schedule
    assert sum(k.kind == "matmul" for k in sched.kernels) >= 3 * depth - 1
    assert f.source.count("\nstatic int k") < 20


def test_2000_layer_mlp_step_compiles_and_runs_on_c():
    # Used to be a RecursionError (scheduler, memory planner), then minutes of gcc: one C
    # function per kernel, ~12,000 of them, and a memory layout that re-sorted per temp.
    _check_deep_mlp_step_on_c(2000)


@pytest.mark.slow
def test_10000_layer_mlp_step_compiles_and_runs_on_c():
    _check_deep_mlp_step_on_c(10000)


def test_deep_chain_compiles_on_c_and_matches_ref():
    x = gc.placeholder("x", (None, 3), "float64")
    h = x
    for _ in range(80):  # 240 elementwise ops (several bounded kernels), and their gradient
        h = gc.tanh(h * 0.9 + 0.1)
    g = gc.grad(h.sum(), x)
    a = np.linspace(-1, 1, 6).reshape(2, 3)
    want = gc.function([x], g, backend="ref")(a)
    got = gc.function([x], g, backend="c")(a)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


# -- 2. bounded kernels, compile time-out -----------------------------------------------------


def test_kernels_that_differ_only_in_float_constants_share_code():
    # each layer scales by its own constant: still one C function per distinct kernel shape,
    # the constants read from their buffers, and the values those of ref
    x = gc.placeholder("x", (None, 3), "float64")
    h = x
    for i in range(300):
        h = gc.tanh(h * (0.9 + 1e-3 * i) + 0.01 * i)
    outs = [h, gc.grad(h.sum(), x)]
    a = np.linspace(-2, 2, 12).reshape(4, 3)
    f = gc.function([x], outs, backend="c")
    for got, want in zip(f(a), gc.function([x], outs, backend="ref")(a)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert f.source.count("\nstatic int k") <= 12 < len(f._program.schedule.kernels) // 4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_math_through_vector_functions_is_the_inlined_math(monkeypatch, dtype):
    # Large sources call each math function through one `declare simd` wrapper instead of
    # inlining it at every call site (gcc's time per inlined copy). Same algorithm, same bits.
    from graphc.backends.c import emit_main

    x = gc.placeholder("x", (None,), dtype)
    pos = gc.softplus(x) + 0.5
    y = [gc.exp(x), gc.expm1(x), gc.log(pos), gc.log1p(pos), gc.tanh(x), gc.sigmoid(x), pos, gc.sin(x), gc.cos(x)]
    a = np.random.default_rng(3).normal(scale=4, size=1003).astype(dtype)  # odd: loop tails too
    inlined = gc.function([x], y, backend="c")
    monkeypatch.setattr(emit_main, "INLINE_MATH_MAX", 0)
    wrapped = gc.function([x], y, backend="c")
    assert "gcv_" not in inlined.source and "#pragma omp declare simd" in wrapped.source
    want = gc.function([x], y, backend="ref")(a)
    tol = 1e-6 if dtype == "float32" else 1e-14
    for got, same, ref in zip(wrapped(a), inlined(a), want):
        np.testing.assert_array_equal(got, same)
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


def test_memory_layout_of_many_temps_is_first_fit():
    # The layout search works on arrays beyond a few hundred blocks (it was quadratic in Python
    # with a sort per block). It must place every block where the plain first-fit scan does.
    from graphc.lower.memory import _align, _Placed

    rng = np.random.default_rng(0)
    blocks = []
    for _ in range(1200):
        first = int(rng.integers(0, 3000))
        blocks.append((first, first + int(rng.integers(0, 400)), int(rng.choice([0, 4, 48, 64, 100, 1000, 4096]))))
    blocks.sort(key=lambda b: -b[2])
    placed, plain = _Placed(), []
    got, want = [], []
    for first, last, size in blocks:
        offset = placed.first_fit(first, last, size)
        placed.add(offset, offset + size, first, last)
        got.append(offset)
        ref = 0
        for o, e, f, la in sorted(plain):
            if la < first or f > last:
                continue
            if ref + size <= o:
                break
            ref = max(ref, _align(e))
        plain.append((ref, ref + size, first, last))
        want.append(ref)
    assert got == want
    # and no two blocks alive at the same time overlap
    for i, (o1, e1, f1, l1) in enumerate(plain[:300]):
        for o2, e2, f2, l2 in plain[i + 1:300]:
            assert l1 < f2 or l2 < f1 or e1 <= o2 or e2 <= o1


def test_long_chain_is_cut_into_bounded_kernels():
    x = gc.placeholder("x", (None, 4), "float32")
    h = x
    for _ in range(700):
        h = gc.tanh(h * 0.9 + 0.1)
    g = gc.grad(h.sum(), x)
    sched = schedule(optimize(Graph([x], [h.sum(), g])))
    limit = max_fused_nodes()
    sizes = [len(k.nodes) for k in sched.kernels]
    assert max(sizes) <= limit + 1  # a reduce kernel may add its sum to a full group
    assert sum(sizes) >= 2100


def test_max_fused_env_is_checked(monkeypatch):
    monkeypatch.setenv("GRAPHC_MAX_FUSED", "0")
    with pytest.raises(ValueError, match="GRAPHC_MAX_FUSED"):
        max_fused_nodes()
    monkeypatch.setenv("GRAPHC_MAX_FUSED", "3")
    x = gc.placeholder("x", (5,), "float32")
    h = x
    for _ in range(10):
        h = h * 2.0 + 1.0
    sched = schedule(Graph([x], [h]))
    assert max(len(k.nodes) for k in sched.kernels) <= 3


def test_compile_time_out_raises_compile_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHC_COMPILE_TIMEOUT", "0.001")
    x = gc.placeholder("x", (3,), "float32")
    with pytest.raises(CompileError, match="GRAPHC_COMPILE_TIMEOUT"):
        gc.function([x], gc.tanh(x) * 3.25 + 0.125, backend="c")
    assert compile_timeout({}) == 300.0
    with pytest.raises(ValueError, match="positive"):
        compile_timeout({"GRAPHC_COMPILE_TIMEOUT": "soon"})


# -- 3. bounded memory ------------------------------------------------------------------------


def test_many_batch_sizes_hold_one_workspace():
    x = gc.placeholder("x", (None, 64), "float32")
    w1 = gc.shared(np.full((64, 64), 0.01, "float32"))
    w2 = gc.shared(np.full((64, 64), 0.01, "float32"))
    y = gc.tanh(gc.tanh(x @ w1) @ w2).sum(axis=1)
    f = gc.function([x], y, backend="c")
    largest = 300
    f(np.ones((largest, 64), "float32"))
    one = f.memory_bytes
    assert one > 0
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for b in range(1, largest):
            f(np.ones((b, 64), "float32"))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # one workspace per batch size would be ~150x `one`; signatures are small and capped
    assert held - base < one + 2_000_000, (held - base, one)
    assert f.memory_bytes == one
    np.testing.assert_allclose(f(np.ones((7, 64), "float32")),
                               gc.function([x], y, backend="ref")(np.ones((7, 64), "float32")), rtol=1e-5)


# -- 4. threads -------------------------------------------------------------------------------


def _hammer(fns, calls):
    barrier = threading.Barrier(len(fns))

    def work(fn):
        barrier.wait()
        for _ in range(calls):
            fn()

    threads = [threading.Thread(target=work, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.parametrize("backend", ["ref", "c"])
def test_concurrent_calls_of_one_update_function_lose_nothing(backend):
    v = gc.shared(np.zeros(2000, "float64"))
    f = gc.function([], v.sum(), updates=[(v, v + 1.0)], backend=backend)
    _hammer([f] * 4, 150)
    np.testing.assert_array_equal(v.get_value(), np.full(2000, 600.0))


@pytest.mark.parametrize("backend", ["ref", "c"])
def test_two_functions_updating_one_variable_do_not_tear(backend):
    v = gc.shared(np.zeros(5000, "float64"))
    f1 = gc.function([], v.sum(), updates=[(v, v + 1.0)], backend=backend)
    f2 = gc.function([], v.sum(), updates=[(v, v + 2.0)], backend=backend)
    _hammer([f1, f2, f1, f2], 100)
    np.testing.assert_array_equal(v.get_value(), np.full(5000, 600.0))


@pytest.mark.parametrize("backend", ["ref", "c"])
def test_set_value_and_get_value_never_see_half_an_update(backend):
    """set_value and get_value take the variable's lock, as compiled calls do: a reader sees
    every element from the same moment, and a reset is never mixed into a running update."""
    v = gc.shared(np.zeros(200_000, "float64"))
    f = gc.function([], [], updates=[(v, v + 1.0)], backend=backend)
    torn = []

    def reset():
        for _ in range(100):
            v.set_value(np.zeros(200_000))

    def read():
        for _ in range(100):
            a = v.get_value()
            if a.min() != a.max():
                torn.append((a.min(), a.max()))

    _hammer([lambda: f(), reset, read], 1)
    fns = [lambda: [f() for _ in range(100)], reset, read]
    _hammer(fns, 1)
    assert not torn, torn[:3]
    a = v.get_value()
    assert a.min() == a.max()


# -- 5. 32-bit BLAS sizes ---------------------------------------------------------------------


def test_blas_size_error_names_op_shape_and_limit():
    assert blas_size_error("matmul", "(2, 3) @ (3, 4)", {"rows": 2, "inner": 3}) is None
    assert blas_size_error("matmul", "s", {"rows": BLAS_INT_MAX}) is None
    err = blas_size_error("matmul", "(1, 2147483648) @ (2147483648, 1)", {"inner": 2**31})
    assert isinstance(err, ValueError)
    for part in ("matmul", "(1, 2147483648)", "inner", "2147483647"):
        assert part in str(err)


def test_matmul_with_a_dimension_beyond_int32_is_refused_before_running():
    a = gc.placeholder("a", (1, None), "float32")
    b = gc.placeholder("b", (None, 1), "float32")
    f = gc.function([a, b], a @ b, backend="c")
    prog = f._program
    shapes = prog.graph.bind_shapes(((1, 2**31), (2**31, 1)))  # sizes only: nothing is allocated
    err = prog.emitter.check_blas_sizes(shapes)
    assert isinstance(err, ValueError) and "2147483648" in str(err) and "matmul" in str(err)
    assert prog.emitter.check_blas_sizes(prog.graph.bind_shapes(((1, 5), (5, 1)))) is None
    np.testing.assert_allclose(f(np.ones((1, 5), "float32"), np.ones((5, 1), "float32")), [[5.0]])


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("GRAPHC_BIG_MEMORY") != "1", reason="needs ~17 GB: set GRAPHC_BIG_MEMORY=1")
def test_real_matmul_beyond_int32_raises():
    n = 2**31 + 8
    a = np.ones((1, n), "float32")
    b = np.ones((n, 1), "float32")
    x, y = gc.placeholder("a", (1, None), "float32"), gc.placeholder("b", (None, 1), "float32")
    with pytest.raises(ValueError, match="32-bit BLAS"):
        gc.function([x, y], x @ y, backend="c")(a, b)
