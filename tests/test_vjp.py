"""`gc.vjp(outputs, wrt, cotangents)`, the primitive under `gc.grad`: checked against central finite
differences of the scalar <cotangent, f(x)> computed by an independent NumPy model, against
`grad` with a cotangent of ones, with several outputs, and on bad input."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(11)


def ref(inputs, outputs):
    return gc.function(inputs, outputs, backend="ref")


def _numpy_f(xv, wv):
    """The same two outputs as the graph in `_graph`, written in NumPy."""
    return np.tanh(xv) @ wv, (np.exp(xv) * xv).sum(axis=0)


def _graph():
    x = gc.placeholder("x", (2, 3), "float64")
    w = gc.placeholder("w", (3, 4), "float64")
    return x, w, [gc.tanh(x) @ w, gc.sum(gc.exp(x) * x, axis=0)]


def _fd_grad(phi, a, eps=1e-6):
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        hi, lo = a.copy(), a.copy()
        hi[i] += eps
        lo[i] -= eps
        g[i] = (phi(hi) - phi(lo)) / (2 * eps)
    return g


def test_vjp_matches_finite_differences_of_the_cotangent_product():
    x, w, ys = _graph()
    c1 = gc.placeholder("c1", (2, 4), "float64")
    c2 = gc.placeholder("c2", (3,), "float64")
    gx, gw = gc.vjp(ys, [x, w], [c1, c2])
    xv, wv = RNG.normal(size=(2, 3)), RNG.normal(size=(3, 4))
    c1v, c2v = RNG.normal(size=(2, 4)), RNG.normal(size=3)
    got_x, got_w = ref([x, w, c1, c2], [gx, gw])(xv, wv, c1v, c2v)

    def phi(xa, wa):
        y1, y2 = _numpy_f(xa, wa)
        return float((c1v * y1).sum() + (c2v * y2).sum())

    np.testing.assert_allclose(got_x, _fd_grad(lambda a: phi(a, wv), xv), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got_w, _fd_grad(lambda a: phi(xv, a), wv), rtol=1e-6, atol=1e-8)


def test_each_output_contributes_its_own_vjp():
    x, w, (y1, y2) = _graph()
    c1 = gc.placeholder("c1", (2, 4), "float64")
    c2 = gc.placeholder("c2", (3,), "float64")
    both = gc.vjp([y1, y2], x, [c1, c2])
    one, two = gc.vjp(y1, x, c1), gc.vjp([y2], x, [c2])
    assert isinstance(both, gc.Var)  # a single wrt gives a single Var, as grad does
    xv, wv, c1v, c2v = RNG.normal(size=(2, 3)), RNG.normal(size=(3, 4)), RNG.normal(size=(2, 4)), RNG.normal(size=3)
    f = ref([x, w, c1, c2], [both, one, two])
    b, o, t = f(xv, wv, c1v, c2v)
    np.testing.assert_allclose(b, o + t, rtol=1e-12)
    # closed forms: d<c1, tanh(x) w>/dx = (c1 w^T)(1 - tanh^2 x); d<c2, sum_0 e^x x>/dx = c2 e^x (1 + x)
    np.testing.assert_allclose(o, (c1v @ wv.T) * (1 - np.tanh(xv) ** 2), rtol=1e-12)
    np.testing.assert_allclose(t, c2v * np.exp(xv) * (1 + xv), rtol=1e-12)


def test_grad_is_vjp_with_cotangent_one():
    x = gc.placeholder("x", (None, 3), "float32")
    cost = gc.mean(gc.softplus(x) * x)
    (g_vjp,) = gc.vjp(cost, [x], gc.constant(1.0, "float32"))
    g_grad = gc.grad(cost, x)
    xv = RNG.normal(size=(5, 3)).astype("float32")
    a, b = gc.function([x], [g_vjp, g_grad], backend="c")(xv)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    # a non-scalar output with a cotangent of ones is the gradient of its sum
    y = gc.tanh(x) * 3.0
    ones = gc.placeholder("ones", (None, 3), "float32")  # unknown batch dimension matches the output's
    a, b = ref([x, ones], [gc.vjp(y, x, ones), gc.grad(gc.sum(y), x)])(xv, np.ones_like(xv))
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_wrt_the_outputs_do_not_depend_on_gets_zeros():
    x, w, ys = _graph()
    z = gc.placeholder("z", (5,), "float64")
    c = gc.placeholder("c", (3,), "float64")
    gz = gc.vjp(ys[1], z, c)
    np.testing.assert_array_equal(ref([z, c], gz)(np.ones(5), np.ones(3)), np.zeros(5))


def test_bad_cotangents_and_wrt_are_refused_clearly():
    x, w, (y1, y2) = _graph()  # y1: (2, 4) float64, y2: (3,) float64
    with pytest.raises(gc.ShapeError, match=r"cotangents\[0\] has shape \(3, 4\) but outputs\[0\] has shape \(2, 4\)"):
        gc.vjp(y1, x, gc.placeholder("c", (3, 4), "float64"))
    with pytest.raises(gc.ShapeError, match="cotangents"):
        gc.vjp(y2, x, gc.placeholder("c", (3, 1), "float64"))  # rank differs
    with pytest.raises(gc.DTypeError, match=r"cotangents\[1\] is float32 but outputs\[1\] is float64"):
        gc.vjp([y1, y2], x, [gc.placeholder("a", (2, 4), "float64"), gc.placeholder("b", (3,), "float32")])
    with pytest.raises(gc.GradError, match="2 output.*1 cotangent"):
        gc.vjp([y1, y2], x, gc.placeholder("a", (2, 4), "float64"))
    with pytest.raises(gc.GradError, match="must be Vars"):
        gc.vjp(y2, x, [np.ones(3)])
    with pytest.raises(gc.GradError, match="cotangents must be a Var or a list of Vars, got ndarray"):
        gc.vjp(y2, x, np.ones(3))
    i = gc.placeholder("i", (3,), "int32")
    with pytest.raises(gc.GradError, match="only float outputs"):
        gc.vjp(i * 2, x, gc.placeholder("c", (3,), "int32"))
    with pytest.raises(gc.GradError, match=r"wrt\[0\].*int32"):
        gc.vjp(y2, i, gc.placeholder("c", (3,), "float64"))
