"""graphc.optim: every optimizer's first steps against a NumPy transcription of its formula,
clipping, decoupled weight decay, learning-rate schedules, and lr changes without recompiling.

Expected values come from NumPy (float64) implementations of the documented formulas, never
from graphc output."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphc as gc
from graphc import optim

RTOL, ATOL = 2e-5, 1e-6  # float32 results against float64 references

# A small least-squares problem: loss = mean((x @ W + b - y)**2), gradient written by hand below.
_rng = np.random.default_rng(42)
X = _rng.normal(size=(8, 3)).astype("float32")
Y = _rng.normal(size=(8, 2)).astype("float32")
W0 = _rng.normal(size=(3, 2)).astype("float32")
B0 = _rng.normal(size=(2,)).astype("float32")


def np_grads(params):
    W, b = params
    x, y = X.astype("float64"), Y.astype("float64")
    r = x @ W + b - y
    return [2.0 / r.size * x.T @ r, 2.0 / r.size * r.sum(axis=0)]


def build(opt, backend="ref", dtype="float32"):
    """A compiled training step of `opt` on the least-squares problem, and its parameters."""
    W = gc.shared(W0.astype(dtype), name="W")
    b = gc.shared(B0.astype(dtype), name="b")
    x = gc.placeholder("x", (None, 3), dtype)
    y = gc.placeholder("y", (None, 2), dtype)
    loss = gc.mean(gc.square(x @ W + b - y))
    f = gc.function([x, y], loss, updates=opt.updates(loss, [W, b]), backend=backend)
    return f, [W, b]


def run_graphc(opt, steps=2, backend="ref"):
    f, params = build(opt, backend)
    out = []
    for _ in range(steps):
        f(X, Y)
        out.append([p.get_value() for p in params])
    return out


def run_numpy(step, steps=2):
    """`step(params, grads, state, t)` updates params (float64 arrays) in place."""
    params = [W0.astype("float64"), B0.astype("float64")]
    state: dict = {}
    out = []
    for t in range(1, steps + 1):
        grads = np_grads(params)
        for i, (p, g) in enumerate(zip(params, grads)):
            step(p, g, state.setdefault(i, {}), t)
        out.append([p.copy() for p in params])
    return out


def assert_trajectories_close(got, want):
    assert len(got) == len(want)
    for k, (gs, ws) in enumerate(zip(got, want)):
        for name, g, w in zip(("W", "b"), gs, ws):
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=f"step {k + 1}, {name}")


# NumPy transcriptions of the formulas (PyTorch's conventions) ---------------------------------

def np_sgd(lr, momentum=0.0, nesterov=False, wd=0.0):
    def step(p, g, s, t):
        if momentum:
            s["b"] = momentum * s.get("b", 0.0) + g
            d = g + momentum * s["b"] if nesterov else s["b"]
        else:
            d = g
        p -= lr * wd * p + lr * d
    return step


def np_notes_momentum(lr, alpha):
    """The lecture notes' form: v <- alpha*v - eps*g; theta <- theta + v."""
    def step(p, g, s, t):
        s["v"] = alpha * s.get("v", 0.0) - lr * g
        p += s["v"]
    return step


def np_adagrad(lr, eps, init=0.0):
    def step(p, g, s, t):
        s["s"] = s.get("s", np.full_like(p, init)) + g * g
        p -= lr * g / (np.sqrt(s["s"]) + eps)
    return step


def np_rmsprop(lr, rho, eps, momentum=0.0, centered=False):
    def step(p, g, s, t):
        s["v"] = rho * s.get("v", 0.0) + (1 - rho) * g * g
        if centered:
            s["a"] = rho * s.get("a", 0.0) + (1 - rho) * g
            denom = np.sqrt(s["v"] - s["a"] ** 2) + eps
        else:
            denom = np.sqrt(s["v"]) + eps
        if momentum:
            s["buf"] = momentum * s.get("buf", 0.0) + g / denom
            p -= lr * s["buf"]
        else:
            p -= lr * g / denom
    return step


def np_adam(lr, b1, b2, eps, wd=0.0, amsgrad=False):
    def step(p, g, s, t):
        p *= 1 - lr * wd  # decoupled decay first (PyTorch AdamW); the Adam step does not read p
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        v = s["v"]
        if amsgrad:
            s["vmax"] = v = np.maximum(s.get("vmax", 0.0), s["v"])
        m_hat = s["m"] / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        p -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return step


CASES = {
    "sgd": (lambda: optim.SGD(lr=0.1), np_sgd(0.1)),
    "sgd-momentum": (lambda: optim.SGD(lr=0.1, momentum=0.8), np_sgd(0.1, 0.8)),
    "Momentum": (lambda: optim.Momentum(lr=0.05), np_sgd(0.05, 0.9)),
    "Nesterov": (lambda: optim.Nesterov(lr=0.05), np_sgd(0.05, 0.9, nesterov=True)),
    "sgd-nesterov": (lambda: optim.SGD(lr=0.05, momentum=0.7, nesterov=True), np_sgd(0.05, 0.7, nesterov=True)),
    "SGDW": (lambda: optim.SGDW(lr=0.1, momentum=0.5, weight_decay=0.2), np_sgd(0.1, 0.5, wd=0.2)),
    "AdaGrad": (lambda: optim.AdaGrad(lr=0.1), np_adagrad(0.1, 1e-10)),
    "AdaGrad-init": (lambda: optim.AdaGrad(lr=0.1, eps=1e-3, initial_accumulator_value=0.1),
                     np_adagrad(0.1, 1e-3, 0.1)),
    "RMSProp": (lambda: optim.RMSProp(lr=0.01), np_rmsprop(0.01, 0.9, 1e-8)),
    "RMSProp-rho": (lambda: optim.RMSProp(lr=0.02, rho=0.5, eps=1e-3), np_rmsprop(0.02, 0.5, 1e-3)),
    "RMSProp-momentum": (lambda: optim.RMSProp(lr=0.01, momentum=0.9), np_rmsprop(0.01, 0.9, 1e-8, momentum=0.9)),
    "RMSProp-centered": (lambda: optim.RMSProp(lr=0.01, centered=True), np_rmsprop(0.01, 0.9, 1e-8, centered=True)),
    "Adam": (lambda: optim.Adam(lr=0.01), np_adam(0.01, 0.9, 0.999, 1e-8)),
    "Adam-betas": (lambda: optim.Adam(lr=0.03, beta1=0.5, beta2=0.8, eps=1e-4), np_adam(0.03, 0.5, 0.8, 1e-4)),
    "Adam-amsgrad": (lambda: optim.Adam(lr=0.01, amsgrad=True), np_adam(0.01, 0.9, 0.999, 1e-8, amsgrad=True)),
    "AdamW": (lambda: optim.AdamW(lr=0.01), np_adam(0.01, 0.9, 0.999, 1e-8, wd=0.01)),
    "AdamW-wd": (lambda: optim.AdamW(lr=0.01, weight_decay=0.5), np_adam(0.01, 0.9, 0.999, 1e-8, wd=0.5)),
    "Adam-wd": (lambda: optim.Adam(lr=0.01, weight_decay=0.5), np_adam(0.01, 0.9, 0.999, 1e-8, wd=0.5)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_first_two_steps_match_numpy(case):
    make, ref = CASES[case]
    assert_trajectories_close(run_graphc(make(), steps=2), run_numpy(ref, steps=2))


@pytest.mark.parametrize("case", ["Nesterov", "Adam", "RMSProp-centered"])
def test_first_two_steps_match_numpy_on_c(case):
    make, ref = CASES[case]
    assert_trajectories_close(run_graphc(make(), steps=2, backend="c"), run_numpy(ref, steps=2))


def test_adam_many_steps_bias_correction():
    """Bias correction uses the step counter: still right at step 30 (where b1**t is small)."""
    assert_trajectories_close(run_graphc(optim.Adam(lr=0.01), steps=30)[-1:],
                              run_numpy(np_adam(0.01, 0.9, 0.999, 1e-8), steps=30)[-1:])


def test_momentum_equals_notes_form_at_constant_lr():
    """PyTorch's b = mu*b + g; w -= lr*b is the notes' v = alpha*v - eps*g; w += v (v = -lr*b)."""
    assert_trajectories_close(run_graphc(optim.Momentum(lr=0.05, momentum=0.9), steps=5),
                              run_numpy(np_notes_momentum(0.05, 0.9), steps=5))


def test_adam_float64_params():
    opt = optim.Adam(lr=0.01)
    f, params = build(opt, dtype="float64")
    want = run_numpy(np_adam(0.01, 0.9, 0.999, 1e-8), steps=2)
    for k in range(2):
        f(X.astype("float64"), Y.astype("float64"))
        for p, w in zip(params, want[k]):
            assert p.get_value().dtype == np.float64
            np.testing.assert_allclose(p.get_value(), w, rtol=1e-6, atol=1e-7)


# slots and the step counter ---------------------------------------------------------------------

def test_slots_are_named_zero_and_updated():
    opt = optim.Adam(lr=0.01)
    f, (W, b) = build(opt)
    names = [s.name for s in opt.slots]
    assert names == ["Adam/iterations", "W/m", "W/v", "b/m", "b/v"]
    assert all(s.dtype == "float32" for s in opt.slots[1:])
    assert opt.iterations.dtype == "int64" and int(opt.iterations.get_value()) == 0
    assert not np.any(opt.get_slot(W, "m").get_value())
    f(X, Y)
    f(X, Y)
    assert int(opt.iterations.get_value()) == 2
    p0 = [W0.astype("float64"), B0.astype("float64")]
    p1 = run_numpy(np_adam(0.01, 0.9, 0.999, 1e-8), steps=1)[0]
    g0, g1 = np_grads(p0)[0], np_grads(p1)[0]
    np.testing.assert_allclose(opt.get_slot(W, "m").get_value(), 0.9 * 0.1 * g0 + 0.1 * g1, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(opt.get_slot(W, "v").get_value(), 0.999 * 0.001 * g0 ** 2 + 0.001 * g1 ** 2,
                               rtol=RTOL, atol=1e-9)
    assert opt.variables[0] is opt.lr
    with pytest.raises(KeyError, match="no slot"):
        opt.get_slot(W, "momentum")


def test_plain_sgd_has_only_the_counter():
    opt = optim.SGD(lr=0.1)
    build(opt)
    assert [s.name for s in opt.slots] == ["SGD/iterations"]
    assert [s.name for s in optim.Momentum(name="mom").slots] == ["mom/iterations"]


def test_slots_are_reused_across_update_lists():
    opt = optim.Momentum(lr=0.1)
    W = gc.shared(np.ones(3, "float32"), name="W")
    ups1 = opt.updates(gc.sum(gc.square(W)), [W])
    ups2 = opt.updates(gc.sum(W), [W])
    assert [s.name for s in opt.slots] == ["Momentum/iterations", "W/momentum"]
    assert {id(t) for t, _ in ups1} == {id(t) for t, _ in ups2} == {id(W), id(opt.slots[1]), id(opt.iterations)}


def test_checkpoint_of_slots_resumes_exactly():
    """Saving params + slots and restoring them into a fresh optimizer continues the same trajectory."""
    opt = optim.Adam(lr=0.05)
    f, params = build(opt)
    for _ in range(3):
        f(X, Y)
    saved = [p.get_value() for p in params], [s.get_value() for s in opt.slots]
    f(X, Y)
    want = [p.get_value() for p in params]
    opt2 = optim.Adam(lr=0.05)
    f2, params2 = build(opt2)
    for p, v in zip(params2, saved[0]):
        p.set_value(v)
    for s, v in zip(opt2.slots, saved[1]):
        s.set_value(v)
    f2(X, Y)
    for p, w in zip(params2, want):
        np.testing.assert_array_equal(p.get_value(), w)


# clipping ---------------------------------------------------------------------------------------

def _clip_step(opt, grads):
    """One SGD(lr=1) step on zero parameters fed the given gradients: returns -clipped grads."""
    ps = [gc.shared(np.zeros(g.shape, "float32"), name=f"p{i}") for i, g in enumerate(grads)]
    gs = [gc.placeholder(f"g{i}", g.shape) for i, g in enumerate(grads)]
    f = gc.function(gs, gs[0].sum(), updates=opt.apply_gradients(zip(gs, ps)))
    f(*[g.astype("float32") for g in grads])
    return [-p.get_value() for p in ps]


G1 = np.array([[3.0, -4.0], [0.5, -0.25]])
G2 = np.array([12.0, -0.1, 2.0])


def test_clipvalue_elementwise():
    got = _clip_step(optim.SGD(lr=1.0, clipvalue=1.0), [G1, G2])
    for g, w in zip(got, [np.clip(G1, -1, 1), np.clip(G2, -1, 1)]):
        np.testing.assert_allclose(g, w, rtol=RTOL)


@pytest.mark.parametrize("c", [1.0, 5.0, 100.0])
def test_clipnorm_uses_the_global_norm(c):
    norm = math.sqrt(np.sum(G1 ** 2) + np.sum(G2 ** 2))
    scale = c / max(norm, c)
    got = _clip_step(optim.SGD(lr=1.0, clipnorm=c), [G1, G2])
    for g, w in zip(got, [G1 * scale, G2 * scale]):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=1e-7)
    if c == 100.0:  # below the threshold nothing changes
        np.testing.assert_allclose(got[1], G2, rtol=RTOL)
    else:  # the result has norm c, and the per-tensor norms were not clipped separately
        assert math.isclose(math.sqrt(sum(np.sum(g.astype("float64") ** 2) for g in got)), c, rel_tol=1e-5)


def test_clipvalue_then_clipnorm():
    v1, v2 = np.clip(G1, -2, 2), np.clip(G2, -2, 2)
    norm = math.sqrt(np.sum(v1 ** 2) + np.sum(v2 ** 2))
    got = _clip_step(optim.SGD(lr=1.0, clipvalue=2.0, clipnorm=1.5), [G1, G2])
    for g, w in zip(got, [v1 * 1.5 / norm, v2 * 1.5 / norm]):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=1e-7)


def test_clipnorm_inside_updates_with_momentum():
    """Clipping applies inside updates(): the momentum buffer receives the clipped gradient."""
    def ref(p_list):
        grads = np_grads(p_list)
        norm = math.sqrt(sum(np.sum(g ** 2) for g in grads))
        return [g * 0.1 / max(norm, 0.1) for g in grads]

    opt = optim.Momentum(lr=0.1, momentum=0.9, clipnorm=0.1)
    got = run_graphc(opt, steps=2)
    params = [W0.astype("float64"), B0.astype("float64")]
    bufs = [0.0, 0.0]
    want = []
    for _ in range(2):
        grads = ref(params)
        for i in range(2):
            bufs[i] = 0.9 * bufs[i] + grads[i]
            params[i] = params[i] - 0.1 * bufs[i]
        want.append([p.copy() for p in params])
    assert_trajectories_close(got, want)


# weight decay -----------------------------------------------------------------------------------

def test_adamw_decay_is_decoupled():
    """With a zero gradient Adam's step is 0, so AdamW only shrinks: w * (1 - lr*wd) per step,
    and the decay never enters the moment estimates (a coupled L2 term would make m nonzero)."""
    w0 = np.array([1.0, -2.0, 4.0], "float32")
    W = gc.shared(w0, name="W")
    opt = optim.AdamW(lr=0.1, weight_decay=0.5)
    loss = gc.sum(gc.stop_gradient(W)) * 0.0
    f = gc.function([], loss, updates=opt.updates(loss, [W]))
    f()
    f()
    np.testing.assert_allclose(W.get_value(), w0 * (1 - 0.1 * 0.5) ** 2, rtol=RTOL)
    assert not np.any(opt.get_slot(W, "m").get_value())
    assert not np.any(opt.get_slot(W, "v").get_value())


def test_decay_scales_with_lr_and_uses_pre_step_weights():
    """SGDW: w_new = w - lr*wd*w - lr*g with every term from the pre-call w (Theano semantics)."""
    w0 = np.array([2.0, -1.0], "float32")
    W = gc.shared(w0, name="W")
    opt = optim.SGDW(lr=0.1, weight_decay=0.3)
    loss = gc.sum(gc.square(W))  # g = 2w
    f = gc.function([], loss, updates=opt.updates(loss, [W]))
    f()
    w1 = w0.astype("float64") - 0.1 * 0.3 * w0 - 0.1 * 2 * w0
    np.testing.assert_allclose(W.get_value(), w1, rtol=RTOL)
    opt.lr.set_value(0.01)
    f()
    np.testing.assert_allclose(W.get_value(), w1 - 0.01 * 0.3 * w1 - 0.01 * 2 * w1, rtol=RTOL)


# learning rate: changes without recompiling ------------------------------------------------------

def test_lr_change_takes_effect_without_recompiling(monkeypatch):
    import graphc.backends.c.program as program
    import graphc.runtime as runtime

    W = gc.shared(np.array([1.0, -3.0], "float32"), name="W")
    x = gc.placeholder("x", (2,))
    loss = gc.sum(x * W)  # gradient x, independent of W
    opt = optim.SGD(lr=0.5)
    f = gc.function([x], loss, updates=opt.updates(loss, [W]), backend="c")
    source, prog = f.source, f._program
    assert source

    calls = []
    for mod, name in ((runtime, "compile_graph"), (program, "build_library")):
        orig = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _o=orig, _n=name, **k: calls.append(_n) or _o(*a, **k))

    g = np.array([1.0, 2.0], "float32")
    w = W.get_value().astype("float64")
    for lr, setter in ((0.5, None), (0.1, "set_value"), (2.0, "set_lr"), (0.25, "property")):
        if setter == "set_value":
            opt.lr.set_value(lr)
        elif setter == "set_lr":
            optim.set_lr(opt, lr)
        elif setter == "property":
            opt.learning_rate = lr
        before = W.get_value()
        f(g)
        w = w - lr * g
        np.testing.assert_allclose(before - W.get_value(), lr * g, rtol=1e-6)
        np.testing.assert_allclose(W.get_value(), w, rtol=1e-6)
        assert optim.get_lr(opt) == pytest.approx(lr)
    assert calls == []
    assert f.source == source and f._program is prog


def test_schedule_drives_lr_between_calls():
    W = gc.shared(np.zeros(1, "float32"), name="W")
    loss = gc.sum(W * -1.0)  # gradient -1: each step adds lr to W
    opt = optim.SGD(lr=1.0)
    f = gc.function([], loss, updates=opt.updates(loss, [W]))
    sched = optim.StepDecay(1.0, drop=0.5, every=2)
    total = 0.0
    for epoch in range(6):
        optim.set_lr(opt, sched(epoch))
        f()
        total += [1.0, 1.0, 0.5, 0.5, 0.25, 0.25][epoch]
    np.testing.assert_allclose(W.get_value(), [total], rtol=1e-6)


# schedules --------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [0, 1, 4, 5, 9, 10, 11, 25])
def test_step_decay(k):
    assert optim.StepDecay(0.2, drop=0.1, every=5)(k) == pytest.approx(0.2 * 0.1 ** (k // 5))


@pytest.mark.parametrize("k", [0, 1, 50, 99, 100, 101, 1000])
def test_linear_decay_as_in_the_notes(k):
    # eps_k = (1 - alpha) eps_0 + alpha eps_tau, alpha = k / tau, constant after tau
    tau, e0, et = 100, 0.1, 0.001
    alpha = k / tau
    want = (1 - alpha) * e0 + alpha * et if k <= tau else et
    assert optim.LinearDecay(e0, et, tau)(k) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("k", [0, 1, 25, 50, 75, 100, 150])
def test_cosine(k):
    want = 0.01 + 0.5 * (0.5 - 0.01) * (1 + math.cos(math.pi * min(k, 100) / 100))
    assert optim.Cosine(0.5, 100, lr_min=0.01)(k) == pytest.approx(want, rel=1e-12)
    assert optim.Cosine(0.5, 100)(k) == pytest.approx(0.25 * (1 + math.cos(math.pi * min(k, 100) / 100)), abs=1e-15)


def test_schedule_endpoints():
    assert optim.Cosine(0.5, 10)(0) == 0.5 and optim.Cosine(0.5, 10)(10) == pytest.approx(0.0, abs=1e-15)
    assert optim.LinearDecay(1.0, 0.0, 4)(2) == 0.5
    with pytest.raises(ValueError):
        optim.StepDecay(0.1)(-1)
    with pytest.raises(ValueError):
        optim.LinearDecay(0.1, 0.0, 0)


# training on C ----------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: optim.Adam(lr=0.05), lambda: optim.Nesterov(lr=0.05, clipnorm=5.0)],
                         ids=["Adam", "Nesterov-clipnorm"])
def test_reduces_loss_in_100_steps_on_c(make):
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(64, 5)).astype("float32")
    w_true = rng.normal(size=(5, 1)).astype("float32")
    ys = (xs @ w_true + 0.3).astype("float32")
    W = gc.shared(np.zeros((5, 1), "float32"), name="W")
    b = gc.shared(np.zeros(1, "float32"), name="b")
    x = gc.placeholder("x", (None, 5))
    y = gc.placeholder("y", (None, 1))
    loss = gc.mean(gc.square(x @ W + b - y))
    opt = make()
    f = gc.function([x, y], loss, updates=opt.updates(loss, [W, b]), backend="c")
    losses = [float(f(xs, ys)) for _ in range(100)]
    assert losses[0] == pytest.approx(float(np.mean(ys ** 2)), rel=1e-5)
    assert losses[-1] < 0.01 * losses[0]
    assert int(opt.iterations.get_value()) == 100


# argument checks --------------------------------------------------------------------------------

def test_bad_arguments():
    W = gc.shared(np.zeros(2, "float32"), name="W")
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(momentum=0.0, nesterov=True)
    with pytest.raises(ValueError):
        optim.SGD(lr=-1.0)
    with pytest.raises(ValueError):
        optim.Adam(beta1=1.0)
    with pytest.raises(ValueError):
        optim.SGD(clipnorm=0.0)
    with pytest.raises(TypeError, match="shared variable"):
        optim.SGD().updates(gc.sum(W), [gc.placeholder("p", (2,))])
    with pytest.raises(TypeError, match="float"):
        optim.SGD().updates(gc.sum(W), [gc.shared(np.zeros(2, "int32"), name="k")])
    with pytest.raises(ValueError, match="twice"):
        optim.SGD().updates(gc.sum(W), [W, W])
    with pytest.raises(ValueError, match="shape"):
        optim.SGD().apply_gradients([(gc.placeholder("g", (3,)), W)])
    with pytest.raises(ValueError):
        optim.set_lr(optim.SGD(), float("nan"))


def test_shared_lr_between_optimizers():
    lr = gc.shared(np.float32(0.1), name="lr")
    a, b = optim.SGD(lr=lr), optim.Adam(lr=lr)
    assert a.lr is lr and b.lr is lr
    a.learning_rate = 0.3
    assert b.learning_rate == pytest.approx(0.3)
