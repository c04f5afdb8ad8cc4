"""The fused softmax cross-entropy gradient: C and the reference agree with the textbook
formula, on ordinary rows and on the edge cases (labels outside [0, C), infinite and NaN logits)."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ops import SoftmaxCrossEntropyGrad


def _textbook(z, t, g):
    """g * (softmax(z) - one_hot(t)) per row, 0 for a label outside [0, C)."""
    c = z.shape[-1]
    e = np.exp(z - z.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    valid = (t >= 0) & (t < c)
    hot = np.zeros_like(p)
    hot[np.arange(len(t))[valid], t[valid]] = 1
    return g[:, None] * (p * valid[:, None] - hot)


def _grad_fn(backend, dtype, c):
    z = gc.placeholder("z", (None, c), dtype)
    t = gc.placeholder("t", (None,), "int64")
    w = gc.placeholder("w", (None,), dtype)
    loss = (gc.softmax_cross_entropy(z, t) * w).sum()
    return gc.function([z, t, w], gc.grad(loss, z), backend=backend)


@pytest.mark.parametrize("dtype, tol", [("float32", 2e-6), ("float64", 1e-13)])
@pytest.mark.parametrize("backend", ["ref", "c"])
def test_matches_softmax_minus_one_hot(backend, dtype, tol):
    rng = np.random.default_rng(3)
    c = 37
    z = (rng.normal(size=(64, c)) * 4).astype(dtype)
    t = rng.integers(-2, c + 2, 64)  # some labels outside [0, C): no gradient
    w = rng.normal(size=64).astype(dtype)
    got = _grad_fn(backend, dtype, c)(z, t, w)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, _textbook(z.astype("float64"), t, w.astype("float64")), atol=tol, rtol=0)
    assert not got[(t < 0) | (t >= c)].any()


def test_the_schedule_has_one_gradient_kernel():
    z = gc.placeholder("z", (None, 10))
    t = gc.placeholder("t", (None,), "int32")
    f = gc.function([z, t], gc.grad(gc.softmax_cross_entropy(z, t).mean(), z), backend="c")
    labels = [k.label for k in f._program.schedule.kernels]
    assert "op[softmax_cross_entropy_grad]" in labels
    assert not any(label.startswith("reduce[max") for label in labels)  # no separate row-max pass


def test_infinite_and_nan_logits_agree_with_the_reference():
    c = 5
    z = np.array([[0, 1, 2, 3, 4], [np.inf, 0, 0, 0, 0], [-np.inf] * c, [np.nan, 0, 0, 0, 0], [-np.inf, 0, 1, 0, 0]],
                 "float32")
    t = np.array([1, 0, 2, 3, 0])
    w = np.ones(5, "float32")
    with np.errstate(invalid="ignore"):
        ref = _grad_fn("ref", "float32", c)(z, t, w)
    got = _grad_fn("c", "float32", c)(z, t, w)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert np.isnan(got[3]).all() and np.isfinite(got[4]).all()
    assert got[4, 0] == -1.0  # p = 0 at -inf, minus the one-hot


def test_a_cotangent_of_the_wrong_shape_is_refused():
    z = gc.placeholder("z", (None, 4))
    t = gc.placeholder("t", (None,), "int32")
    with pytest.raises(gc.ShapeError, match="softmax_cross_entropy \\(gradient\\)"):
        SoftmaxCrossEntropyGrad()(gc.placeholder("g", (None, 4)), z, t)
