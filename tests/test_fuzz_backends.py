"""Differential fuzzing: random graphs (graphc.testing.strategies.graphs) on C against ref,
forward and gradient, small shapes and large ones that take the C backend's OpenMP paths."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.testing import strategies as gst

from .conftest import call_time_placeholders


def _compare(build, args, grad: bool):
    vs = call_time_placeholders(args)
    out = build(*vs)
    outs = [out]
    if grad:
        outs += gc.grad(gc.sum(out), list(vs))
    got = gc.function(vs, outs, backend="c")(*args)
    want = gc.function(vs, outs, backend="ref")(*args)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (build.steps, g.shape, w.shape)
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12, err_msg=str(build.steps))


@settings(max_examples=25, deadline=None)
@given(gst.graphs(max_ops=6), st.booleans())
def test_random_graphs_agree_on_c_and_ref(graph, grad):
    _compare(*graph, grad=grad)


# large enough that elementwise loops and reductions are split across threads
@settings(max_examples=6, deadline=None)
@given(gst.graphs(max_ops=4, shape=(64, 4096)), st.booleans())
def test_random_large_graphs_agree_on_c_and_ref(graph, grad):
    _compare(*graph, grad=grad)


@settings(max_examples=10, deadline=None)
@given(gst.graphs(max_ops=5, dtype="float32", reductions=False))
def test_random_float32_graphs_agree_on_c_and_ref(graph):
    build, args = graph
    vs = call_time_placeholders(args)
    out = build(*vs)
    got = gc.function(vs, out, backend="c")(*args)
    want = gc.function(vs, out, backend="ref")(*args)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6, err_msg=str(build.steps))


# sin/cos reduce their argument exactly on C too (issue 15, item 7): random graphs on inputs of
# every magnitude up to the dtype's max, so that sin/cos see huge arguments directly
@settings(max_examples=10, deadline=None)
@given(st.sampled_from(["float32", "float64"]), st.integers(0, 2**32 - 1), st.booleans())
def test_sin_cos_of_huge_arguments_agree_on_c_and_ref(dtype, seed, grad):
    rng = np.random.default_rng(seed)
    top = np.log2(np.finfo(dtype).max)
    x = (np.exp2(rng.uniform(0, top, 2000)) * rng.choice([-1.0, 1.0], 2000)).astype(dtype)
    v = gc.placeholder("x", (None,), dtype)
    out = gc.sin(v) * gc.cos(v) + gc.cos(v)
    outs = [out] + (gc.grad(gc.sum(out), [v]) if grad else [])
    got = gc.function([v], outs, backend="c")(x)
    want = gc.function([v], outs, backend="ref")(x)
    tol = dict(rtol=2e-6, atol=1e-6) if dtype == "float32" else dict(rtol=1e-9, atol=1e-12)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, **tol)
