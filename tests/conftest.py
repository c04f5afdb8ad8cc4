"""Shared test machinery: hypothesis settings, finite-difference helpers, backend runners. The
hypothesis implementation of the op registry's `Draw` is public: graphc.testing.strategies."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import graphc as gc
from graphc.testing.strategies import HypothesisDraw  # noqa: F401 - re-exported for the tests

# A throw-away compile cache for the whole session (removed at exit), so the suite never fills
# the user's real one; an explicit GRAPHC_CACHE_DIR is kept (to reuse a warm cache on purpose).
if not os.environ.get("GRAPHC_CACHE_DIR"):
    _cache = tempfile.mkdtemp(prefix="graphc-test-cache-")
    os.environ["GRAPHC_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

settings.register_profile("default", max_examples=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def draw_case():
    """Returns a function (data, entry) -> Case using the hypothesis Draw."""
    return lambda data, entry: entry.sample(HypothesisDraw(data))


def placeholders_for(args):
    return [gc.placeholder(f"a{i}", a.shape, a.dtype.name) for i, a in enumerate(args)]


def call_time_placeholders(args):
    """Placeholders whose dimensions are bound at call time (static only where 1, which
    broadcasts): one compiled library then serves many drawn shapes, as it does for users."""
    return [gc.placeholder(f"a{i}", tuple(1 if d == 1 else None for d in a.shape), a.dtype.name)
            for i, a in enumerate(args)]


def run_both(backend: str, build, args):
    """The same graph on ref and on `backend`, from the same shared state (RNG counters included).
    Returns (backend's outputs, ref's outputs)."""
    try:
        vars_ = call_time_placeholders(args)
        out = build(*vars_)
    except gc.ShapeError:  # some ops need static sizes (the class axis of cross-entropy)
        vars_ = placeholders_for(args)
        out = build(*vars_)
    f_ref = gc.function(vars_, out, backend="ref")
    f_other = gc.function(vars_, out, backend=backend)
    state = [(s, s.get_value()) for s in f_ref.graph.shared]
    want = f_ref(*args)
    for s, v in state:
        s.set_value(v)
    return f_other(*args), want


def numeric_grad(f, args, i, eps=1e-6):
    """Central finite differences of scalar f(*args) with respect to args[i] (float64)."""
    x = args[i]
    g = np.zeros_like(x)
    flat = g.reshape(-1)
    for k in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp.reshape(-1)[k] += eps
        xm.reshape(-1)[k] -= eps
        fp = f(*args[:i], xp, *args[i + 1:])
        fm = f(*args[:i], xm, *args[i + 1:])
        flat[k] = (float(fp) - float(fm)) / (2 * eps)
    return g


# Most tests check graph semantics on the reference backend (the oracle), where a function costs
# no compiler run; tests of the C backend ask for it explicitly (or use the `backend` fixture).
os.environ.setdefault("GRAPHC_BACKEND", "ref")


@pytest.fixture(params=["ref", "c"])
def backend(request, monkeypatch):
    """Runs a test once per CPU backend by changing the default backend."""
    monkeypatch.setenv("GRAPHC_BACKEND", request.param)
    return request.param


@pytest.fixture
def broken_loop_step(monkeypatch):
    """(function of x, input) where the C-family emitters compute tanh wrongly (x / 2) inside a
    scan's step: for the debug-mode tests. Step 0 agrees (tanh(0) = 0 = 0 / 2), step 1 does not.
    Returns ``make(backend, **options)`` -> (compiled function, input array)."""
    import graphc.backends.cfamily.emitter as emit

    right = emit.scalar_c

    def wrong_tanh(name, dtype, args):
        return f"(({args[0]}) * 0.5f)" if name == "tanh" else right(name, dtype, args)

    monkeypatch.setattr(emit, "scalar_c", wrong_tanh)

    def make(backend, **options):
        x = gc.placeholder("x", (None, 3))
        hs = gc.scan(lambda xt, h: gc.tanh(xt + h * 0.5), sequences=x, outputs_info=gc.constant(np.zeros(3, "f4")))
        xv = np.zeros((4, 3), "float32")
        xv[1:] = 0.3
        return gc.function([x], hs * 2.0, backend=backend, debug=True, **options), xv

    return make
