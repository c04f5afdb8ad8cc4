"""The typed lowering: kernel records, and the Target deciding which gemm epilogues fold."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.core import Graph
from graphc.lower import ElementwiseKernel, GemmKernel, LoopKernel, ReduceKernel, Target, plan_memory, schedule
from graphc.passes import optimize


def _dense_relu():
    x = gc.placeholder("x", (None, 8))
    w = gc.shared(np.ones((8, 4), "float32"), name="w")
    b = gc.shared(np.zeros(4, "float32"), name="b")
    return Graph([x], [gc.relu(x @ w + b)])


def _sgd_update(lr):
    x = gc.placeholder("x", (None, 8))
    g = gc.placeholder("g", (None, 4))
    w = gc.shared(np.ones((8, 4), "float32"), name="w")
    return Graph([x, g], [w - lr * (x.T @ g)])


NONE = Target("bare", frozenset())


def test_records_are_typed_and_the_bias_folds_where_the_target_takes_it():
    graph = optimize(_dense_relu())
    folded = schedule(graph, target=Target("c", frozenset({"bias"})))
    gemm = next(k for k in folded.kernels if isinstance(k, GemmKernel))
    assert gemm.bias is not None and gemm.beta == 1.0 and gemm.acc is None
    assert [n.op.name for n in gemm.nodes] == ["matmul", "add"]
    bare = schedule(graph, target=NONE)
    gemm = next(k for k in bare.kernels if isinstance(k, GemmKernel))
    assert gemm.bias is None and gemm.beta == 0.0
    ew = next(k for k in bare.kernels if isinstance(k, ElementwiseKernel))
    assert [n.op.name for n in ew.nodes] == ["add", "relu"]


def test_transposes_are_flags_on_every_target():
    x = gc.placeholder("x", (None, 8))
    y = gc.placeholder("y", (None, 4))
    sched = schedule(optimize(Graph([x, y], [x.T @ y])), target=NONE)
    (gemm,) = sched.kernels
    assert isinstance(gemm, GemmKernel) and gemm.trans_a and not gemm.trans_b and gemm.a is x


def test_accumulate_epilogue_and_call_time_alpha_follow_the_target():
    lr = gc.shared(np.float32(0.1), name="lr")
    graph = optimize(_sgd_update(lr))
    gemm = next(k for k in schedule(graph).kernels if isinstance(k, GemmKernel))
    assert gemm.acc is not None and gemm.alpha is lr and gemm.negate and gemm.beta == 1.0
    no_runtime = Target("t", frozenset({"accumulate"}), runtime_alpha=False)
    gemm = next(k for k in schedule(graph, target=no_runtime).kernels if isinstance(k, GemmKernel))
    assert gemm.acc is None and gemm.alpha == 1.0
    # a constant scale still folds without call-time alphas
    const = optimize(_sgd_update(0.5))
    gemm = next(k for k in schedule(const, target=no_runtime).kernels if isinstance(k, GemmKernel))
    assert gemm.acc is not None and gemm.alpha == 0.5 and gemm.negate


def test_reductions_and_loops_get_their_own_records():
    x = gc.placeholder("x", (None, 8))
    sched = schedule(optimize(Graph([x], [(x * 2.0).sum(axis=1)])))
    assert [type(k) for k in sched.kernels] == [ReduceKernel]
    xs = gc.placeholder("xs", (5, 3))
    h0 = gc.placeholder("h0", (3,))
    hs = gc.scan(lambda x_t, h: gc.tanh(h + x_t), sequences=xs, outputs_info=h0)
    sched = schedule(optimize(Graph([xs, h0], [hs])))
    assert any(isinstance(k, LoopKernel) for k in sched.kernels)


@pytest.mark.parametrize("alignment", [64, 256])
def test_workspace_blocks_are_aligned_as_the_target_says(alignment):
    x = gc.placeholder("x", (None, 7))
    y = gc.exp(x) * 3.0
    graph = optimize(Graph([x], [(y @ y.T).sum() + gc.tanh(y).sum()]))
    plan = plan_memory(schedule(graph), 1, [], alignment=alignment)
    assert plan.temps, "the test graph needs workspace temporaries"
    shapes = {id(v): tuple(5 if d is None else d for d in v.shape) for v in plan.temps}
    offsets, total = plan.layout(shapes)
    assert all(o % alignment == 0 for o in offsets.values()) and total % alignment == 0


@pytest.mark.parametrize("bad, message", [(dict(gemm_epilogues=frozenset({"relu"})), "unknown gemm epilogue"),
                                          (dict(alignment=48), "power of two")])
def test_a_bad_target_is_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        Target("mine", **bad)


def test_both_targets_compute_the_same_dense_layer():
    from graphc.backends.c.emit import TARGET as C
    from graphc.backends.cuda.emit import TARGET as CUDA

    assert C.folds("bias") and not CUDA.folds("bias") and CUDA.folds("accumulate")
    x = np.random.default_rng(0).normal(size=(6, 8)).astype("float32")
    graph = _dense_relu()
    f = gc.function(graph.inputs, graph.outputs[0], backend="c")
    np.testing.assert_allclose(f(x), np.maximum(x @ np.ones((8, 4), "float32"), 0), rtol=1e-6)


def test_fusion_never_builds_a_cycle_through_a_reduction_gradient():
    """The differential fuzzer's case: sum(exp(x + y)) * x and its gradient. The gradient's
    broadcast of d/dsum joins the exp group that feeds the sum, after the sum's own consumers
    were fused; the position-pruned cycle check missed that (a "cyclic kernel graph" error)."""
    x = gc.placeholder("x", (None,), "float64")
    y = gc.placeholder("y", (None,), "float64")
    s = gc.sum(gc.exp(x + y), axis=0)
    out = -(s * x)
    outs = [out, *gc.grad(gc.sum(out), [x, y])]
    xv, yv = np.array([0.1, 0.2]), np.array([0.3, -0.4])
    got = gc.function([x, y], outs, backend="c")(xv, yv)
    want = gc.function([x, y], outs, backend="ref")(xv, yv)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    e = np.exp(xv + yv)
    np.testing.assert_allclose(got[1], -e.sum() - xv.sum() * e, rtol=1e-12)  # dL/dx_j = -s - sum(x) e_j
