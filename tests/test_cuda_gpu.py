"""The CUDA backend agrees with the reference backend: every registered op in float32 and float64,
random graphs and their gradients, gradients against finite differences, one function over
several batch sizes, a training step whose parameters stay on the device.

Each test runs on two targets:

- ``gpu``: CuPy on an NVIDIA GPU (the real backend). Skipped with "needs CuPy and an NVIDIA GPU"
  where there is none.
- ``emulated``: the same generated kernels, launch sequence and cuBLAS argument mapping, run on
  the CPU by ``GRAPHC_CUDA_EMULATE=1`` (graphc/backends/cuda/emulate.py; needs g++). It checks
  everything above CuPy (index arithmetic, reductions, the plan's bindings) on machines without a
  GPU, with fewer drawn cases because it is slow.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.backends.cuda.device import available
from graphc.backends.cuda.program import MIRRORS
from graphc.ops import REGISTRY

from .conftest import HypothesisDraw, numeric_grad, placeholders_for, run_both
from .test_passes import RandomGraph

GPU, GPU_INFO = available()
NO_GPU = "needs CuPy and an NVIDIA GPU"

TARGETS = [
    pytest.param("gpu", marks=pytest.mark.skipif(not GPU, reason=NO_GPU)),
    pytest.param("emulated", marks=pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")),
]
#: drawn cases per test: (gpu, emulated)
EXAMPLES = {"ops": (20, 1), "random": (30, 6), "grads": (10, 2)}
ALL = sorted(REGISTRY)
DIFFERENTIABLE = sorted(n for n, e in REGISTRY.items() if e.differentiable)


@pytest.fixture(params=TARGETS)
def target(request, monkeypatch):
    if request.param == "emulated":
        monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")
    else:
        monkeypatch.delenv("GRAPHC_CUDA_EMULATE", raising=False)
    return request.param


def examples(kind: str, target: str) -> int:
    return EXAMPLES[kind][0 if target == "gpu" else 1]


def run_examples(n: int):
    """Run the decorated hypothesis test body `n` times (inside a test that has a target)."""
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def compare(a, b, dtype):
    a, b = host(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    if a.dtype.kind == "f":
        tol = 1e-4 if dtype == "float32" else 1e-9  # device math is within a few ulp, sums reorder
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ALL)
def test_op_cuda_matches_ref(target, name, dtype):
    @run_examples(examples("ops", target))
    @given(data=st.data())
    def check(data):
        case = REGISTRY[name].sample(HypothesisDraw(data))
        args = [a.astype(dtype) if a.dtype.kind == "f" else a for a in case.args]
        got, want = run_both("cuda", case.build, args)
        compare(got, want, dtype)

    check()


def test_random_graphs_cuda_matches_ref(target):
    """Random DAGs (broadcasting, reductions on every axis, views, matmul, fused chains) and their
    gradients give the same values on cuda as on ref."""

    @run_examples(examples("random", target))
    @given(data=st.data())
    def check(data):
        g = RandomGraph(data)
        outs = [v for v, _ in g.build()]
        cost = gc.sum(outs[0] * 1.5) if outs[0].dtype.startswith("float") else None
        extra = gc.grad(cost, list(g.float_inputs)) if cost is not None else []
        f_ref = gc.function(g.inputs, outs + extra, backend="ref")
        f_cuda = gc.function(g.inputs, outs + extra, backend="cuda")
        for a, b in zip(f_cuda(*g.args), f_ref(*g.args)):
            compare(a, b, "float64")

    check()


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_gradients_compiled_in_cuda(target, name):
    """Symbolic gradients compiled for cuda equal ref's (float64), and on a GPU also central finite
    differences of the cost compiled for cuda (too many calls for the emulator)."""

    @run_examples(examples("grads", target))
    @given(data=st.data())
    def check(data):
        case = REGISTRY[name].sample(HypothesisDraw(data))
        vars_ = placeholders_for(case.args)
        out = case.build(*vars_)
        w = np.random.default_rng(0).uniform(0.5, 1.5, size=out.shape)
        cost = gc.sum(out * gc.constant(w))
        wrt = list(case.wrt) if case.wrt is not None else [i for i, a in enumerate(case.args) if a.dtype.kind == "f"]
        grad_vars = gc.grad(cost, [vars_[i] for i in wrt])
        grads = gc.function(vars_, grad_vars, backend="cuda", to_host=True)(*case.args)
        for g, want in zip(grads, gc.function(vars_, grad_vars, backend="ref")(*case.args)):
            compare(g, want, "float64")
        if target == "gpu":
            f_cost = gc.function(vars_, cost, backend="cuda", to_host=True)
            for g, i in zip(grads, wrt):
                np.testing.assert_allclose(g, numeric_grad(f_cost, case.args, i), rtol=1e-5, atol=1e-6)

    check()


def _mlp_step(backend, lr=0.1, shared_lr=False):
    rng = np.random.default_rng(0)
    x = gc.placeholder("x", (None, 6))
    t = gc.placeholder("t", (None,), "int32")
    W1 = gc.shared(rng.normal(0, 0.5, (6, 5)).astype("float32"), name="W1")
    b1 = gc.shared(np.zeros(5, "float32"), name="b1")
    W2 = gc.shared(rng.normal(0, 0.5, (5, 3)).astype("float32"), name="W2")
    params = [W1, b1, W2]
    rate = gc.shared(np.array(lr, "float32"), name="lr") if shared_lr else lr
    loss = gc.softmax_cross_entropy(gc.relu(x @ W1 + b1) @ W2, t).mean()
    grads = gc.grad(loss, params)
    f = gc.function([x, t], loss, updates=[(p, p - rate * g) for p, g in zip(params, grads)], backend=backend)
    return f, params


@pytest.mark.parametrize("shared_lr", [False, True], ids=["constant-lr", "shared-lr"])
def test_one_function_serves_every_batch_size(target, shared_lr):
    """The same function is called with several batch sizes (1 included): values and in-place
    updates match the reference backend step by step; one workspace per batch size."""
    f_cuda, p_cuda = _mlp_step("cuda", shared_lr=shared_lr)
    f_ref, p_ref = _mlp_step("ref", shared_lr=shared_lr)
    rng = np.random.default_rng(1)
    batches = [7, 1, 3, 1, 300]
    for n in batches:
        xv = rng.normal(size=(n, 6)).astype("float32")
        tv = rng.integers(0, 3, n).astype("int32")
        np.testing.assert_allclose(host(f_cuda(xv, tv)), f_ref(xv, tv), rtol=1e-5)
        for a, b in zip(p_cuda, p_ref):
            np.testing.assert_allclose(a.get_value(), b.get_value(), rtol=1e-5, atol=1e-6)
    assert len(f_cuda._program.memory_bytes) == len(set(batches))


def test_training_step_updates_parameters_on_the_device(target):
    """Updates are written to the device copies in place; the host copy is refreshed only when
    read, and a host write reaches the device before the next call."""
    f, params = _mlp_step("cuda")
    W1 = params[0]
    program = f._program
    rng = np.random.default_rng(2)
    xv = rng.normal(size=(8, 6)).astype("float32")
    tv = rng.integers(0, 3, 8).astype("int32")
    initial = [p.get_value() for p in params]
    before = initial[0]
    mirror = MIRRORS.get(W1)
    address = program.device.ptr(mirror.array) if mirror is not None else None
    losses = [float(host(f(xv, tv))) for _ in range(5)]
    assert losses[-1] < losses[0]  # it learns
    mirror = MIRRORS.get(W1)
    assert mirror is not None and mirror.device_newer  # the new value is on the device only
    assert address is None or program.device.ptr(mirror.array) == address  # updated in place
    assert np.array_equal(W1.host_array, before)  # the host copy is stale until read
    after = W1.get_value()
    assert not np.array_equal(after, before) and not mirror.device_newer
    for p, v in zip(params, initial):  # host writes reach the device before the next call
        p.set_value(v)
    first = float(host(f(xv, tv)))
    assert first == pytest.approx(losses[0], rel=1e-5)


def test_updates_are_computed_from_pre_call_values_on_cuda(target):
    a = gc.shared(np.array([1.0, 2.0], "float32"), name="a")
    b = gc.shared(np.array([10.0, 20.0], "float32"), name="b")
    c = gc.shared(np.array([0.5, 0.5], "float32"), name="c")
    f = gc.function([], [a * 1.0], updates=[(a, b), (b, a), (c, c + a)], backend="cuda", to_host=True)
    out = f()
    np.testing.assert_array_equal(out[0], [1.0, 2.0])
    np.testing.assert_array_equal(a.get_value(), [10.0, 20.0])
    np.testing.assert_array_equal(b.get_value(), [1.0, 2.0])
    np.testing.assert_array_equal(c.get_value(), [1.5, 2.5])


def test_random_draws_match_ref_and_advance(target):
    """The counter-based RNG draws the same numbers on cuda as on ref, fresh at every call."""
    x = gc.placeholder("x", (None, 5))
    u = gc.random.uniform(like=x, seed=11)
    z = gc.random.normal(like=x, seed=12, dtype="float64")
    f_cuda = gc.function([x], [u, z], backend="cuda", to_host=True)
    f_ref = gc.function([x], [u, z], backend="ref")
    xv = np.zeros((4, 5), "float32")
    counters = [(s, s.get_value()) for s in f_ref.graph.shared]  # both functions share the RNG state
    first = f_cuda(xv)
    second = f_cuda(xv)
    assert not np.array_equal(first[0], second[0])
    for s, v in counters:
        s.set_value(v)
    want1, want2 = f_ref(xv), f_ref(xv)
    np.testing.assert_array_equal(first[0], want1[0])  # uniform: exact
    np.testing.assert_allclose(first[1], want1[1], rtol=1e-12)
    np.testing.assert_array_equal(second[0], want2[0])


def test_take_out_of_range_on_cuda_is_refused(target):
    E = gc.shared(np.arange(8, dtype="float32").reshape(4, 2), name="E")
    i = gc.placeholder("i", (None,), "int32")
    acc = gc.shared(np.zeros(2, "float32"), name="acc")
    f = gc.function([i], [], updates=[(acc, acc + gc.take(E, i).sum(axis=0))], backend="cuda")
    with pytest.raises(IndexError, match="index 7 is out of range for axis 0 of size 4"):
        f(np.array([0, 7], "int32"))
    np.testing.assert_array_equal(acc.get_value(), [0, 0])  # refused before anything ran
    f(np.array([-1, 0], "int32"))
    np.testing.assert_array_equal(acc.get_value(), [6, 8])
    # an index computed on the device is caught by the kernel and reported after the call
    j = gc.placeholder("j", (None,), "int32")
    g = gc.function([j], gc.take(E, j + 5), backend="cuda")
    with pytest.raises(IndexError, match="index 6 is out of range"):
        g(np.array([-2, 1], "int32"))


def test_debug_mode_compares_every_kernel_with_ref(target):
    x = gc.placeholder("x", (None, 4))
    f = gc.function([x], [gc.exp(x).sum(axis=1), gc.softmax(x * 2.0)], backend="cuda", debug=True, to_host=True)
    out = f(np.ones((3, 4), "float32"))
    np.testing.assert_allclose(out[0], [np.exp(1.0) * 4] * 3, rtol=1e-5)


# -- CuPy itself (GPU only) --------------------------------------------------------------------


@pytest.mark.skipif(not GPU, reason=NO_GPU)
def test_cupy_arrays_in_and_out_and_to_host():
    import cupy as cp

    x = gc.placeholder("x", (None, 3))
    f = gc.function([x], gc.tanh(x) * 2.0, backend="cuda")
    xv = np.linspace(-1, 1, 12, dtype="float32").reshape(4, 3)
    out = f(cp.asarray(xv))
    assert isinstance(out, cp.ndarray)
    np.testing.assert_allclose(out.get(), np.tanh(xv) * 2, rtol=1e-5)
    out = f(xv)  # NumPy in, CuPy out
    assert isinstance(out, cp.ndarray)
    view = cp.asarray(np.arange(24, dtype="float32").reshape(4, 6) / 10)[:, ::2]  # non-contiguous
    np.testing.assert_allclose(f(view).get(), np.tanh(view.get()) * 2, rtol=1e-5)
    g = gc.function([x], gc.tanh(x) * 2.0, backend="cuda", to_host=True)
    assert isinstance(g(xv), np.ndarray)
    with pytest.raises(TypeError, match="'x'"):
        f(cp.ones((2, 3), "float64"))
    with pytest.raises(gc.ShapeError, match="'x'"):
        f(cp.ones((2, 4), "float32"))


@pytest.mark.skipif(not GPU, reason=NO_GPU)
def test_second_function_reuses_the_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_CUDA_EMULATE", raising=False)
    x = gc.placeholder("x", (None, 3))
    f1 = gc.function([x], gc.exp(x).sum(axis=0), backend="cuda")
    f2 = gc.function([x], gc.exp(x).sum(axis=0), backend="cuda")
    assert not f1._program.cache_hit and f2._program.cache_hit


# -- scan: a host loop over the step graph's pre-bound program --------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backwards,n_steps", [(False, None), (True, 3)])
def test_scan_forward_and_bptt_match_ref(target, dtype, backwards, n_steps):
    rng = np.random.default_rng(4)
    x = gc.placeholder("x", (None, None, 3), dtype)
    h0 = gc.placeholder("h0", (None, 4), dtype)
    W = gc.shared(rng.normal(size=(3, 4)).astype(dtype), name="W")
    U = gc.shared((rng.normal(size=(4, 4)) * 0.4).astype(dtype), name="U")

    def step(xt, h):
        h_new = gc.tanh(xt @ W + h @ U)
        return h_new, gc.sum(h_new, axis=1)  # a second output, not fed back

    hs, sums = gc.scan(step, sequences=x, outputs_info=[h0, None], n_steps=n_steps, go_backwards=backwards)
    loss = gc.sum(gc.square(hs)) + gc.sum(sums)
    outs = [hs[-1], hs, sums, *gc.grad(loss, [W, U, x, h0])]
    f_ref = gc.function([x, h0], outs, backend="ref")
    f_cuda = gc.function([x, h0], outs, backend="cuda", to_host=True)
    for t, b in ((5, 2), (4, 1)):  # one compilation, two call-time lengths and batch sizes
        xv, hv = rng.normal(size=(t, b, 3)).astype(dtype), rng.normal(size=(b, 4)).astype(dtype)
        for got, want in zip(f_cuda(xv, hv), f_ref(xv, hv)):
            compare(got, want, dtype)


def test_scan_random_steps_and_nesting_match_ref(target):
    x = gc.placeholder("x", (None, 2, 3), "float32")

    def outer(xt, h):
        inner = gc.scan(lambda r, acc: acc + gc.tanh(r), sequences=xt, outputs_info=gc.constant(np.zeros(3, "f4")))
        return h + inner[-1] * gc.random.uniform((3,), seed=11)

    hs = gc.scan(outer, sequences=x, outputs_info=gc.constant(np.zeros(3, "f4")))
    outs = [hs, gc.grad(gc.sum(hs), x)]
    f_ref = gc.function([x], outs, backend="ref")
    f_cuda = gc.function([x], outs, backend="cuda", to_host=True)
    xv = np.random.default_rng(5).normal(size=(4, 2, 3)).astype("float32")
    counters = [(s, s.get_value()) for s in f_ref.graph.shared]  # both functions share the RNG state
    got = [f_cuda(xv), f_cuda(xv)]
    for s, v in counters:
        s.set_value(v)
    want = [f_ref(xv), f_ref(xv)]
    assert not np.array_equal(want[0][0], want[1][0])  # the second call drew new numbers
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            compare(a, b, "float32")


def test_lstm_layer_training_step_matches_ref(target):
    from graphc.nn import LSTM, Dense, Sequential, losses

    def build(backend):
        model = Sequential([LSTM(5, seed=1), Dense(3, seed=2)], input_shape=(4, 2))
        x, t = gc.placeholder("x", (None, 4, 2)), gc.placeholder("t", (None,), "int32")
        loss = losses.categorical_crossentropy(model(x, training=True), t)
        step = gc.function([x, t], loss, updates=gc.optim.Adam(1e-2).updates(loss, model.params), backend=backend)
        return step, model

    rng = np.random.default_rng(6)
    xv, tv = rng.normal(size=(6, 4, 2)).astype("float32"), rng.integers(0, 3, 6).astype("int32")
    (s_ref, m_ref), (s_cuda, m_cuda) = build("ref"), build("cuda")
    for _ in range(3):
        np.testing.assert_allclose(host(s_cuda(xv, tv)), s_ref(xv, tv), rtol=1e-4)
    for a, b in zip(m_cuda.params, m_ref.params):
        np.testing.assert_allclose(a.get_value(), b.get_value(), rtol=1e-4, atol=1e-5)


def test_workspaces_of_many_batch_sizes_are_bounded(target):
    """One workspace per input-shape signature, the 64 most recently used kept."""
    x = gc.placeholder("x", (None, 3))
    f = gc.function([x], gc.tanh(x) * 2.0, backend="cuda", to_host=True)
    for b in range(1, 71):
        xv = np.full((b, 3), 0.5, "float32")
        np.testing.assert_allclose(host(f(xv)), np.tanh(xv) * 2, rtol=1e-6)
    assert len(f._program.memory_bytes) == 64


def test_debug_mode_names_the_step_and_the_kernel_inside_a_loop(target, broken_loop_step):
    """A wrong tanh inside a scan's step: debug mode names the loop kernel, the first step that
    differs and the step graph's own kernel."""
    f, xv = broken_loop_step("cuda", to_host=True)
    with pytest.raises(AssertionError, match=r"op\[scan\].*first differs at step 1.*elementwise\[.*tanh"):
        f(xv)
