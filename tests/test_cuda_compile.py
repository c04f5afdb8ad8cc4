"""The CUDA backend at compile level, on every machine (no GPU, no CuPy needed).

The CUDA source generated for every registered op (float32 and float64, with the gradients of
the differentiable ones) and for random fused graphs compiles without error with NVRTC (the
pinned ``nvidia-cuda-nvrtc`` wheel) or ``nvcc --ptx``. The tests skip, with the reason, only when
neither compiler is installed. Also: ``import graphc`` needs no CuPy, and ``backend='cuda'``
without CuPy or a GPU raises an error that says what is missing.

Several programs share one translation unit (their kernels are named apart by a prefix): one
NVRTC call per op instead of one per case keeps the whole file at a few seconds.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.backends.cuda import nvrtc
from graphc.backends.cuda.emit import TARGET as CUDA_TARGET
from graphc.backends.cuda.emit import Gemm, Launch, emit_cuda
from graphc.lower import plan_memory, schedule
from graphc.ops import REGISTRY

from .conftest import HypothesisDraw, placeholders_for
from .test_passes import RandomGraph

COMPILER = nvrtc.find_compiler()
needs_compiler = pytest.mark.skipif(COMPILER is None, reason=nvrtc.unavailable_reason())

CASES_PER_OP = 4  # drawn cases per op and dtype (each also with its gradient graph)
RANDOM_GRAPHS = 40


def collect(n: int):
    """Run the decorated function on `n` hypothesis draws, derandomised (the same cases every run)."""
    return settings(max_examples=n, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))


def emit_program(inputs, outputs, updates=(), prefix="gc"):
    """The CUDA emitter's result for a function of `inputs` -> `outputs`: the same optimised graph,
    schedule and memory plan CudaProgram builds (the reference backend compiles nothing)."""
    f = gc.function(inputs, outputs, updates=list(updates), backend="ref")
    g, n = f.graph, len(f.outputs)
    targets = [t for t, _ in f.updates]
    sched = schedule(g, late={id(v) for v in g.outputs[n:]}, target=CUDA_TARGET)
    em = emit_cuda(sched, plan_memory(sched, n, targets, alignment=CUDA_TARGET.alignment), prefix)
    for i in range(n):
        em.output_slot(i)
    return em


def call_time_placeholders(args):
    return [gc.placeholder(f"a{i}", tuple(1 if d == 1 else None for d in a.shape), a.dtype.name)
            for i, a in enumerate(args)]


def op_program(name: str, dtype: str, data, prefix: str):
    """One registry case of op `name` in `dtype`, plus the gradients of a weighted sum of it."""
    entry = REGISTRY[name]
    case = entry.sample(HypothesisDraw(data))
    args = [a.astype(dtype) if a.dtype.kind == "f" else a for a in case.args]
    try:
        vars_ = call_time_placeholders(args)  # dimensions bound at call time, as users declare them
        out = case.build(*vars_)
    except gc.ShapeError:  # some ops need static sizes
        vars_ = placeholders_for(args)
        out = case.build(*vars_)
    outs = [out]
    if entry.differentiable and out.dtype.startswith("float"):
        wrt = list(case.wrt) if case.wrt is not None else [i for i, a in enumerate(args) if a.dtype.kind == "f"]
        if wrt:
            outs += gc.grad(gc.sum(out * 1.5), [vars_[i] for i in wrt])
    return emit_program(vars_, outs, prefix=prefix)


def compile_all(sources: list[tuple[str, str]]) -> None:
    """Compile the (label, source) programs as one translation unit; on failure, find the
    programs that fail on their own and report them with the compiler's messages."""
    try:
        nvrtc.check_compiles("\n".join(s for _, s in sources))
        return
    except gc.CompileError as whole:
        failures = []
        for label, src in sources:
            try:
                nvrtc.check_compiles(src)
            except gc.CompileError as e:
                failures.append(f"{label}:\n{e}")
        pytest.fail("\n\n".join(failures) or str(whole), pytrace=False)


@needs_compiler
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_op_compiles_to_cuda(name):
    """Every registered op, float32 and float64, forward and gradient graphs, several drawn shapes
    (static and call-time dimensions, broadcasting, each axis): the generated CUDA compiles."""
    sources = []

    def drawer(dtype):
        @collect(CASES_PER_OP)
        @given(data=st.data())
        def draw(data):
            prefix = f"{name}_{dtype}_{len(sources)}"
            em = op_program(name, dtype, data, prefix)
            assert all(n.startswith(prefix + "_") for n in em.kernel_names)
            sources.append((f"{name} ({dtype}) case {len(sources)}", em.source))

        return draw

    for dtype in ("float32", "float64"):
        drawer(dtype)()
    assert sources
    compile_all(sources)


@needs_compiler
def test_random_fused_graphs_compile_to_cuda():
    """Random DAGs (broadcasting, reductions on every axis, views, matmul, softmax, fused chains)
    with their gradients: the generated CUDA compiles."""
    sources = []

    @collect(RANDOM_GRAPHS)
    @given(data=st.data())
    def draw(data):
        g = RandomGraph(data)
        outs = [v for v, _ in g.build()]
        extra = gc.grad(gc.sum(outs[0] * 1.5), list(g.float_inputs)) if outs[0].dtype.startswith("float") else []
        em = emit_program(g.inputs, outs + extra, prefix=f"rg{len(sources)}")
        sources.append((f"random graph {len(sources)}:\n{em.source}", em.source))

    draw()
    assert len(sources) >= RANDOM_GRAPHS // 2
    compile_all(sources)


def _mlp():
    rng = np.random.default_rng(0)
    x = gc.placeholder("x", (None, 6))
    t = gc.placeholder("t", (None,), "int32")
    W1 = gc.shared(rng.normal(0, 0.5, (6, 5)).astype("float32"), name="W1")
    b1 = gc.shared(np.zeros(5, "float32"), name="b1")
    W2 = gc.shared(rng.normal(0, 0.5, (5, 3)).astype("float32"), name="W2")
    h = gc.relu(x @ W1 + b1)
    h = h * gc.random.bernoulli(0.8, like=h, seed=3)  # dropout-like: the RNG kernel and its counter
    loss = gc.softmax_cross_entropy(h @ W2, t).mean()
    params = [W1, b1, W2]
    grads = gc.grad(loss, params)
    return [x, t], loss, [(p, p - 0.1 * g) for p, g in zip(params, grads)]


@needs_compiler
def test_training_step_compiles_with_the_gemm_epilogues():
    """A whole training step: gemms go to cuBLAS with the fused SGD epilogue (the CUDA target
    leaves the bias add to the elementwise kernel of the activation), updates and the RNG
    counter are part of the same program, everything else compiles."""
    inputs, loss, updates = _mlp()
    em = emit_program(inputs, [loss], updates)
    gemms = [s for s in em.steps if isinstance(s, Gemm)]
    assert gemms and any(s.beta == 1.0 and s.alpha != 1.0 for s in gemms)  # W <- W - lr * a @ b
    assert any(s.trans_a or s.trans_b for s in gemms)  # transposes are cuBLAS flags
    assert not any(n.endswith("_bias") for n in em.kernel_names)  # no bias-row pass before a gemm
    assert all(isinstance(s, Launch) for s in em.steps if getattr(s, "name", None))
    assert "gc_philox_words" in em.source and "gc_group_reduce" in em.source
    nvrtc.check_compiles(em.source)


@needs_compiler
def test_real_architecture_cubin():
    """The runtime builds a CUBIN for the device's sm_XX: that path compiles too."""
    inputs, loss, updates = _mlp()
    archs = nvrtc.supported_archs() or [90]
    arch = f"sm_{90 if 90 in archs else archs[-1]}"
    binary = nvrtc.check_compiles(emit_program(inputs, [loss], updates).source, arch)
    assert binary[:4] == b"\x7fELF"


@pytest.mark.skipif(nvrtc.find_compiler("nvcc") is None, reason="nvcc is not on PATH")
def test_nvcc_compiles_the_same_source():
    inputs, loss, updates = _mlp()
    em = emit_program(inputs, [loss, gc.softmax(inputs[0]), gc.argmax(inputs[0], 1)], updates)
    ptx = nvrtc.check_compiles(em.source, compiler=nvrtc.find_compiler("nvcc"))
    assert b".entry" in ptx


@needs_compiler
def test_compile_errors_carry_the_log_and_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    bad = '#include "gc_cuda.cuh"\nextern "C" __global__ void k(float *y) { y[0] = undefined_name; }\n'
    with pytest.raises(gc.CompileError, match="undefined_name") as info:
        nvrtc.build_module(bad, nvrtc.DEFAULT_ARCH)
    assert info.value.source_path and open(info.value.source_path).read() == bad
    assert "undefined_name" in info.value.log


@needs_compiler
def test_compiled_modules_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    x = gc.placeholder("x", (None, 4))
    src = emit_program([x], [gc.tanh(x * 2.0).sum(axis=1)]).source
    path, hit = nvrtc.build_module(src, nvrtc.DEFAULT_ARCH)
    assert not hit and path.exists() and (path.parent / "source.cu").read_text() == src
    again, hit = nvrtc.build_module(src, nvrtc.DEFAULT_ARCH)
    assert hit and again == path
    path.write_bytes(b"corrupt")  # a damaged entry is rebuilt
    fixed, hit = nvrtc.build_module(src, nvrtc.DEFAULT_ARCH)
    assert not hit and fixed.read_bytes() != b"corrupt"


def test_broadcasting_is_index_arithmetic_not_copies():
    """A broadcast operand is read with stride 0 inside the fused loop: no extra kernel, no copy."""
    x = gc.placeholder("x", (None, 5))
    b = gc.placeholder("b", (5,))
    em = emit_program([x, b], [gc.tanh(x + b) * 2.0])
    launches = [s for s in em.steps if isinstance(s, Launch)]
    assert len(launches) == 1 and len(em.steps) == 1
    # the bias is indexed by the inner loop index only
    assert "[i1]" in em.source and "gc_tanhf" in em.source


def test_user_names_never_reach_the_cuda_source():
    evil = 'x*/ int system(); /*"\n#include <stdio.h>'
    x = gc.placeholder(evil, (3,))
    W = gc.shared(np.ones(3, "float32"), name=evil + "W")
    src = emit_program([x], [x * W], [(W, W * 2.0)]).source
    assert "system" not in src and "stdio" not in src


# -- availability ------------------------------------------------------------------------------


def test_import_graphc_needs_no_cupy():
    """With CuPy made unimportable, graphc imports and every CPU backend works."""
    code = ("import sys; sys.modules['cupy'] = None\n"
            "import numpy as np, graphc as gc\n"
            "x = gc.placeholder('x', (None, 2))\n"
            "f = gc.function([x], (x * 2.0).sum(), backend='ref')\n"
            "assert float(f(np.ones((3, 2), 'float32'))) == 12.0\n"
            "try:\n"
            "    gc.function([x], x * 2.0, backend='cuda')\n"
            "except RuntimeError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "backend='cuda' needs CuPy (pip install 'graphc[cuda]') and an NVIDIA GPU; found: no CuPy" in out


def test_cuda_backend_without_cupy_says_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    x = gc.placeholder("x", (None, 2))
    with pytest.raises(RuntimeError, match=r"needs CuPy \(pip install 'graphc\[cuda\]'\) and an NVIDIA GPU; "
                                           r"found: no CuPy"):
        gc.function([x], x * 2.0, backend="cuda")


def test_cuda_backend_without_a_gpu_says_so(monkeypatch):
    """CuPy installed but no GPU (or no driver): the error names CuPy's version and the GPU problem."""

    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.__version__ = "14.2.0"
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    x = gc.placeholder("x", (None, 2))
    with pytest.raises(RuntimeError, match=r"found: CuPy 14\.2\.0, but no usable GPU .*no CUDA-capable device"):
        gc.function([x], x * 2.0, backend="cuda")


@needs_compiler
def test_scan_step_graphs_compile_to_cuda():
    """A scan runs as a host loop over its step graph's own program: every step graph of an LSTM
    training step (the forward scan, BPTT's reversed scan) and of a nested scan compiles."""
    from graphc.backends.cuda.emit import HostLoop
    from graphc.core import Graph
    from graphc.nn import LSTM
    from graphc.passes import optimize

    x = gc.placeholder("x", (None, 5, 3))
    lstm = LSTM(4, seed=1)
    loss = gc.mean(gc.square(lstm(x)))
    xs = gc.placeholder("xs", (None, 2, 3))
    nested = gc.scan(lambda xt, h: h + gc.scan(lambda r, acc: acc + gc.tanh(r), sequences=xt,
                                               outputs_info=gc.constant(np.zeros(3, "f4")))[-1],
                     sequences=xs, outputs_info=gc.constant(np.zeros(3, "f4")))
    ids = itertools.count()
    sources, pending = [], [emit_program([x], [loss, *gc.grad(loss, lstm.params)], prefix="lstm"),
                            emit_program([xs], [nested, gc.grad(gc.sum(nested), xs)], prefix="nest")]
    while pending:
        em = pending.pop()
        sources.append((em.prefix, em.source))
        for step in em.steps:
            if isinstance(step, HostLoop):
                body = step.node.op.body
                g = optimize(Graph(list(body.inputs), list(body.outputs)))
                sched = schedule(g, target=CUDA_TARGET)
                sub = emit_cuda(sched, plan_memory(sched, len(g.outputs), [], alignment=CUDA_TARGET.alignment),
                                f"{em.prefix}_s{next(ids)}")
                for i in range(len(g.outputs)):
                    sub.output_slot(i)
                pending.append(sub)
    assert len(sources) >= 5  # 2 programs, LSTM forward and backward steps, nested steps
    compile_all(sources)
