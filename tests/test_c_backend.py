"""The C backend agrees with the reference backend: every registered op in float32 and float64,
gradients, several batch sizes, updates."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import graphc as gc
from graphc.ops import REGISTRY

from .conftest import HypothesisDraw, numeric_grad, placeholders_for

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


def call_time_placeholders(args):
    """Placeholders whose dimensions are bound at call time (static only where 1, which
    broadcasts): one compiled library then serves many drawn shapes, as it does for users."""
    return [gc.placeholder(f"a{i}", tuple(1 if d == 1 else None for d in a.shape), a.dtype.name)
            for i, a in enumerate(args)]


def run_both(build, args):
    """The same graph on ref and on C, from the same shared state (RNG counters included)."""
    try:
        vars_ = call_time_placeholders(args)
        out = build(*vars_)
    except gc.ShapeError:  # some ops need static sizes (the class axis of cross-entropy)
        vars_ = placeholders_for(args)
        out = build(*vars_)
    f_ref = gc.function(vars_, out, backend="ref")
    f_c = gc.function(vars_, out, backend="c")
    state = [(s, s.get_value()) for s in f_ref.graph.shared]
    want = f_ref(*args)
    for s, v in state:
        s.set_value(v)
    return f_c(*args), want


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ALL)
@given(data=st.data())
def test_op_c_matches_ref(name, dtype, data):
    case = REGISTRY[name].sample(HypothesisDraw(data))
    args = [a.astype(dtype) if a.dtype.kind == "f" else a for a in case.args]
    got, want = run_both(case.build, args)
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
