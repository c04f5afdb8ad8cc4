"""Generative models: the multi-step training loop, the VAE's ELBO and gradients, the
contractive penalty, functional models. Fast; the quality runs are in test_generative_slow.py."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import graphc as gc
from graphc.core import clone_replace
from graphc.nn import Dense, Input, Model, Reshape, Sequential
from graphc.train import Step, fit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


vae = load_example("vae_mnist")


def _weights(encoder, decoder):
    return [p.get_value() for p in encoder.params + decoder.params]


def _np_negative_elbo(ws, x, eps):
    w1, b1, wm, bm, wv, bv, w3, b3, w4, b4 = ws
    h = np.maximum(x @ w1 + b1, 0)
    mu, lv = h @ wm + bm, h @ wv + bv
    z = mu + np.exp(0.5 * lv) * eps
    logits = np.maximum(z @ w3 + b3, 0) @ w4 + b4
    bce = np.logaddexp(0, logits) - x * logits
    nll = bce.sum(-1).mean()
    kl = (-0.5 * (1 + lv - mu ** 2 - np.exp(lv)).sum(-1)).mean()
    return nll, kl


def _small_vae(seed=0):
    x = Input((12,), name="sx")
    h = Dense(8, activation="relu", seed=seed + 1)(x)
    enc = Model(x, [Dense(3, seed=seed + 2)(h), Dense(3, seed=seed + 3)(h)])
    z = Input((3,), name="sz")
    dec = Model(z, Dense(12, seed=seed + 5)(Dense(8, activation="relu", seed=seed + 4)(z)))
    return enc, dec


def _binary_data(n=16, d=12, seed=0):
    return (np.random.default_rng(seed).random((n, d)) > 0.5).astype("float32")


def test_vae_elbo_terms_match_numpy_on_fixed_weights_and_noise():
    enc, dec = _small_vae()
    for p in enc.params + dec.params:  # non-zero biases so every term is exercised
        p.set_value(p.get_value() + np.float32(0.1))
    x, eps = gc.placeholder("x", (None, 12)), gc.placeholder("eps", (None, 3))
    terms = vae.negative_elbo(enc, dec, x, eps)
    f = gc.function([x, eps], [terms["loss"], terms["nll"], terms["kl"]])
    xv = _binary_data()
    ev = np.random.default_rng(1).standard_normal((16, 3)).astype("float32")
    loss, nll, kl = (float(v) for v in f(xv, ev))
    want_nll, want_kl = _np_negative_elbo([w.astype("float64") for w in _weights(enc, dec)], xv, ev)
    assert nll == pytest.approx(want_nll, rel=1e-5)
    assert kl == pytest.approx(want_kl, rel=1e-5)
    assert loss == pytest.approx(want_nll + want_kl, rel=1e-5)


def test_reparameterised_gradient_matches_finite_differences_with_the_noise_held_fixed():
    enc, dec = _small_vae(seed=3)
    x = gc.placeholder("x", (None, 12))
    mu, _ = enc(x)
    eps = gc.random.normal(like=mu, seed=42)
    counter = eps.owner.inputs[0]  # the draw counter: resetting it repeats the same noise
    loss = vae.negative_elbo(enc, dec, x, eps)["loss"]
    w = enc.params[2]  # the mu layer's kernel: its gradient flows through z = mu + sigma * eps
    f = gc.function([x], [loss, gc.grad(loss, w)], backend="ref")
    xv = _binary_data(seed=2)
    counter.set_value(np.int64(0))
    _, g = f(xv)
    w0 = w.get_value().astype("float64")
    rng = np.random.default_rng(0)
    for _ in range(5):
        i, j = rng.integers(w0.shape[0]), rng.integers(w0.shape[1])
        vals = []
        for h in (1e-2, -1e-2):
            wp = w0.copy()
            wp[i, j] += h
            w.set_value(wp.astype("float32"))
            counter.set_value(np.int64(0))
            vals.append(float(f(xv)[0]))
        w.set_value(w0.astype("float32"))
        fd = (vals[0] - vals[1]) / 2e-2
        assert g[i, j] == pytest.approx(fd, rel=2e-2, abs=2e-3)


def test_vae_loss_and_gradients_match_pytorch_with_the_same_weights_and_noise():
    torch = pytest.importorskip("torch")
    enc, dec = _small_vae(seed=5)
    x, eps = gc.placeholder("x", (None, 12)), gc.placeholder("eps", (None, 3))
    loss = vae.negative_elbo(enc, dec, x, eps)["loss"]
    params = enc.params + dec.params
    f = gc.function([x, eps], [loss] + gc.grad(loss, params))
    xv = _binary_data(seed=4)
    ev = np.random.default_rng(5).standard_normal((16, 3)).astype("float32")
    out = f(xv, ev)
    tw = [torch.tensor(p.get_value(), requires_grad=True) for p in params]
    w1, b1, wm, bm, wv, bv, w3, b3, w4, b4 = tw
    tx, te = torch.from_numpy(xv), torch.from_numpy(ev)
    h = torch.relu(tx @ w1 + b1)
    mu, lv = h @ wm + bm, h @ wv + bv
    logits = torch.relu((mu + torch.exp(0.5 * lv) * te) @ w3 + b3) @ w4 + b4
    tl = (torch.nn.functional.binary_cross_entropy_with_logits(logits, tx, reduction="sum")
          - 0.5 * torch.sum(1 + lv - mu ** 2 - lv.exp())) / len(xv)
    tl.backward()
    assert float(out[0]) == pytest.approx(float(tl.detach()), rel=1e-5)
    for g, t in zip(out[1:], tw):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_vae_adam_steps_at_full_size_track_pytorch_from_the_same_weights_and_noise():
    # The twin's -ELBO gap (benchmarks/RESULTS.md) is not the step: from the same initial weights,
    # batches and noise, 784-400-20 and Adam(1e-3) follow PyTorch's trajectory to float32 rounding.
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    enc, dec = vae.make_vae()
    params = enc.params + dec.params
    x, eps = gc.placeholder("x", (None, 784)), gc.placeholder("eps", (None, 20))
    loss = vae.negative_elbo(enc, dec, x, eps)["loss"]
    step = gc.function([x, eps], loss, updates=gc.optim.Adam(1e-3).updates(loss, params))
    tw = [torch.tensor(p.get_value(), requires_grad=True) for p in params]
    opt = torch.optim.Adam(tw, lr=1e-3)

    def torch_loss(xb, eb):
        w1, b1, wm, bm, wv, bv, w3, b3, w4, b4 = tw
        h = torch.relu(xb @ w1 + b1)
        mu, lv = h @ wm + bm, h @ wv + bv
        logits = torch.relu((mu + torch.exp(0.5 * lv) * eb) @ w3 + b3) @ w4 + b4
        return (torch.nn.functional.binary_cross_entropy_with_logits(logits, xb, reduction="sum")
                - 0.5 * torch.sum(1 + lv - mu ** 2 - lv.exp())) / len(xb)

    data = np.asarray(gc.data.load_mnist5k().x_train[:128 * 10])
    rng = np.random.default_rng(0)
    for k in range(10):
        xb, eb = data[128 * k:128 * (k + 1)], rng.standard_normal((128, 20)).astype("float32")
        ours = float(step(xb, eb))
        theirs = torch_loss(torch.from_numpy(xb), torch.from_numpy(eb))
        opt.zero_grad()
        theirs.backward()
        opt.step()
        assert ours == pytest.approx(float(theirs.detach()), rel=1e-5), k
    for p, t in zip(params, tw):  # one Adam step moves a weight by up to 1e-3: 1e-4 is 10% of one
        np.testing.assert_allclose(p.get_value(), t.detach().numpy(), rtol=0, atol=1e-4, err_msg=p.name)


def test_vae_trains_a_few_steps_through_fit_and_its_halves_work_alone():
    enc, dec = _small_vae(seed=7)
    xv = np.tile(_binary_data(n=4, seed=6), (16, 1))
    hist = fit(None, xv, steps=[vae.vae_step(enc, dec, lr=1e-2)], epochs=15, batch_size=16, verbose=0)
    assert set(hist) == {"loss", "nll", "kl", "epoch_time"}
    assert hist["loss"][-1] < 0.85 * hist["loss"][0]
    z = gc.placeholder("z", (None, 3))
    assert gc.function([z], dec(z))(np.zeros((5, 3), "float32")).shape == (5, 12)
    xi = gc.placeholder("xi", (None, 12))
    mu, lv = gc.function([xi], enc(xi))(xv[:7])
    assert mu.shape == lv.shape == (7, 3)


def test_autoencoder_fit_without_labels_reconstructs_the_input():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((128, 2)) @ rng.standard_normal((2, 6))).astype("float32")  # rank 2
    ae = Sequential([Dense(2, seed=1), Dense(6, seed=2)], input_shape=(6,))
    hist = fit(ae, x, loss="mse", optimizer=gc.optim.Adam(0.02), epochs=30, batch_size=32, verbose=0,
               validation_data=x[:32])
    assert "accuracy" not in hist
    assert hist["loss"][-1] < 0.05 * hist["loss"][0]
    assert hist["val_loss"][-1] < 0.05 * hist["loss"][0]
    assert hist.trainer.predict(x[:5]).shape == (5, 6)


def test_two_steps_sharing_weights_see_each_others_updates():
    w = gc.shared(np.float32(0.0), name="shared_w")
    # step "up" pulls w towards 1, step "down" (every 2nd batch) towards -1, plain SGD lr 0.5
    up = Step(lambda x, y, t: {"up": gc.square(w - 1.0) + 0 * gc.sum(x)}, [w], gc.optim.SGD(0.5), name="up")
    down = Step(lambda x, y, t: {"down": gc.square(w + 1.0)}, [w], gc.optim.SGD(0.5), name="down", every=2)
    seen = []

    class Record(gc.train.Callback):
        def on_epoch_end(self, epoch, logs, trainer):
            seen.append(float(w.get_value()))

    x = np.zeros((3, 1), "float32")
    hist = fit(None, x, steps=[up, down], epochs=1, batch_size=1, shuffle=False, verbose=0, callbacks=[Record()])
    # batch 0: up (0 -> 1), down sees w=1 (1 -> -1); batch 1: up sees -1 (-> 1); batch 2: up (1 -> 1), down (-> -1)
    assert seen == [-1.0]
    assert hist["up"] == [pytest.approx((1.0 + 4.0 + 0.0) / 3)]
    assert hist["down"] == [pytest.approx((4.0 + 4.0) / 2)]
    assert up.optimizer.iterations.get_value() == 3 and down.optimizer.iterations.get_value() == 2


def test_repeat_runs_a_step_several_times_per_batch_and_checkpoints_hold_every_step(tmp_path):
    a, b = gc.shared(np.float32(0.0), name="ck_a"), gc.shared(np.float32(0.0), name="ck_b")
    s1 = Step(lambda x, y, t: gc.square(a - 2.0), [a], gc.optim.Adam(0.1), name="s1", repeat=3)
    s2 = Step(lambda x, y, t: gc.square(b - 2.0), [b], gc.optim.SGD(0.1), name="s2")
    path = str(tmp_path / "ck.npz")
    hist = fit(None, np.zeros((4, 1), "float32"), steps=[s1, s2], epochs=2, batch_size=2, verbose=0,
               callbacks=[gc.train.ModelCheckpoint(path)])
    assert sorted(hist) == ["epoch_time", "s1_loss", "s2_loss"]
    assert s1.optimizer.iterations.get_value() == 12 and s2.optimizer.iterations.get_value() == 4
    with np.load(path) as ck:  # keyed by structure; the file also records each variable's name
        keys, names = set(ck.files), set(ck["names"][:, 1])
    assert {"var:steps.s1.optimizer.iterations", "var:steps.s2.optimizer.iterations"} <= keys
    for v in s1.variables + s2.variables:
        assert v.name in names
    saved_a = float(a.get_value())
    a.set_value(np.float32(9.0))
    gc.train.load_checkpoint(path, hist.trainer.variables)
    assert float(a.get_value()) == saved_a


def test_step_errors_are_clear():
    w = gc.shared(np.zeros(2, "float32"), name="err_w")
    with pytest.raises(ValueError, match="every must be a positive int"):
        Step(lambda x, y, t: gc.sum(w), [w], every=0)
    with pytest.raises(TypeError, match="build must be callable"):
        Step("loss", [w])
    bad = Step(lambda x, y, t: w * 2.0, [w], name="vec")
    with pytest.raises(TypeError, match="must be a scalar Var"):
        fit(None, np.zeros((2, 1), "float32"), steps=[bad], epochs=1, verbose=0)
    s1 = Step(lambda x, y, t: {"l": gc.sum(w)}, [w], name="a")
    s2 = Step(lambda x, y, t: {"l": gc.sum(w)}, [w], name="b")
    with pytest.raises(ValueError, match="both log 'l'"):
        fit(None, np.zeros((2, 1), "float32"), steps=[s1, s2], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="give a model, or steps"):
        fit(None, np.zeros((2, 1), "float32"), epochs=1, verbose=0)


def test_functional_model_with_two_inputs_and_two_outputs():
    a, b = Input((3,), name="ma"), Input((2,), name="mb")
    ha = Dense(4, seed=1)(a)
    both = gc.nn.Lambda(lambda u, v: gc.concatenate([u, v], axis=1))([ha, b])
    out1 = Dense(1, seed=2)(both)
    out2 = Reshape((2, 3))(Dense(6, seed=3)(both))
    m = Model([a, b], [out1, out2])
    assert len(m.params) == 6
    pa, pb = gc.placeholder("pa", (None, 3)), gc.placeholder("pb", (None, 2))
    o1, o2 = m([pa, pb])
    av, bv = np.ones((5, 3), "float32"), np.ones((5, 2), "float32")
    r1, r2 = gc.function([pa, pb], [o1, o2])(av, bv)
    assert r1.shape == (5, 1) and r2.shape == (5, 2, 3)
    k1, c1 = m.layers[0].params[0].get_value(), m.layers[0].params[1].get_value()
    hv = av @ k1 + c1
    cat = np.concatenate([hv, bv], 1)
    k2, c2 = m.layers[2].params[0].get_value(), m.layers[2].params[1].get_value()
    np.testing.assert_allclose(r1, cat @ k2 + c2, rtol=1e-5)
    with pytest.raises(ValueError, match="expects 2 inputs"):
        m(pa)
    with pytest.raises(ValueError, match="wrapped in Lambda"):
        Model(a, Dense(2)(a) * 2.0)


ae = load_example("autoencoders")
gan = load_example("gan_ring")


def test_contractive_penalty_matches_the_autodiff_jacobian_of_a_sigmoid_encoder():
    rng = np.random.default_rng(0)
    x = gc.placeholder("x", (None, 6))
    W = gc.shared(rng.standard_normal((6, 4)).astype("float32"), name="cW")
    b = gc.shared(rng.standard_normal(4).astype("float32"), name="cb")
    h = gc.sigmoid(x @ W + b)
    closed = ae.contractive_penalty(h, W)
    # row j of every example's Jacobian: examples are independent, so grad of the batch sum of h_j
    rows = [gc.grad(gc.sum(gc.take(h, j, axis=1)), x) for j in range(4)]
    fro2 = gc.mean(gc.sum(sum(gc.square(r) for r in rows), 1))
    xv = rng.standard_normal((5, 6)).astype("float32")
    got, want = gc.function([x], [closed, fro2])(xv)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    # and against NumPy
    hv = 1 / (1 + np.exp(-(xv @ W.get_value() + b.get_value())))
    J = (hv * (1 - hv))[:, :, None] * W.get_value().T[None]
    assert float(got) == pytest.approx(float((J ** 2).sum((1, 2)).mean()), rel=1e-5)


def test_denoising_corruption_is_fresh_at_every_call_and_masks_pixels():
    x = gc.placeholder("x", (None, 400))
    f = gc.function([x], ae.corrupt(x, seed=3, drop=0.25, std=0.0))
    ones = np.ones((10, 400), "float32")
    a, b = f(ones), f(ones)
    assert 0.2 < 1 - a.mean() < 0.3
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("kind", ["undercomplete", "sparse", "denoising", "contractive", "conv"])
def test_each_autoencoder_trains_a_few_steps(kind):
    full = gc.data.load_mnist5k()
    small = type("DS", (), {"x_train": np.asarray(full.x_train[:128]), "x_test": np.asarray(full.x_test[:32])})
    first = ae.train(kind, small, epochs=0)["test_mse"]
    r = ae.train(kind, small, epochs=3 if kind != "conv" else 1, batch=32)
    assert r["recon"].shape == (10, 28, 28)
    assert r["test_mse"] < first


def test_gan_steps_alternate_and_train_both_networks():
    for method in ("vanilla", "gp0", "unrolled", "wgan-gp"):
        G, D, steps = gan.make_steps(method, batch=32, seed=0, hidden=16, unroll=2)
        g0, d0 = G.params[0].get_value().copy(), D.params[0].get_value().copy()
        hist = gc.train.fit(None, gan.ring_data(32 * 10, 0), steps=steps, epochs=1, batch_size=32, verbose=0)
        assert not np.allclose(G.params[0].get_value(), g0) and not np.allclose(D.params[0].get_value(), d0)
        assert steps[0].optimizer.iterations.get_value() == 10
        assert steps[1].optimizer.iterations.get_value() == (2 if method == "wgan-gp" else 10)
        assert np.isfinite(hist["d_loss"][0]) and np.isfinite(hist["g_loss"][0])


def test_unrolled_critic_is_k_sgd_steps_and_the_generator_differentiates_through_them():
    G, D = gan.mlp(2, 8, 1, 3, "uG"), gan.mlp(1, 8, 11, 2, "uD")
    x, z = gc.placeholder("x", (None, 2)), gc.placeholder("z", (None, 3))
    fake = G(z)
    d_loss = gan._bce(D(x), 1.0) + gan._bce(D(fake), 0.0)
    ahead = gan.unrolled(d_loss, D.params, 3, 0.5)
    (g_loss,) = clone_replace([gan._bce(D(fake), 1.0)], dict(zip(D.params, ahead)))
    w = G.params[0]
    f = gc.function([x, z], [g_loss, gc.grad(g_loss, w)], backend="ref")
    xv, zv = gan.ring_data(16, 0), np.random.default_rng(0).standard_normal((16, 3)).astype("float32")
    value, grad = f(xv, zv)
    # the value: the generator's loss against the critic after 3 explicit SGD steps
    d_grads = gc.function([x, z], gc.grad(d_loss, D.params), backend="ref")
    start = [p.get_value().copy() for p in D.params]
    for _ in range(3):
        for p, g in zip(D.params, d_grads(xv, zv)):
            p.set_value(p.get_value() - np.float32(0.5) * g)
    assert float(value) == pytest.approx(float(gc.function([x, z], gan._bce(D(fake), 1.0), backend="ref")(xv, zv)),
                                         rel=1e-5)
    for p, v in zip(D.params, start):
        p.set_value(v)
    # the gradient flows through the 3 steps (finite differences of the unrolled loss)
    w0 = w.get_value().astype("float64")
    for i, j in [(0, 0), (1, 3), (2, 5)]:
        vals = []
        for h in (1e-3, -1e-3):
            wp = w0.copy()
            wp[i, j] += h
            w.set_value(wp.astype("float32"))
            vals.append(float(f(xv, zv)[0]))
        w.set_value(w0.astype("float32"))
        assert grad[i, j] == pytest.approx((vals[0] - vals[1]) / 2e-3, rel=2e-2, abs=1e-4)
    # and differs from the plain (k = 0) generator gradient
    plain = gc.function([x, z], gc.grad(gan._bce(D(fake), 1.0), w), backend="ref")(xv, zv)
    assert not np.allclose(plain, grad, rtol=1e-3, atol=1e-5)


def test_ring_quality_metric():
    modes, hq = gan.quality(gan.ring_data(2500, 0))
    assert modes == 8 and hq > 0.99
    collapsed = np.repeat(gan.CENTERS[:1], 2500, 0)
    assert gan.quality(collapsed) == (1, 1.0)
    assert gan.quality(np.zeros((2500, 2), "float32")) == (0, 0.0)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_mnist_gan_steps_train_both_networks_and_generate_images(arch):
    gmn = load_example("gan_mnist")
    G, D, steps = gmn.make_gan(16, arch=arch)
    g0, d0 = G.params[0].get_value().copy(), D.params[0].get_value().copy()
    hist = fit(None, np.asarray(gc.data.load_mnist5k().x_train[:64]), steps=steps, epochs=1, batch_size=16,
               verbose=0)
    assert np.isfinite(hist["d_loss"][0]) and np.isfinite(hist["g_loss"][0])
    assert not np.allclose(G.params[0].get_value(), g0) and not np.allclose(D.params[0].get_value(), d0)
    z = gc.placeholder("z", (None, gmn.Z))
    img = gc.function([z], G(z))(np.random.default_rng(0).standard_normal((3, gmn.Z)).astype("float32"))
    assert img.shape == (3, 784) and img.min() >= 0.0 and img.max() <= 1.0
