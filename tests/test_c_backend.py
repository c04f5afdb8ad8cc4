"""The C backend agrees with the reference backend: every registered op in float32 and float64,
gradients, several batch sizes, updates."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import graphc as gc
from graphc.ops import REGISTRY

from .conftest import HypothesisDraw, numeric_grad, placeholders_for, run_both
from .test_passes import RandomGraph

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")

ALL = sorted(REGISTRY)


def _compare(a, b, dtype):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    if a.dtype.kind == "f":
        tol = 2e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ALL)
@given(data=st.data())
def test_op_c_matches_ref(name, dtype, data):
    case = REGISTRY[name].sample(HypothesisDraw(data))
    args = [a.astype(dtype) if a.dtype.kind == "f" else a for a in case.args]
    got, want = run_both("c", case.build, args)
    _compare(got, want, dtype)


@pytest.mark.parametrize("name", sorted(n for n, e in REGISTRY.items() if e.differentiable))
@given(data=st.data())
def test_gradient_compiled_in_c_matches_finite_differences(name, data):
    case = REGISTRY[name].sample(HypothesisDraw(data))
    vars_ = placeholders_for(case.args)
    out = case.build(*vars_)
    w = np.random.default_rng(0).uniform(0.5, 1.5, size=out.shape)
    cost = gc.sum(out * gc.constant(w))
    wrt = list(case.wrt) if case.wrt is not None else [i for i, a in enumerate(case.args) if a.dtype.kind == "f"]
    grads = gc.function(vars_, gc.grad(cost, [vars_[i] for i in wrt]), backend="c")(*case.args)
    f_cost = gc.function(vars_, cost, backend="c")
    for g, i in zip(grads, wrt):
        np.testing.assert_allclose(g, numeric_grad(f_cost, case.args, i), rtol=1e-5, atol=1e-6)


@given(data=st.data())
def test_random_graphs_c_matches_ref(data):
    """Random DAGs (broadcasting, reductions on every axis, views, matmul, fused chains) and their
    gradients give the same values on C as on ref."""
    g = RandomGraph(data)
    outs = [v for v, _ in g.build()]
    cost = gc.sum(outs[0] * 1.5) if outs[0].dtype.startswith("float") else None
    extra = gc.grad(cost, list(g.float_inputs)) if cost is not None else []
    f_ref = gc.function(g.inputs, outs + extra, backend="ref")
    f_c = gc.function(g.inputs, outs + extra, backend="c")
    for a, b in zip(f_c(*g.args), f_ref(*g.args)):
        _compare(a, b, "float64")


def _mlp_step(backend, lr=0.1):
    rng = np.random.default_rng(0)
    x = gc.placeholder("x", (None, 6))
    t = gc.placeholder("t", (None,), "int32")
    W1 = gc.shared(rng.normal(0, 0.5, (6, 5)).astype("float32"), name="W1")
    b1 = gc.shared(np.zeros(5, "float32"), name="b1")
    W2 = gc.shared(rng.normal(0, 0.5, (5, 3)).astype("float32"), name="W2")
    params = [W1, b1, W2]
    loss = gc.softmax_cross_entropy(gc.relu(x @ W1 + b1) @ W2, t).mean()
    grads = gc.grad(loss, params)
    f = gc.function([x, t], loss, updates=[(p, p - lr * g) for p, g in zip(params, grads)], backend=backend)
    return f, params


@pytest.mark.parametrize("batches", [[7, 1, 3, 1, 16]])
def test_one_compiled_step_serves_every_batch_size(batches):
    """The same function is called with several batch sizes (1 included): values and in-place
    updates match the reference backend step by step."""
    f_c, p_c = _mlp_step("c")
    f_r, p_r = _mlp_step("ref")
    rng = np.random.default_rng(1)
    for n in batches:
        xv = rng.normal(size=(n, 6)).astype("float32")
        tv = rng.integers(0, 3, n).astype("int32")
        np.testing.assert_allclose(f_c(xv, tv), f_r(xv, tv), rtol=1e-5)
        for a, b in zip(p_c, p_r):
            np.testing.assert_allclose(a.get_value(), b.get_value(), rtol=1e-5, atol=1e-6)
    assert len(f_c._program.memory_bytes) == len(set(batches))
    assert f_c.memory_bytes > 0


def test_updates_are_computed_from_pre_call_values_in_c():
    a = gc.shared(np.array([1.0, 2.0], "float32"), name="a")
    b = gc.shared(np.array([10.0, 20.0], "float32"), name="b")
    c = gc.shared(np.array([0.5, 0.5], "float32"), name="c")
    # a <- b and b <- a swap; c reads a after a's update kernel could have run
    f = gc.function([], [a * 1.0], updates=[(a, b), (b, a), (c, c + a)], backend="c")
    out = f()
    np.testing.assert_array_equal(out[0], [1.0, 2.0])
    np.testing.assert_array_equal(a.get_value(), [10.0, 20.0])
    np.testing.assert_array_equal(b.get_value(), [1.0, 2.0])
    np.testing.assert_array_equal(c.get_value(), [1.5, 2.5])


def test_outputs_are_fresh_arrays_not_views_of_state():
    W = gc.shared(np.ones(3, "float32"), name="W")
    f = gc.function([], [W, W * 2.0], updates=[(W, W + 1.0)], backend="c")
    w0, w2 = f()
    np.testing.assert_array_equal(w0, [1, 1, 1])  # the value before the update
    w0[:] = 99
    np.testing.assert_array_equal(W.get_value(), [2, 2, 2])


def test_non_contiguous_and_read_only_inputs():
    x = gc.placeholder("x", (None, 3))
    f = gc.function([x], gc.tanh(x) * 2.0, backend="c")
    base = np.arange(24, dtype="float32").reshape(4, 6) / 10
    view = base[:, ::2]  # non-contiguous
    np.testing.assert_allclose(f(view), np.tanh(view) * 2, rtol=1e-6)
    ro = np.ascontiguousarray(view)
    ro.flags.writeable = False
    np.testing.assert_allclose(f(ro), np.tanh(ro) * 2, rtol=1e-6)
    np.testing.assert_allclose(f(view.T.copy().T), np.tanh(view) * 2, rtol=1e-6)  # Fortran order


def test_wrong_inputs_are_refused_before_native_code():
    x = gc.placeholder("x", (None, 3))
    f = gc.function([x], x.sum(), backend="c")
    with pytest.raises(gc.ShapeError, match="'x'"):
        f(np.ones((2, 4), "float32"))
    with pytest.raises(TypeError, match="'x'"):
        f(np.ones((2, 3), "float64"))
    with pytest.raises(TypeError, match="argument"):
        f()


def test_take_out_of_range_in_c_names_the_index_and_writes_nothing():
    E = gc.shared(np.arange(8, dtype="float32").reshape(4, 2), name="E")
    i = gc.placeholder("i", (None,), "int32")
    acc = gc.shared(np.zeros(2, "float32"), name="acc")
    f = gc.function([i], [], updates=[(acc, acc + gc.take(E, i).sum(axis=0))], backend="c")
    with pytest.raises(IndexError, match="index 7 is out of range for axis 0 of size 4"):
        f(np.array([0, 7], "int32"))
    np.testing.assert_array_equal(acc.get_value(), [0, 0])
    f(np.array([-1, 0], "int32"))
    np.testing.assert_array_equal(acc.get_value(), [6, 8])


def test_default_backend_is_c(monkeypatch):
    monkeypatch.delenv("GRAPHC_BACKEND", raising=False)
    x = gc.placeholder("x", (2,))
    f = gc.function([x], x + 1.0)
    assert f.backend == "c" and "gc_main" in f.source


def test_graphc_debug_prints_graph_and_source(monkeypatch, capsys):
    monkeypatch.setenv("GRAPHC_DEBUG", "1")
    x = gc.placeholder("x", (None,))
    gc.function([x], gc.exp(x) * 2.0, backend="c")
    err = capsys.readouterr().err
    assert "optimised graph" in err and "int gc_main(void **B, const int64_t *D)" in err and "gc_expf" in err


def test_debug_mode_names_the_first_wrong_kernel(monkeypatch):
    """Break the tanh emitter on purpose: debug mode must blame the kernel that computes tanh."""
    from graphc.backends.cfamily import emitter as emit

    real = emit.scalar_c
    monkeypatch.setattr(emit, "scalar_c", lambda op, dt, args: ("(" + real(op, dt, args) + " + 1.0f)")
                        if op == "tanh" else real(op, dt, args))
    x = gc.placeholder("x", (None, 4))
    y = gc.exp(x).sum(axis=1)          # a correct kernel first
    z = gc.tanh(x * 3.0)               # then the broken one
    f = gc.function([x], [y, (z @ gc.constant(np.ones((4, 2), "float32")))], backend="c", debug=True)
    with pytest.raises(AssertionError, match=r"kernel k\d+ \(elementwise\[multiply, tanh\]\)"):
        f(np.ones((3, 4), "float32"))
    ok = gc.function([x], [y], backend="c", debug=True)
    np.testing.assert_allclose(ok(np.ones((3, 4), "float32"))[0], [np.exp(1.0) * 4] * 3, rtol=1e-6)


def test_second_process_reuses_the_compiled_function(tmp_path):
    """A function compiled in one process is a cache hit in the next: no compiler run."""
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(
        "import json, numpy as np, graphc as gc\n"
        "from graphc.backends.c import build\n"
        "x = gc.placeholder('x', (None, 3))\n"
        "f = gc.function([x], gc.tanh(x @ gc.constant(np.eye(3, dtype='float32'))).sum(), backend='c')\n"
        "print(json.dumps({'stats': build.STATS, 'value': float(f(np.ones((2, 3), 'float32')))}))\n")
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path / "cache"))
    runs = [json.loads(subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                                      check=True).stdout) for _ in range(2)]
    assert runs[0]["stats"]["compiles"] == 1 and runs[1]["stats"]["compiles"] == 0
    assert runs[1]["stats"]["hits"] == 1
    assert runs[0]["value"] == runs[1]["value"] == pytest.approx(6 * np.tanh(1.0), rel=1e-6)


def test_user_names_never_reach_the_c_source():
    evil = 'x*/ int system(); /*"\n#include <stdio.h>'
    x = gc.placeholder(evil, (3,))
    W = gc.shared(np.ones(3, "float32"), name=evil + "W")
    f = gc.function([x], x * W, updates=[(W, W * 2.0)], backend="c")
    assert "system" not in f.source and "stdio" not in f.source
    np.testing.assert_array_equal(f(np.ones(3, "float32")), [1, 1, 1])


def test_sgd_update_is_folded_into_the_gemm_and_done_in_place():
    """W <- W - lr * x.T @ g: one gemm (alpha = -lr, beta = 1) writing W's storage directly."""
    rng = np.random.default_rng(0)
    x = gc.placeholder("x", (None, 5))
    W = gc.shared(rng.normal(size=(5, 3)).astype("float32"), name="W")
    W0 = W.get_value()
    loss = gc.sum(gc.square(x @ W)) * 0.5
    f = gc.function([x], loss, updates=[(W, W - 0.1 * gc.grad(loss, W))], backend="c")
    labels = [k.label for k in f._program.schedule.kernels]
    assert "matmul[matmul, multiply, subtract]" in labels
    assert W in f._program.plan.in_place.values()
    xv = rng.normal(size=(4, 5)).astype("float32")
    f(xv)
    np.testing.assert_allclose(W.get_value(), W0 - 0.1 * xv.T @ (xv @ W0), rtol=1e-5, atol=1e-6)


def test_a_view_of_a_fused_value_is_read_after_it_is_written():
    """Regression: a node reading a view (reshape_like) of a value of its own fused group was
    fused into that group, loaded the view before the group wrote it, and two outputs shared a
    buffer (found by the CUDA emulator; C gave the same wrong numbers)."""
    from graphc.ops import ReshapeLike

    x = gc.placeholder("x0", (1, None, None), "float64")
    e = gc.exp(gc.tanh(x) * 3.0)
    outs = [ReshapeLike()(e, e), gc.cast(gc.cast(e, "float32"), "float64")]
    grads = gc.grad(gc.sum(outs[0] * 1.5), [x])
    xv = np.random.default_rng(0).normal(size=(1, 4, 4))
    for got, want in zip(gc.function([x], outs + grads, backend="c")(xv),
                         gc.function([x], outs + grads, backend="ref")(xv)):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 5, 4), (2, 3, 5, 4), (None, 5, 4)])
def test_batched_matmul_with_a_shared_right_operand_is_one_gemm(shape):
    # (..., n, k) @ (k, m): the batch rows stack into one gemm; values must match ref exactly as before
    rng = np.random.default_rng(1)
    concrete = tuple(3 if d is None else d for d in shape)
    x = gc.placeholder("x", shape, "float64")
    w = gc.constant(rng.normal(size=(4, 6)))
    f_c, f_ref = gc.function([x], x @ w, backend="c"), gc.function([x], x @ w, backend="ref")
    xv = rng.normal(size=concrete)
    np.testing.assert_allclose(f_c(xv), f_ref(xv), rtol=1e-12)
    assert "nbatch" not in f_c.source  # no loop of small gemms


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_column_reductions_stream_rows_into_per_thread_partials(dtype):
    """Sum/max/min over axis 0 of a matrix large enough for the threaded path (fixed pieces of
    rows streamed into partial rows, combined in piece order), with a fused elementwise
    prologue, NaN in a column, and against NumPy."""
    from graphc.backends.c.emit import PARALLEL_MIN

    rng = np.random.default_rng(9)
    rows = PARALLEL_MIN // 67 + 1001  # odd, and above the threaded path's threshold
    a = (rng.normal(size=(rows, 67)) * 10).astype(dtype)
    if dtype != "int32":
        a[rows // 2, 3] = np.nan
    x = gc.placeholder("x", (None, 67), dtype)
    f = gc.function([x], [x.sum(axis=0), (x * 2 + 1).sum(axis=0), x.max(axis=0), x.min(axis=0)], backend="c")
    got = f(a)
    want = [a.sum(axis=0, dtype="float64"), (a * 2 + 1).sum(axis=0, dtype="float64"), a.max(axis=0), a.min(axis=0)]
    sum_dtype = a[:1].sum(axis=0).dtype  # NumPy's: int32 sums to int64
    # float32 sums accumulate in float32 within fixed pieces of rows (as NumPy's column sums
    # do, sequentially): their error bound is relative to the sum of magnitudes, not to the
    # sum, which cancels (NumPy's own float32 result here is off by up to 7.6e-8 of it)
    magnitude = [np.abs(a).sum(axis=0, dtype="float64"), np.abs(a * 2 + 1).sum(axis=0, dtype="float64")]
    for i, (g, w, want_dtype) in enumerate(zip(got, want, [sum_dtype, sum_dtype, dtype, dtype])):
        assert g.dtype == want_dtype
        if dtype == "float32" and i < 2:
            ok = np.isnan(w) | (np.abs(g.astype("float64") - w) <= 2e-7 * magnitude[i])
            assert ok.all() and np.array_equal(np.isnan(g), np.isnan(w)), (g, w)
        else:
            np.testing.assert_allclose(g, w.astype(want_dtype), rtol=1e-5 if dtype == "float32" else 1e-12,
                                       equal_nan=True)
    empty = gc.function([x], x.sum(axis=0), backend="c")(a[:0])  # no rows: every partial stays 0
    np.testing.assert_array_equal(empty, np.zeros(67, sum_dtype))


def test_adaptive_threads_leave_a_core_to_a_busy_process(monkeypatch):
    """With another process spinning, the estimate of free cores drops below the machine's
    cores; with GRAPHC_ADAPTIVE_THREADS=0 it stays at the configured maximum."""
    import subprocess
    import sys
    import time

    from graphc.backends.c.threads import INTERVAL, AdaptiveThreads, _usable_cores

    cores = _usable_cores()
    if cores < 2 or not os.path.exists("/proc/stat"):
        pytest.skip("needs Linux and two cores")
    monkeypatch.setenv("GRAPHC_ADAPTIVE_THREADS", "0")
    assert AdaptiveThreads(maximum=cores).update() == cores
    monkeypatch.delenv("GRAPHC_ADAPTIVE_THREADS")
    threads = AdaptiveThreads(maximum=cores)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        seen = set()
        for _ in range(20):
            time.sleep(INTERVAL * 1.2)
            seen.add(threads.update())
    finally:
        hog.kill()
        hog.wait()
    assert all(1 <= n <= cores for n in seen)
    assert min(seen) <= cores - 1, seen


def test_debug_mode_names_the_step_and_the_kernel_inside_a_loop(broken_loop_step):
    """A wrong tanh inside a scan's step: debug mode names the loop kernel, the first step that
    differs and the step graph's own kernel."""
    f, xv = broken_loop_step("c")
    with pytest.raises(AssertionError, match=r"op\[scan\].*first differs at step 1.*elementwise\[.*tanh"):
        f(xv)


def test_reductions_give_the_same_bits_for_any_thread_count(monkeypatch):
    """Full and column reductions combine fixed pieces in a fixed order: the thread count (which
    the C backend adapts to the free cores at every call) never changes a result's bits."""
    from graphc.backends.c import threads

    monkeypatch.setattr(threads.ADAPTIVE, "enabled", False)
    x = gc.placeholder("x", (None, 300), "float64")
    f = gc.function([x], [x.sum(axis=0), x.sum(), (x * x).max(axis=0), gc.exp(x * 1e-3).sum()], backend="c")
    v = np.random.default_rng(0).standard_normal((4099, 300)) * 1e3
    results = []
    try:
        for n in (1, 2, 3, 4):
            threads._set_omp(n)
            results.append(f(v))
    finally:
        threads._set_omp(threads.ADAPTIVE.current)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a.tobytes() == b.tobytes()
    np.testing.assert_allclose(results[0][0], v.sum(axis=0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(results[0][1], v.sum(), rtol=1e-12)


@pytest.mark.parametrize("rows", [1, 3, 4, 17, 64, 1027])
def test_column_reductions_four_rows_at_a_time_match_numpy(rows):
    """Column sums/max/min take four rows per pass with the prologue fused; the remainder rows,
    pieces shorter than four rows, NaN and -inf must come out as NumPy's."""
    x = gc.placeholder("x", (None, 37), "float32")
    f = gc.function([x], [(x * x).sum(axis=0), gc.exp(x).max(axis=0), (-x).min(axis=0), x.sum(axis=0)],
                    backend="c")
    v = np.random.default_rng(rows).standard_normal((rows, 37)).astype("float32")
    v[rows // 2, 3] = np.nan
    v[rows - 1, 5] = -np.inf
    got = f(v)
    d = v.astype(np.float64)  # the exact sums, to float32 accumulation's error bound
    with np.errstate(invalid="ignore", over="ignore"):
        want = [(d * d).sum(axis=0), np.exp(v).max(axis=0), (-v).min(axis=0), d.sum(axis=0)]
    for g, w in zip(got, want):
        # float32 pieces of at most ceil(rows / 16) rows, then a double combine
        np.testing.assert_allclose(g, w, rtol=1e-5 * max(1.0, rows / 256), atol=1e-5)
        assert np.array_equal(np.isnan(g), np.isnan(w))


def test_float32_column_sums_stay_accurate_for_millions_of_rows():
    """float32 column sums add at most a few hundred rows in float32 before folding into
    double: the error does not grow with the row count (adding each piece's rows in float32
    lost 2.5e-4 of the sum at 2^22 rows; NumPy's own float32 column sum loses more)."""
    rows = 1 << 22
    a = np.empty((rows, 2), "float32")
    a[:, 0], a[:, 1] = 0.1, 1.0001
    x = gc.placeholder("x", (None, 2))
    got = gc.function([x], x.sum(axis=0), backend="c")(a).astype("float64")
    exact = a[0].astype("float64") * rows
    assert np.all(np.abs(got - exact) <= 1e-6 * exact), (got, exact)
