"""Worked results from the lecture notes (shared/seeds/004_073132b22604ecba.txt, lecture 7 and the
XOR / logistic-regression sections), each recomputed by hand or with NumPy."""

from __future__ import annotations

import numpy as np

import graphc as gc


def test_backprop_simple_example():
    """f(x, y, z) = (x + y) z at (-2, 5, -4): f = -12 and the gradient is (-4, -4, 3)."""
    x, y, z = (gc.placeholder(n, (), "float64") for n in "xyz")
    f = (x + y) * z
    fn = gc.function([x, y, z], [f, *gc.grad(f, [x, y, z])])
    value, dx, dy, dz = fn(-2.0, 5.0, -4.0)
    assert float(value) == -12.0
    assert (float(dx), float(dy), float(dz)) == (-4.0, -4.0, 3.0)


def test_sigmoid_derivative_is_s_times_one_minus_s():
    x = gc.placeholder("x", (7,), "float64")
    s = gc.sigmoid(x)
    g = gc.grad(gc.sum(s), x)
    pts = np.array([-30.0, -5.0, -1.0, 0.0, 0.5, 3.0, 30.0])
    sig = 1.0 / (1.0 + np.exp(-pts))
    np.testing.assert_allclose(gc.function([x], g)(pts), sig * (1 - sig), rtol=1e-12, atol=1e-300)
    # the stable derivative reuses the forward sigmoid node instead of differentiating exp
    ops = [n.op.name for n in gc.function([x], g).graph.nodes]
    assert "sigmoid" in ops and "exp" not in ops


def test_gradient_of_squared_norm_of_Wx():
    """f = ||W x||^2 with q = W x: df/dW = 2 q x^T and df/dx = 2 W^T q."""
    rng = np.random.default_rng(0)
    Wv, xv = rng.normal(size=(3, 4)), rng.normal(size=4)
    W, x = gc.placeholder("W", (3, 4), "float64"), gc.placeholder("x", (4,), "float64")
    f = gc.sum(gc.square(W @ x))
    dW, dx = gc.function([W, x], gc.grad(f, [W, x]))(Wv, xv)
    q = Wv @ xv
    np.testing.assert_allclose(dW, 2 * np.outer(q, xv), rtol=1e-12)
    np.testing.assert_allclose(dx, 2 * Wv.T @ q, rtol=1e-12)


def test_hand_set_xor_relu_network():
    """W = [[1,1],[1,1]], c = [0,-1], w = [1,-2], b = 0 computes XOR on the four inputs."""
    X = gc.placeholder("X", (None, 2))
    W = gc.shared(np.array([[1, 1], [1, 1]], "float32"), name="W")
    c = gc.shared(np.array([0, -1], "float32"), name="c")
    w = gc.shared(np.array([1, -2], "float32"), name="w")
    h = gc.relu(X @ W + c)
    y = h @ w
    out = gc.function([X], y)(np.array([[0, 0], [0, 1], [1, 0], [1, 1]], "float32"))
    np.testing.assert_array_equal(out, [0, 1, 1, 0])


def test_logistic_regression_gradient():
    """The NLL of logistic regression has gradient sum_i (sigma(theta^T x_i) - y_i) x_i."""
    rng = np.random.default_rng(3)
    Xv, yv, tv = rng.normal(size=(20, 3)), rng.integers(0, 2, 20).astype("float64"), rng.normal(size=3)
    X, y = gc.placeholder("X", (None, 3), "float64"), gc.placeholder("y", (None,), "float64")
    theta = gc.placeholder("theta", (3,), "float64")
    p = gc.sigmoid(X @ theta)
    nll = -gc.sum(y * gc.log(p) + (1 - y) * gc.log(1 - p))
    g = gc.function([X, y, theta], gc.grad(nll, theta))(Xv, yv, tv)
    sig = 1 / (1 + np.exp(-(Xv @ tv)))
    np.testing.assert_allclose(g, ((sig - yv)[:, None] * Xv).sum(0), rtol=1e-10)


def test_logistic_regression_gradient_is_finite_when_saturated():
    """With |theta^T x| ~ 800 the naive log(sigmoid) would give log(0); the stabilised graph does not."""
    X, y = gc.placeholder("X", (None, 1), "float64"), gc.placeholder("y", (None,), "float64")
    theta = gc.placeholder("theta", (1,), "float64")
    p = gc.sigmoid(X @ theta)
    nll = -gc.sum(y * gc.log(p) + (1 - y) * gc.log(1 - p))
    f = gc.function([X, y, theta], [nll, gc.grad(nll, theta)])
    loss, g = f(np.array([[800.0], [-800.0]]), np.array([0.0, 1.0]), np.array([1.0]))
    assert np.isfinite(loss) and np.isclose(loss, 1600.0)
    np.testing.assert_allclose(g, [800.0 + 800.0])
