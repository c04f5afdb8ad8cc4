"""The "pair" pass: a batch's softmax cross-entropy and its gradient on the same logits become
one two-output op (`SoftmaxCrossEntropyWithGrad`) with one kernel per backend."""

import numpy as np
import pytest

import graphc as gc
from graphc.core import Graph, constant
from graphc.ops import SoftmaxCrossEntropyWithGrad
from graphc.passes import STAGE_NAMES, optimize
from graphc.testing import verify_grad


def _mean_loss_step(c=7):
    z = gc.placeholder("z", (None, c), "float32")
    t = gc.placeholder("t", (None,), "int32")
    loss = gc.softmax_cross_entropy(z, t).mean()
    return z, t, loss, gc.grad(loss, z)


def _op_names(outputs):
    return [n.op.name for n in Graph([], outputs).nodes]


def _reference(zv, tv):
    """NumPy's mean loss and gradient; a label outside [0, C) selects nothing (loss and gradient 0)."""
    n, c = zv.shape
    z = zv.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    valid = (tv >= 0) & (tv < c)
    picked = np.where(valid, (np.log(s[:, 0]) + m[:, 0]) - z[np.arange(n), np.where(valid, tv, 0)], 0.0)
    hot = (tv[:, None] == np.arange(c)).astype(np.float64)
    return picked.mean(), (e / s * valid[:, None] - hot) / n


def test_the_mean_loss_and_its_gradient_become_one_op():
    z, t, loss, dz = _mean_loss_step()
    names = _op_names(optimize(Graph([z, t], [loss, dz])).outputs)
    assert "softmax_cross_entropy_with_grad" in names
    assert "softmax_cross_entropy" not in names and "softmax_cross_entropy_grad" not in names
    without = _op_names(optimize(Graph([z, t], [loss, dz]), exclude=("pair",)).outputs)
    assert "softmax_cross_entropy_with_grad" not in without


@pytest.mark.parametrize("backend", ["ref", "c", "cuda"])
def test_fused_loss_and_gradient_match_numpy(backend, monkeypatch):
    if backend == "cuda":
        monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")
    z, t, loss, dz = _mean_loss_step(c=37)
    rng = np.random.default_rng(1)
    zv = rng.normal(0, 3, (70, 37)).astype("float32")
    zv[3, 5] = 60.0  # a large logit: the row max keeps exp finite
    tv = rng.integers(0, 37, 70).astype("int32")
    tv[[4, 9]] = [-1, 37]  # outside [0, C): no loss, no gradient
    f = gc.function([z, t], [loss, dz], backend=backend, **({"to_host": True} if backend == "cuda" else {}))
    assert "softmax_cross_entropy_with_grad" in [n.op.name for n in f.graph.nodes]
    got_loss, got_dz = f(zv, tv)
    want_loss, want_dz = _reference(zv, tv)
    np.testing.assert_allclose(got_loss, want_loss, rtol=2e-6)
    np.testing.assert_allclose(got_dz, want_dz, rtol=1e-5, atol=1e-8)
    assert not got_dz[[4, 9]].any()


def test_a_cotangent_that_depends_on_the_loss_keeps_both_nodes():
    """sum(loss**2): the gradient's cotangent is 2 * loss, so the loss must be computed first."""
    z = gc.placeholder("z", (None, 5), "float64")
    t = gc.placeholder("t", (None,), "int32")
    per = gc.softmax_cross_entropy(z, t)
    cost = gc.sum(per * per)
    dz = gc.grad(cost, z)
    g = optimize(Graph([z, t], [cost, dz]))
    assert "softmax_cross_entropy_with_grad" not in _op_names(g.outputs)
    zv = np.random.default_rng(2).normal(size=(6, 5))
    tv = np.array([0, 1, 2, 3, 4, 0], "int32")
    got = gc.function([z, t], dz, backend="c")(zv, tv)
    want = gc.function([z, t], dz, backend="ref", exclude_passes=STAGE_NAMES)(zv, tv)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_the_fused_op_has_the_gradient_of_its_two_parts():
    """Both outputs' vector-Jacobian products, checked against central differences."""
    tv = constant(np.array([1, 0, 3], "int32"))
    rng = np.random.default_rng(3)

    def both(g, z):
        loss, dz = SoftmaxCrossEntropyWithGrad()(g, z, tv)
        return gc.sum(loss * constant(rng.normal(size=3))) + gc.sum(dz * constant(rng.normal(size=(3, 4))))

    verify_grad(both, [rng.normal(size=3), rng.normal(size=(3, 4))], n_tests=2)


def test_every_loss_of_a_many_headed_model_is_fused():
    """Twelve heads, each a cross-entropy on its own logits: all twelve pairs fuse (the pass
    pairs until none is left, not one per pipeline round)."""
    t = gc.placeholder("t", (None,), "int32")
    zs = [gc.placeholder(f"z{i}", (None, 4), "float64") for i in range(12)]
    total = gc.sum(gc.softmax_cross_entropy(zs[0], t))
    for z in zs[1:]:
        total = total + gc.sum(gc.softmax_cross_entropy(z, t))
    grads = gc.grad(total, zs)
    names = _op_names(optimize(Graph([t, *zs], [total, *grads])).outputs)
    assert names.count("softmax_cross_entropy_with_grad") == 12
    assert "softmax_cross_entropy" not in names and "softmax_cross_entropy_grad" not in names


def test_cross_entropy_gradient_with_a_statically_sized_weight():
    """A per-example weight with a static batch size on logits whose batch is None: the
    gradient's cotangent has the static shape, the logits the dynamic one (was a ShapeError)."""
    z = gc.placeholder("z", (None, 3), "float64")
    t = gc.placeholder("t", (None,), "int32")
    w = gc.constant(np.array([1.0, 2.0, 0.5, 3.0]))
    cost = (gc.softmax_cross_entropy(z, t) * w).sum()
    dz = gc.grad(cost, z)
    zv = np.random.default_rng(4).normal(size=(4, 3))
    tv = np.array([0, 2, 1, 1], "int32")
    p = np.exp(zv - zv.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    want = w.value[:, None] * (p - np.eye(3)[tv])
    for backend in ("ref", "c"):
        np.testing.assert_allclose(gc.function([z, t], dz, backend=backend)(zv, tv), want, rtol=1e-12)
