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
from graphc.passes import optimize
from graphc.passes.fuse import max_fused_nodes, schedule
from graphc.passes.memory import plan_memory


def _deep_mlp(depth: int, width: int = 2):
    x = gc.placeholder("x", (None, width), "float32")
    ws = [gc.shared(np.eye(width, dtype="float32") * 0.5, name=f"W{i}") for i in range(depth)]
    h = x
    for w in ws:
        h = gc.tanh(h @ w)
    loss = h.sum()
    grads = gc.grad(loss, ws)
    return x, ws, loss, [(w, w - 0.01 * g) for w, g in zip(ws, grads)]


# -- 1. deep graphs ---------------------------------------------------------------------------


def test_schedule_and_memory_plan_of_a_2000_layer_mlp_gradient():
    # The C backend's scheduler and memory planner used to recurse once per layer
    # (RecursionError at ~600 layers) and scan every kernel per value (quadratic).
    x, ws, loss, updates = _deep_mlp(2000)
    graph = optimize(Graph([x], [loss] + [e for _, e in updates]))
    sched = schedule(graph)
    plan = plan_memory(sched, 1, ws)
    n_matmul = sum(k.kind == "matmul" for k in sched.kernels)
    assert n_matmul >= 3 * 2000 - 1  # forward, input gradient and weight gradient per layer
    assert len(plan.temps) > 0


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


@pytest.mark.slow
def test_deep_mlp_gradient_compiles_on_c():
    x, ws, loss, updates = _deep_mlp(600)
    a = np.ones((3, 2), "float32")
    f_ref = gc.function([x], loss, backend="ref")
    f_c = gc.function([x], loss, updates=updates, backend="c")
    np.testing.assert_allclose(f_c(a), f_ref(a), rtol=1e-5)


# -- 2. bounded kernels, compile time-out -----------------------------------------------------


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
