"""Losses, initializers and regularizers (graphc.nn.losses / init / regularizers).

Expected values come from NumPy formulas written here (float64), or from hand computation;
gradients are checked against central finite differences.
"""

from __future__ import annotations

import math
import os
import re
import zlib

import numpy as np
import pytest

import graphc as gc
from graphc.core import toposort
from graphc.nn import init, losses, regularizers

from .conftest import numeric_grad, placeholders_for

HERE = os.path.abspath(__file__)
REDUCTIONS = ("mean", "sum", "none")


# -- NumPy references --------------------------------------------------------------------------


def seed_of(*key) -> int:
    """A seed fixed by the test's parameters (str hashes change from process to process)."""
    return zlib.crc32(repr(key).encode())


def np_reduce(x, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction](x)


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def np_one_hot(t, c):
    return (np.arange(c) == np.asarray(t)[..., None]).astype(np.float64)


def np_multiclass_hinge(s, y, margin, squared=False):
    """Per-example sum over j != y of max(0, s_j - s_y + margin), written as a plain loop."""
    flat_s, flat_y = s.reshape(-1, s.shape[-1]), y.reshape(-1)
    out = np.zeros(flat_y.shape)
    for n in range(flat_y.size):
        for j in range(s.shape[-1]):
            if j != flat_y[n]:
                m = max(0.0, flat_s[n, j] - flat_s[n, flat_y[n]] + margin)
                out[n] += m * m if squared else m
    return out.reshape(y.shape)


def away_from(x, kink, width=0.1):
    """Push values of x out of a `width`-neighbourhood of `kink` (finite differences need it)."""
    return np.where(np.abs(x - kink) < width, kink + np.where(x >= kink, 1.5, -1.5) * width, x)


# -- cases: (build(vars, reduction), args, unreduced NumPy loss, indices of float args) ----------


def case_mse(rng, shape):
    p, t = rng.normal(size=shape), rng.normal(size=shape)
    return lambda v, r: losses.mse(*v, reduction=r), [p, t], (p - t) ** 2


def case_mae(rng, shape):
    t = rng.normal(size=shape)
    p = t + away_from(rng.normal(size=shape), 0.0)
    return lambda v, r: losses.mae(*v, reduction=r), [p, t], np.abs(p - t)


def case_pseudo_huber(rng, shape, delta=0.7):
    p, t = rng.normal(size=shape) * 2, rng.normal(size=shape)
    expected = delta**2 * (np.sqrt(1 + ((p - t) / delta) ** 2) - 1)
    return lambda v, r: losses.pseudo_huber(*v, delta=delta, reduction=r), [p, t], expected


def case_binary_crossentropy(rng, shape):
    z, t = rng.normal(size=shape) * 2, rng.uniform(size=shape)  # soft targets are allowed
    s = np_sigmoid(z)
    expected = -(t * np.log(s) + (1 - t) * np.log(1 - s))
    return lambda v, r: losses.binary_crossentropy(*v, reduction=r), [z, t], expected


def case_hinge(rng, shape):
    t = rng.choice([-1.0, 1.0], size=shape)
    y = t * (1 - away_from(rng.normal(size=shape) * 1.5, 0.0))  # 1 - t*y stays away from the kink
    return lambda v, r: losses.hinge(*v, reduction=r), [y, t], np.maximum(0, 1 - t * y)


def case_squared_hinge(rng, shape):
    t = rng.choice([-1.0, 1.0], size=shape)
    y = t * (1 - away_from(rng.normal(size=shape) * 1.5, 0.0))
    return lambda v, r: losses.squared_hinge(*v, reduction=r), [y, t], np.maximum(0, 1 - t * y) ** 2


def case_gaussian_nll(rng, shape):
    mu, lv, t = rng.normal(size=shape), rng.normal(size=shape) * 0.5, rng.normal(size=shape)
    expected = 0.5 * (np.log(2 * np.pi) + lv + (t - mu) ** 2 / np.exp(lv))
    return lambda v, r: losses.gaussian_nll(*v, reduction=r), [mu, lv, t], expected


def case_categorical_int(rng, shape, c=4):
    z, y = rng.normal(size=(*shape, c)) * 2, rng.integers(0, c, size=shape)
    expected = -np.log(np.take_along_axis(np_softmax(z), y[..., None], -1)[..., 0])
    return lambda v, r: losses.categorical_crossentropy(*v, reduction=r), [z, y], expected


def case_categorical_soft(rng, shape, c=4):
    z, t = rng.normal(size=(*shape, c)) * 2, rng.dirichlet(np.ones(c), size=shape)
    expected = -(t * np.log(np_softmax(z))).sum(-1)
    return lambda v, r: losses.categorical_crossentropy(*v, reduction=r), [z, t], expected


def case_categorical_smooth_int(rng, shape, c=5, eps=0.2):
    z, y = rng.normal(size=(*shape, c)) * 2, rng.integers(0, c, size=shape)
    smoothed = (1 - eps) * np_one_hot(y, c) + eps / c
    expected = -(smoothed * np.log(np_softmax(z))).sum(-1)
    return lambda v, r: losses.categorical_crossentropy(*v, label_smoothing=eps, reduction=r), [z, y], expected


def case_categorical_smooth_soft(rng, shape, c=3, eps=0.1):
    z, t = rng.normal(size=(*shape, c)) * 2, rng.dirichlet(np.ones(c), size=shape)
    expected = -(((1 - eps) * t + eps / c) * np.log(np_softmax(z))).sum(-1)
    return lambda v, r: losses.categorical_crossentropy(*v, label_smoothing=eps, reduction=r), [z, t], expected


def _hinge_scores(rng, shape, c, margin):
    """Scores whose hinge terms s_j - s_y + margin all stay away from 0."""
    y = rng.integers(0, c, size=shape)
    s = rng.normal(size=(*shape, c)) * 2
    sy = np.take_along_axis(s, y[..., None], -1)
    s = np.where(np_one_hot(y, c) > 0, s, sy - margin + away_from(s - sy + margin, 0.0))
    return s, y


def case_multiclass_hinge(rng, shape, c=4, margin=1.0):
    s, y = _hinge_scores(rng, shape, c, margin)
    return (lambda v, r: losses.multiclass_hinge(*v, margin=margin, reduction=r), [s, y],
            np_multiclass_hinge(s, y, margin))


def case_multiclass_squared_hinge(rng, shape, c=3, margin=0.5):
    s, y = _hinge_scores(rng, shape, c, margin)
    return (lambda v, r: losses.multiclass_hinge(*v, margin=margin, squared=True, reduction=r), [s, y],
            np_multiclass_hinge(s, y, margin, squared=True))


def case_kl_normal(rng, shape, d=3):
    mu, lv = rng.normal(size=(*shape, d)), rng.normal(size=(*shape, d)) * 0.5
    # the textbook form of KL(N(mu, s^2) || N(0, 1)) = -log s + (s^2 + mu^2) / 2 - 1/2, per latent
    sigma = np.exp(0.5 * lv)
    expected = (-np.log(sigma) + (sigma**2 + mu**2) / 2 - 0.5).sum(-1)
    return lambda v, r: losses.kl_normal(*v, reduction=r), [mu, lv], expected


ELEMENTWISE = {"mse": case_mse, "mae": case_mae, "pseudo_huber": case_pseudo_huber,
               "binary_crossentropy": case_binary_crossentropy, "hinge": case_hinge,
               "squared_hinge": case_squared_hinge, "gaussian_nll": case_gaussian_nll}
PER_EXAMPLE = {"categorical_int": case_categorical_int, "categorical_soft": case_categorical_soft,
               "categorical_smooth_int": case_categorical_smooth_int,
               "categorical_smooth_soft": case_categorical_smooth_soft,
               "multiclass_hinge": case_multiclass_hinge, "multiclass_squared_hinge": case_multiclass_squared_hinge,
               "kl_normal": case_kl_normal}
CASES = {**ELEMENTWISE, **PER_EXAMPLE}
ELEMENTWISE_SHAPES = [(7,), (3, 4), (2, 3, 2)]
BATCH_SHAPES = [(), (6,), (2, 3)]  # the class/latent axis is added by the case


def compile_loss(build, args, reduction, backend=None):
    vs = placeholders_for(args)
    return gc.function(vs, build(vs, reduction), backend=backend)


def value_params():
    out = []
    for name in CASES:
        for shape in ELEMENTWISE_SHAPES if name in ELEMENTWISE else BATCH_SHAPES:
            for r in REDUCTIONS:
                out.append(pytest.param(name, shape, r, id=f"{name}-{'x'.join(map(str, shape)) or 'scalar'}-{r}"))
    return out


# -- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,shape,reduction", value_params())
def test_loss_matches_numpy_formula(name, shape, reduction):
    rng = np.random.default_rng(seed_of(name, shape, reduction))
    build, args, expected = CASES[name](rng, shape)
    got = compile_loss(build, args, reduction)(*args)
    want = np_reduce(expected, reduction)
    assert np.shape(got) == np.shape(want)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_none_shapes_are_per_element_or_per_example():
    x = gc.placeholder("x", (None, 5))
    t = gc.placeholder("t", (None,), "int32")
    assert losses.mse(x, x, reduction="none").shape == (None, 5)
    assert losses.gaussian_nll(x, x, x, reduction="none").shape == (None, 5)
    assert losses.categorical_crossentropy(x, t, reduction="none").shape == (None,)
    assert losses.categorical_crossentropy(x, x, reduction="none").shape == (None,)
    assert losses.multiclass_hinge(x, t, reduction="none").shape == (None,)
    assert losses.kl_normal(x, x, reduction="none").shape == (None,)
    for r in ("mean", "sum"):
        assert losses.kl_normal(x, x, reduction=r).shape == ()


def test_mean_is_over_a_call_time_batch():
    """One compiled function averages over whatever batch size it is called with."""
    p, t = gc.placeholder("p", (None, 2), "float64"), gc.placeholder("t", (None, 2), "float64")
    f = gc.function([p, t], losses.mae(p, t))
    for n in (1, 3, 8):
        a = np.arange(2.0 * n).reshape(n, 2)
        np.testing.assert_allclose(f(a, np.zeros_like(a)), np.mean(a), rtol=1e-12)


def test_pseudo_huber_delta_and_limits():
    # quadratic (r^2 / 2) near zero and linear (delta * |r| - delta^2) far away
    r = np.array([1e-3, -1e-3, 5e3, -8e3])
    for delta in (0.5, 1.0, 3.0):
        f = gc.function([], losses.pseudo_huber(gc.constant(r), np.zeros(4), delta=delta, reduction="none"))
        got = f()
        np.testing.assert_allclose(got[:2], r[:2] ** 2 / 2, rtol=1e-5)
        np.testing.assert_allclose(got[2:], delta * np.abs(r[2:]) - delta**2, rtol=1e-6)
    # default delta = 1: 1 * (sqrt(1 + 4) - 1) for a residual of 2
    got = gc.function([], losses.pseudo_huber(gc.constant(np.array([2.0])), np.array([0.0])))()
    np.testing.assert_allclose(got, math.sqrt(5) - 1, rtol=1e-12)


def test_multiclass_hinge_worked_example():
    """The three-example SVM loss from CS231n's linear-classification notes, by hand."""
    s = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    y = np.array([0, 1, 2])
    # 2.9 + 0;  0 + 0;  (2.2 + 3.1 + 1) + (2.5 + 3.1 + 1)
    f = gc.function([], losses.multiclass_hinge(gc.constant(s), y, reduction="none"))
    np.testing.assert_allclose(f(), [2.9, 0.0, 12.9], rtol=1e-12)
    f = gc.function([], losses.multiclass_hinge(gc.constant(s), y))
    np.testing.assert_allclose(f(), 15.8 / 3, rtol=1e-12)


def test_kl_normal_is_zero_at_the_prior_and_matches_a_hand_value():
    mu, lv = np.zeros((2, 3)), np.zeros((2, 3))
    np.testing.assert_allclose(gc.function([], losses.kl_normal(gc.constant(mu), lv, reduction="none"))(), [0, 0])
    # mu = 2, sigma^2 = e: -0.5 * (1 + 1 - 4 - e) = (2 + e) / 2
    got = gc.function([], losses.kl_normal(gc.constant(np.array([2.0])), np.array([1.0])))()
    np.testing.assert_allclose(got, (2 + math.e) / 2, rtol=1e-12)


def test_gaussian_nll_broadcasts_log_var():
    rng = np.random.default_rng(1)
    mu, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    for lv in (rng.normal(size=(3,)), np.array(0.3), rng.normal(size=(1, 3))):
        loss = losses.gaussian_nll(gc.constant(mu), lv, t, reduction="none")
        assert loss.shape == (4, 3)
        expected = 0.5 * (np.log(2 * np.pi) + lv + (t - mu) ** 2 / np.exp(lv))
        np.testing.assert_allclose(gc.function([], loss)(), expected, rtol=1e-12)


def test_categorical_crossentropy_uses_the_fused_op_for_integer_labels():
    def op_types(v):
        return {type(n.op) for n in toposort([v])}

    z = gc.placeholder("z", (None, 4))
    ops_int = op_types(losses.categorical_crossentropy(z, gc.placeholder("t", (None,), "int32")))
    ops_soft = op_types(losses.categorical_crossentropy(z, gc.placeholder("p", (None, 4))))
    assert gc.ops.SoftmaxCrossEntropy in ops_int and gc.ops.LogSoftmax not in ops_int
    assert gc.ops.LogSoftmax in ops_soft and gc.ops.SoftmaxCrossEntropy not in ops_soft


def test_label_smoothing_matches_keras_formula_and_both_label_forms():
    rng = np.random.default_rng(7)
    z, y = rng.normal(size=(5, 6)) * 3, rng.integers(0, 6, size=5)
    for eps in (0.0, 0.1, 0.5, 1.0):
        smoothed = (1 - eps) * np_one_hot(y, 6) + eps / 6
        expected = -(smoothed * np_log_softmax(z)).sum(-1)
        got_int = gc.function([], losses.categorical_crossentropy(gc.constant(z), y, eps, reduction="none"))()
        got_hot = gc.function([], losses.categorical_crossentropy(gc.constant(z), np_one_hot(y, 6), eps,
                                                                  reduction="none"))()
        np.testing.assert_allclose(got_int, expected, rtol=1e-12)
        np.testing.assert_allclose(got_hot, expected, rtol=1e-12)
        assert smoothed.sum(-1) == pytest.approx(np.ones(5))
    # uniform logits: every smoothing gives log(C)
    got = gc.function([], losses.categorical_crossentropy(gc.constant(np.zeros((2, 4))), [1, 2], 0.3))()
    np.testing.assert_allclose(got, math.log(4), rtol=1e-6)


def test_out_of_range_labels_contribute_nothing():
    """Like gc.softmax_cross_entropy and gc.one_hot, a label outside [0, C) (padding, -1) gives 0."""
    z = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    y = np.array([2, -1])
    for eps in (0.0, 0.2):
        got = gc.function([], losses.categorical_crossentropy(gc.constant(z), y, eps, reduction="none"))()
        assert got[1] == 0.0
        want = -(((1 - eps) * np_one_hot(2, 3) + eps / 3) * np_log_softmax(z[0])).sum()
        np.testing.assert_allclose(got[0], want, rtol=1e-12)
    got = gc.function([], losses.multiclass_hinge(gc.constant(z), y, reduction="none"))()
    np.testing.assert_allclose(got, [0.0, 0.0], atol=1e-12)  # example 0: max(0, 1-3+1) + max(0, 2-3+1)


def test_targets_follow_the_prediction_dtype():
    p = gc.placeholder("p", (None, 3))
    assert losses.mse(p, np.zeros((2, 3))).dtype == "float32"
    assert losses.binary_crossentropy(p, gc.placeholder("t", (None, 3), "int32")).dtype == "float32"
    assert losses.categorical_crossentropy(p, gc.placeholder("t", (None, 3), "float64")).dtype == "float32"
    assert losses.mse(gc.placeholder("i", (3,), "int32"), np.zeros(3)).dtype == "float64"


# -- gradients -----------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", list(CASES))
def test_loss_gradient_matches_finite_differences(name, reduction):
    rng = np.random.default_rng(seed_of(name, reduction, "grad"))
    shape = (2, 3) if name in ELEMENTWISE else (3,)
    build, args, _ = CASES[name](rng, shape)
    vs = placeholders_for(args)
    loss = build(vs, reduction)
    wrt = [i for i, a in enumerate(args) if a.dtype.kind == "f"]
    f = gc.function(vs, loss)
    g = gc.function(vs, gc.grad(loss, [vs[i] for i in wrt]))(*args)
    for k, i in enumerate(wrt):
        np.testing.assert_allclose(g[k], numeric_grad(f, args, i), rtol=1e-6, atol=1e-8,
                                   err_msg=f"{name}: gradient wrt argument {i}")


def test_known_closed_form_gradients():
    """d(sum bce)/dz = sigmoid(z) - t, d(sum cce)/dz = softmax(z) - onehot, d(sum kl)/dmu = mu."""
    rng = np.random.default_rng(3)
    z, t = rng.normal(size=(4,)), rng.uniform(size=(4,))
    zv, tv = placeholders_for([z, t])
    g = gc.function([zv, tv], gc.grad(losses.binary_crossentropy(zv, tv, reduction="sum"), zv))(z, t)
    np.testing.assert_allclose(g, np_sigmoid(z) - t, rtol=1e-12)
    z, y = rng.normal(size=(3, 5)), rng.integers(0, 5, size=3)
    zv, yv = placeholders_for([z, y])
    g = gc.function([zv, yv], gc.grad(losses.categorical_crossentropy(zv, yv, reduction="sum"), zv))(z, y)
    np.testing.assert_allclose(g, np_softmax(z) - np_one_hot(y, 5), rtol=1e-12, atol=1e-15)
    mu, lv = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    mv, lvv = placeholders_for([mu, lv])
    gm, gl = gc.function([mv, lvv], gc.grad(losses.kl_normal(mv, lvv, reduction="sum"), [mv, lvv]))(mu, lv)
    np.testing.assert_allclose(gm, mu, rtol=1e-12)
    np.testing.assert_allclose(gl, 0.5 * (np.exp(lv) - 1), rtol=1e-12)


# -- stability at extreme logits, and the C backend ------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropies_are_stable_at_extreme_logits(backend, dtype):
    z = np.array([1000.0, -1000.0, 1000.0, -1000.0, 0.0], dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0], dtype)
    zv, tv = placeholders_for([z, t])
    loss = losses.binary_crossentropy(zv, tv, reduction="none")
    grad = gc.grad(losses.binary_crossentropy(zv, tv, reduction="sum"), zv)
    value, g = gc.function([zv, tv], [loss, grad])(z, t)
    np.testing.assert_allclose(value, [0, 0, 1000, 1000, math.log(2)], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g, [0, 0, 1, -1, -0.5], atol=1e-6)

    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0], [1000.0, 1000.0, -1000.0]], dtype)
    y = np.array([0, 0, 2], "int32")
    hand = [0.0, 2000.0, 2000.0 + math.log(2)]  # logsumexp(z) - z_y
    hand_grad = np.array([[0, 0, 0], [-1, 1, 0], [0.5, 0.5, -1]])  # softmax - one_hot
    lv, yv, hv = gc.placeholder("l", (None, 3), dtype), gc.placeholder("y", (None,), "int32"), \
        gc.placeholder("h", (None, 3), dtype)
    outs = []
    for labels in (yv, hv):
        outs.append(losses.categorical_crossentropy(lv, labels, reduction="none"))
        outs.append(gc.grad(losses.categorical_crossentropy(lv, labels, reduction="sum"), lv))
        outs.append(losses.categorical_crossentropy(lv, labels, label_smoothing=0.1, reduction="none"))
    got = gc.function([lv, yv, hv], outs)(logits, y, np_one_hot(y, 3).astype(dtype))
    smooth = -((0.9 * np_one_hot(y, 3) + 0.1 / 3) * np_log_softmax(logits.astype(np.float64))).sum(-1)
    for k in (0, 3):
        assert all(np.isfinite(a).all() for a in got[k:k + 3])
        np.testing.assert_allclose(got[k], hand, rtol=1e-6)
        np.testing.assert_allclose(got[k + 1], hand_grad, atol=1e-6)
        np.testing.assert_allclose(got[k + 2], smooth, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_all_losses_on_the_c_backend(dtype):
    """Every case, compiled together into one C function, against its NumPy formula."""
    rng = np.random.default_rng(11)
    inputs, args, outs, expected = [], [], [], []
    for name, make in CASES.items():
        build, a, want = make(rng, (3, 2) if name in ELEMENTWISE else (4,))
        a = [x.astype(dtype) if x.dtype.kind == "f" else x.astype("int32") for x in a]
        vs = [gc.placeholder(f"{name}{i}", x.shape, x.dtype.name) for i, x in enumerate(a)]
        inputs += vs
        args += a
        outs += [build(vs, "none"), build(vs, "sum")]
        expected += [want, want.sum()]
    f = gc.function(inputs, outs, backend="c")
    assert f.source  # really compiled
    got = f(*args)
    tol = 2e-5 if dtype == "float32" else 1e-10
    for g, w in zip(got, expected):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


# -- initializers --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,fans", [
    ((), (1, 1)), ((7,), (7, 7)), ((784, 10), (784, 10)),
    ((32, 16, 3, 3), (16 * 9, 32 * 9)),  # OIHW: fan_in = in*kh*kw, fan_out = out*kh*kw
    ((8, 4, 5), (20, 40)), ((6, 2, 3, 3, 3), (54, 162)),
])
def test_compute_fans(shape, fans):
    assert init.compute_fans(shape) == fans


# name, shape, expected std, uniform limit (None for normal)
INIT_STATS = [
    ("glorot_uniform", (400, 600), math.sqrt(6 / 1000) / math.sqrt(3), math.sqrt(6 / 1000)),
    ("glorot_normal", (400, 600), math.sqrt(2 / 1000), None),
    ("he_uniform", (500, 300), math.sqrt(6 / 500) / math.sqrt(3), math.sqrt(6 / 500)),
    ("he_normal", (500, 300), math.sqrt(2 / 500), None),
    ("lecun_uniform", (300, 500), math.sqrt(3 / 300) / math.sqrt(3), math.sqrt(3 / 300)),
    ("lecun_normal", (300, 500), math.sqrt(1 / 300), None),
    # conv kernels (OIHW): fan_in = 32*3*3 = 288, fan_out = 64*3*3 = 576
    ("glorot_uniform", (64, 32, 3, 3), math.sqrt(6 / 864) / math.sqrt(3), math.sqrt(6 / 864)),
    ("glorot_normal", (64, 32, 3, 3), math.sqrt(2 / 864), None),
    ("he_uniform", (64, 32, 3, 3), math.sqrt(6 / 288) / math.sqrt(3), math.sqrt(6 / 288)),
    ("he_normal", (64, 32, 3, 3), math.sqrt(2 / 288), None),
    ("random_normal", (300, 300), 0.05, None),
    ("uniform", (300, 300), 0.05 / math.sqrt(3), 0.05),
]


@pytest.mark.parametrize("name,shape,std,limit", INIT_STATS, ids=[f"{c[0]}-{len(c[1])}d" for c in INIT_STATS])
def test_initializer_statistics(name, shape, std, limit):
    w = init.get(name)(shape, np.random.default_rng(0))
    assert w.shape == shape and w.dtype == np.float32
    n = w.size
    assert abs(w.mean()) < 4 * std / math.sqrt(n)
    assert w.std() == pytest.approx(std, rel=4 / math.sqrt(2 * n) + 1e-3)
    if limit is not None:
        assert np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.99 * limit  # the whole interval is used
    else:
        # a normal sample: about 4.6% beyond two standard deviations (a truncated one has none)
        assert 0.035 < np.mean(np.abs(w) > 2 * std) < 0.06


def test_parametrised_and_constant_initializers():
    rng = np.random.default_rng(5)
    assert init.zeros((2, 3)).tolist() == [[0.0] * 3] * 2
    assert init.ones(4).tolist() == [1.0] * 4
    assert init.get("zeros") is init.zeros and init.get("ones") is init.ones
    c = init.constant(0.25)((3, 2), rng)
    assert c.dtype == np.float32 and (c == 0.25).all()
    w = init.normal(0.02)((300, 400), rng)
    assert w.dtype == np.float32 and w.std() == pytest.approx(0.02, rel=0.01)
    u = init.uniform(0.3)((300, 400), rng)
    assert np.abs(u).max() <= 0.3 and u.std() == pytest.approx(0.3 / math.sqrt(3), rel=0.01)


def test_initializers_are_deterministic():
    for name in ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "random_normal", "orthogonal"):
        fn = init.get(name)
        a = fn((5, 4), np.random.default_rng(42))
        b = fn((5, 4), np.random.default_rng(42))
        c = fn((5, 4), 42)  # an int seed works like a Generator seeded with it
        d = fn((5, 4), np.random.default_rng(43))
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        assert not np.array_equal(a, d)
    rng = np.random.default_rng(0)
    assert not np.array_equal(init.he_normal((3, 3), rng), init.he_normal((3, 3), rng))  # the stream advances


def test_get_names_and_callables():
    assert init.get("glorot_uniform") is init.glorot_uniform
    assert init.get("GlorotUniform") is init.glorot_uniform  # Keras class names work too
    assert init.get("he_normal") is init.he_normal and init.get("HeUniform") is init.he_uniform
    assert init.get("xavier_normal") is init.glorot_normal

    def mine(shape, rng):
        return np.full(shape, 7.0, np.float32)

    assert init.get(mine) is mine


def test_orthogonal_and_identity():
    for shape in ((6, 4), (4, 6), (3, 2, 5)):
        q = init.orthogonal(shape, 0).reshape(-1, shape[-1]).astype(np.float64)
        small = min(q.shape)
        gram = q.T @ q if q.shape[0] >= q.shape[1] else q @ q.T
        np.testing.assert_allclose(gram, np.eye(small), atol=1e-6)
    np.testing.assert_array_equal(init.identity((3, 3)), np.eye(3, dtype=np.float32))


# -- regularizers and clipping --------------------------------------------------------------------


def _shared_params(rng):
    values = [rng.normal(size=(4, 3)), rng.normal(size=(3,)), rng.normal(size=(2, 3, 2, 2))]
    return values, [gc.shared(v, name=f"p{i}", dtype="float64") for i, v in enumerate(values)]


def test_l1_l2_match_numpy_and_their_gradients():
    rng = np.random.default_rng(2)
    values, params = _shared_params(rng)
    p1, p2 = regularizers.l1(params, 0.03), regularizers.l2(params, 0.2)
    g1 = gc.grad(p1, params)
    g2 = gc.grad(p2, params)
    out = gc.function([], [p1, p2, *g1, *g2])()
    np.testing.assert_allclose(out[0], 0.03 * sum(np.abs(v).sum() for v in values), rtol=1e-12)
    np.testing.assert_allclose(out[1], 0.2 * sum((v**2).sum() for v in values), rtol=1e-12)
    for k, v in enumerate(values):
        np.testing.assert_allclose(out[2 + k], 0.03 * np.sign(v), rtol=1e-12)
        np.testing.assert_allclose(out[5 + k], 2 * 0.2 * v, rtol=1e-12)
    # a single Var, and an empty list
    np.testing.assert_allclose(gc.function([], regularizers.l2(params[0], 1.0))(), (values[0] ** 2).sum())
    assert float(gc.function([], regularizers.l1([], 0.5))()) == 0.0


def test_clip_by_value_matches_numpy():
    rng = np.random.default_rng(3)
    gs = [rng.normal(size=(5, 2)) * 3, rng.normal(size=(7,)) * 3]
    vs = placeholders_for(gs)
    got = gc.function(vs, regularizers.clip_by_value(vs, -1.5, 0.5))(*gs)
    for g, a in zip(got, gs):
        np.testing.assert_array_equal(g, np.clip(a, -1.5, 0.5))
    single = regularizers.clip_by_value(vs[0], -1.0, 1.0)
    assert isinstance(single, gc.Var)


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 100.0])
def test_clip_by_global_norm_matches_numpy(max_norm):
    rng = np.random.default_rng(4)
    gs = [rng.normal(size=(3, 4)), rng.normal(size=(5,)), rng.normal(size=(2, 2, 2))]
    vs = placeholders_for(gs)
    got = gc.function(vs, [regularizers.global_norm(vs), *regularizers.clip_by_global_norm(vs, max_norm)])(*gs)
    norm = math.sqrt(sum((g**2).sum() for g in gs))
    np.testing.assert_allclose(got[0], norm, rtol=1e-12)
    scale = min(1.0, max_norm / norm)
    for g, a in zip(got[1:], gs):
        np.testing.assert_allclose(g, a * scale, rtol=1e-12)
    clipped_norm = math.sqrt(sum((g**2).sum() for g in got[1:]))
    assert clipped_norm == pytest.approx(min(norm, max_norm), rel=1e-12)


def test_clip_by_global_norm_of_zero_gradients_is_zero():
    z = [np.zeros((2, 2)), np.zeros(3)]
    vs = placeholders_for(z)
    got = gc.function(vs, regularizers.clip_by_global_norm(vs, 1.0))(*z)
    assert all((g == 0).all() for g in got)


@pytest.mark.parametrize("shape,axis", [((6, 4), 0), ((6, 4), 1), ((5, 3, 2, 2), (1, 2, 3))])
def test_max_norm_matches_numpy(shape, axis):
    rng = np.random.default_rng(6)
    w = rng.normal(size=shape)
    norms = np.sqrt((w**2).sum(axis=axis, keepdims=True))
    max_value = float(np.median(norms))  # about half the vectors are over the bound
    got = gc.function([], regularizers.max_norm(gc.constant(w), max_value, axis=axis))()
    np.testing.assert_allclose(got, w * np.minimum(1.0, max_value / (norms + 1e-7)), rtol=1e-12)
    new_norms = np.sqrt((got**2).sum(axis=axis, keepdims=True))
    assert (new_norms <= max_value * (1 + 1e-9)).all()
    under = (norms < max_value).reshape(-1)
    assert under.any()
    np.testing.assert_allclose(new_norms.reshape(-1)[under], norms.reshape(-1)[under], rtol=1e-6)


def test_max_norm_as_a_post_update_constraint():
    W = gc.shared(np.array([[3.0, 0.1], [4.0, 0.2]]), name="W")
    x = gc.placeholder("x", (None, 2), "float64")
    loss = gc.sum(x @ W)
    step = gc.function([x], loss, updates=[(W, regularizers.max_norm(W - 0.1 * gc.grad(loss, W), 2.0))])
    step(np.ones((1, 2)))
    w = np.array([[3.0, 0.1], [4.0, 0.2]]) - 0.1
    n = np.sqrt((w**2).sum(0))
    np.testing.assert_allclose(W.get_value(), w * np.minimum(1, 2.0 / (n + 1e-7)), rtol=1e-12)


# -- errors ------------------------------------------------------------------------------------


def _msg(excinfo) -> str:
    """The message without the line citing this file (whose source would match anything)."""
    return "\n".join(ln for ln in str(excinfo.value).splitlines() if HERE not in ln)


def test_bad_reduction_is_refused():
    x = gc.placeholder("x", (3,))
    for fn in (lambda r: losses.mse(x, x, reduction=r), lambda r: losses.kl_normal(x, x, reduction=r),
               lambda r: losses.categorical_crossentropy(x, x, reduction=r)):
        with pytest.raises(ValueError, match=r"reduction must be one of 'mean', 'sum', 'none', got 'avg'"):
            fn("avg")
    with pytest.raises(ValueError, match="got None"):
        losses.hinge(x, x, reduction=None)


def test_mismatched_shapes_are_shape_errors_at_the_users_line():
    p, t = gc.placeholder("p", (None, 1)), gc.placeholder("t", (None,))
    with pytest.raises(gc.ShapeError) as e:
        losses.mse(p, t)  # would silently broadcast to (N, N)
    assert re.search(r"mse: pred \(None, 1\) and target \(None,\) must have the same shape", _msg(e))
    assert f"{HERE}:" in str(e.value)
    with pytest.raises(gc.ShapeError, match=r"binary_crossentropy: logits \(3,\) and target \(4,\)"):
        losses.binary_crossentropy(gc.placeholder("z", (3,)), np.zeros(4))
    with pytest.raises(gc.ShapeError, match=r"kl_normal: mu \(2, 3\) and log_var \(2, 4\)"):
        losses.kl_normal(gc.placeholder("m", (2, 3)), gc.placeholder("v", (2, 4)))
    with pytest.raises(gc.ShapeError, match=r"kl_normal: mu needs a latent axis"):
        losses.kl_normal(gc.placeholder("m", ()), gc.placeholder("v", ()))
    with pytest.raises(gc.ShapeError, match=r"gaussian_nll: log_var \(2,\) must broadcast to the shape of mean \(4, 3"):
        losses.gaussian_nll(gc.placeholder("m", (4, 3)), np.zeros(2), np.zeros((4, 3)))
    with pytest.raises(gc.ShapeError, match=r"gaussian_nll: mean \(4, 3\) and target \(3,\)"):
        losses.gaussian_nll(gc.placeholder("m", (4, 3)), np.zeros(3), np.zeros(3))


def test_label_errors():
    z = gc.placeholder("z", (None, 5))
    with pytest.raises(gc.ShapeError) as e:
        losses.categorical_crossentropy(z, gc.placeholder("t", (None, 1), "int32"))
    assert re.search(r"integer labels must have shape \(None,\) for logits/scores \(None, 5\), got \(None, 1\)",
                     _msg(e))
    with pytest.raises(gc.ShapeError) as e:
        losses.categorical_crossentropy(z, gc.placeholder("h", (None, 4)))
    assert re.search(r"float \(one-hot/soft\) labels must have the logits' shape \(None, 5\), got \(None, 4\)", _msg(e))
    with pytest.raises(gc.ShapeError, match=r"integer labels would have shape \(None,\)"):
        losses.categorical_crossentropy(z, gc.placeholder("h", (None,)))  # float labels of the int shape
    with pytest.raises(gc.ShapeError, match="the class axis .* must have a static size"):
        losses.categorical_crossentropy(gc.placeholder("z", (3, None)), gc.placeholder("t", (3,), "int32"))
    with pytest.raises(gc.ShapeError, match="at least 1-D"):
        losses.multiclass_hinge(gc.placeholder("s", ()), np.array(0))
    with pytest.raises(gc.DTypeError, match="multiclass_hinge: labels must be integer class indices, got dtype float3"):
        losses.multiclass_hinge(z, gc.placeholder("t", (None,)))
    with pytest.raises(gc.ShapeError, match=r"multiclass_hinge: integer labels must have shape \(None,\)"):
        losses.multiclass_hinge(z, gc.placeholder("t", (None, 5), "int32"))


def test_bad_hyperparameters():
    x = gc.placeholder("x", (None, 3))
    t = gc.placeholder("t", (None,), "int32")
    for bad in (-0.1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match=r"categorical_crossentropy: label_smoothing must be a number in \[0, 1\]"):
            losses.categorical_crossentropy(x, t, label_smoothing=bad)
    for bad in (0, -1.0, float("inf"), None):
        with pytest.raises(ValueError, match="pseudo_huber: delta must be a positive finite number"):
            losses.pseudo_huber(x, x, delta=bad)
    with pytest.raises(ValueError, match="multiclass_hinge: margin must be a finite number"):
        losses.multiclass_hinge(x, t, margin=float("nan"))


def test_initializer_errors():
    with pytest.raises(ValueError, match=r"unknown initializer 'glorot'; choose one of .*glorot_normal, glorot_unif"):
        init.get("glorot")
    with pytest.raises(ValueError, match="unknown initializer 3"):
        init.get(3)
    with pytest.raises(ValueError, match=r"shape must contain non-negative ints \(static sizes\), got \(None, 3\)"):
        init.he_normal((None, 3), 0)
    with pytest.raises(ValueError, match="non-negative ints"):
        init.zeros((2, -1))
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator, an int seed or None"):
        init.glorot_uniform((2, 2), np.random.RandomState(0))
    with pytest.raises(ValueError, match="normal: std must be a non-negative finite number"):
        init.normal(-1.0)
    with pytest.raises(ValueError, match="uniform: limit must be a non-negative finite number"):
        init.uniform(float("nan"))
    with pytest.raises(ValueError, match=r"orthogonal: needs a shape of rank >= 2, got \(3,\)"):
        init.orthogonal((3,), 0)


def test_regularizer_errors():
    w = gc.placeholder("w", (3, 2))
    with pytest.raises(ValueError, match="l1: coeff must be non-negative, got -0.1"):
        regularizers.l1([w], -0.1)
    with pytest.raises(TypeError, match=r"l2: params\[1\] must be a Var, got ndarray"):
        regularizers.l2([w, np.zeros(3)], 0.1)
    with pytest.raises(TypeError, match=r"l2: params\[0\] \(i\) is int32; only float Vars are accepted"):
        regularizers.l2([gc.placeholder("i", (2,), "int32")], 0.1)
    with pytest.raises(TypeError, match="clip_by_value: grads must be a Var or a list of Vars, got ndarray"):
        regularizers.clip_by_value(np.zeros(3), -1.0, 1.0)
    with pytest.raises(ValueError, match=r"clip_by_value: lo \(1.0\) must not exceed hi \(-1.0\)"):
        regularizers.clip_by_value([w], 1.0, -1.0)
    for bad in (0.0, -2.0, float("inf")):
        with pytest.raises(ValueError, match="clip_by_global_norm: max_norm must be"):
            regularizers.clip_by_global_norm([w], bad)
    with pytest.raises(ValueError, match="max_norm: max_value must be positive, got 0"):
        regularizers.max_norm(w, 0)
    with pytest.raises(gc.ShapeError, match="axis 2 is out of range"):
        regularizers.max_norm(w, 1.0, axis=2)
