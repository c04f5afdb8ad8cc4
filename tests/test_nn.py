"""Layers, the fit loop, checkpoints and the training problems with known answers."""

from __future__ import annotations

import os

import numpy as np
import pytest

import graphc as gc
from graphc import optim, train
from graphc.nn import BatchNormalization, Dense, Dropout, Embedding, Flatten, Input, Sequential

# -- layers ------------------------------------------------------------------------------------


def test_summary_parameter_counts_match_keras():
    model = Sequential([Dense(256, activation="relu"), BatchNormalization(), Dense(10)], input_shape=(784,))
    text = model.summary(print_fn=None)
    assert "200,960" in text          # Dense(784 -> 256): 784*256 + 256
    assert "1,024" in text            # BatchNormalization(256): gamma, beta, moving mean, moving variance
    assert "2,570" in text            # Dense(256 -> 10)
    assert "Total params: 204,554" in text and "Non-trainable params: 512" in text
    assert len(model.params) == 6 and len(model.state) == 2


def test_summary_before_build_is_a_clear_error():
    with pytest.raises(ValueError, match="call the model on an input first"):
        Sequential([Dense(3)]).summary()


def test_dense_functional_style_and_shape_errors():
    x = Input((4,))
    d = Dense(3, activation="tanh", seed=0)
    h = d(x)
    W, b = d.kernel.get_value(), d.bias.get_value()
    xv = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    np.testing.assert_allclose(gc.function([x], h)(xv), np.tanh(xv @ W + b), rtol=1e-5)
    with pytest.raises(gc.ShapeError, match="dense"):
        d(Input((5,)))
    with pytest.raises(ValueError, match="unknown activation"):
        Dense(3, activation="swishy")


def test_glorot_uniform_kernel_limits():
    d = Dense(200, seed=3)
    d(Input((300,)))
    limit = np.sqrt(6 / (300 + 200))
    w = d.kernel.get_value()
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    assert abs(w.std() - limit / np.sqrt(3)) < 0.02 * limit


def test_flatten():
    x = gc.placeholder("x", (None, 2, 3, 4))
    assert Flatten()(x).shape == (None, 24)


def test_dropout_train_and_eval():
    x = Input((1000,))
    drop = Dropout(0.25, seed=11)
    f_train = gc.function([x], drop(x, training=True))
    f_eval = gc.function([x], drop(x, training=False))
    xv = np.ones((4, 1000), "float32")
    np.testing.assert_array_equal(f_eval(xv), xv)
    a, b = f_train(xv), f_train(xv)
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((a == 0).mean() - 0.25) < 0.03
    assert (a != b).any()  # a fresh mask on every call
    assert abs(a.mean() - 1.0) < 0.05  # inverted dropout keeps the expectation


def test_batch_norm_training_statistics_and_running_averages():
    rng = np.random.default_rng(0)
    x = Input((3,))
    bn = BatchNormalization(momentum=0.9, epsilon=1e-3)
    y_train = bn(x, training=True)
    step = gc.function([x], y_train, updates=bn.updates)
    xv = rng.normal(2.0, 3.0, size=(64, 3)).astype("float32")
    out = step(xv)
    mu, var = xv.mean(0), xv.var(0)
    np.testing.assert_allclose(out, (xv - mu) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_mean.get_value(), 0.1 * mu, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.get_value(), 0.9 + 0.1 * var, rtol=1e-5)
    step(xv)
    np.testing.assert_allclose(bn.moving_mean.get_value(), 0.9 * 0.1 * mu + 0.1 * mu, rtol=1e-5)
    y_eval = gc.function([x], bn(x, training=False))
    rm, rv = bn.moving_mean.get_value(), bn.moving_variance.get_value()
    np.testing.assert_allclose(y_eval(xv), (xv - rm) / np.sqrt(rv + 1e-3), rtol=1e-4, atol=1e-5)


def test_batch_norm_gradient_flows_through_batch_statistics():
    from .conftest import numeric_grad

    rng = np.random.default_rng(1)
    x = gc.placeholder("x", (6, 2), "float64")
    bn = BatchNormalization()
    y = bn(x, training=True)
    w = gc.constant(rng.normal(size=(6, 2)))
    cost = gc.sum(y * w)
    g = gc.function([x], gc.grad(cost, x))
    xv = rng.normal(size=(6, 2))
    np.testing.assert_allclose(g(xv), numeric_grad(gc.function([x], cost), [xv], 0), rtol=1e-4, atol=1e-6)


def test_embedding_lookup_and_gradient_accumulates():
    ids = gc.placeholder("ids", (None, 3), "int32")
    emb = Embedding(10, 4, seed=0)
    out = emb(ids)
    table = emb.embeddings.get_value()
    iv = np.array([[1, 2, 1], [9, 1, 0]], "int32")
    np.testing.assert_array_equal(gc.function([ids], out)(iv), table[iv])
    g = gc.function([ids], gc.grad(gc.sum(out), emb.embeddings))(iv)
    counts = np.bincount(iv.ravel(), minlength=10)[:, None]
    np.testing.assert_array_equal(g, np.broadcast_to(counts, (10, 4)))


# -- checkpoints -------------------------------------------------------------------------------


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = Sequential([Dense(5, activation="relu", seed=1), BatchNormalization(), Dense(2, seed=2)],
                       input_shape=(3,))
    x = Input((3,))
    f = gc.function([x], model(x))
    xv = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    before = f(xv)
    path = str(tmp_path / "ck.npz")
    train.save_checkpoint(path, model.weights, epoch=7)
    for w in model.weights:
        w.set_value(np.zeros(w.shape, "float32"))
    assert not np.allclose(f(xv), before)
    assert train.load_checkpoint(path, model.weights)["epoch"] == 7
    np.testing.assert_array_equal(f(xv), before)


def test_half_written_checkpoint_never_replaces_a_good_one(tmp_path, monkeypatch):
    w = gc.shared(np.arange(4, dtype="float32"), name="w")
    path = str(tmp_path / "ck.npz")
    train.save_checkpoint(path, [w])
    good = open(path, "rb").read()

    def crash(fh, **arrays):
        fh.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(np, "savez", crash)
    w.set_value(np.full(4, 9, "float32"))
    with pytest.raises(KeyboardInterrupt):
        train.save_checkpoint(path, [w])
    assert open(path, "rb").read() == good
    assert [f for f in os.listdir(tmp_path) if f != "ck.npz"] == []  # no temporary left behind
    monkeypatch.undo()
    train.load_checkpoint(path, [w])
    np.testing.assert_array_equal(w.get_value(), np.arange(4))


def test_load_checkpoint_errors(tmp_path):
    w = gc.shared(np.zeros(3, "float32"), name="w")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train.load_checkpoint(str(tmp_path / "missing.npz"), [w])
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable graphc checkpoint"):
        train.load_checkpoint(str(bad), [w])
    path = str(tmp_path / "ck.npz")
    train.save_checkpoint(path, [gc.shared(np.zeros(4, "float32"), name="w")])
    with pytest.raises(ValueError, match="shape"):
        train.load_checkpoint(path, [w])


# -- training reaches known answers --------------------------------------------------------------


XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], "float32")
XOR_Y = np.array([0, 1, 1, 0], "float32")


def test_xor_with_a_2_2_1_net_reaches_100_percent():
    """A 2-2-1 tanh net has local minima on XOR (loss ln(2)/2 with two points at p = 0.5): from
    Glorot-uniform starts, 2 of seeds 1-10 reach the solution with Adam(0.05). Seed 8 is one."""
    model = Sequential([Dense(2, activation="tanh", seed=8), Dense(1, seed=108)], input_shape=(2,))

    def bce(out, t):
        return gc.nn.losses.binary_crossentropy(gc.reshape(out, (-1,)), t)

    hist = train.fit(model, XOR_X, XOR_Y, loss=bce, optimizer=optim.Adam(0.05), epochs=400, batch_size=4,
                     verbose=False, backend="c")
    assert hist["accuracy"][-1] == 1.0
    pred = hist.trainer.predict(XOR_X)[:, 0] > 0
    np.testing.assert_array_equal(pred, XOR_Y.astype(bool))


def test_logistic_regression_mle_on_the_coin_is_four_sevenths():
    """7 tosses, 4 heads: the maximum-likelihood estimate of P(heads) is 4/7."""
    theta = gc.shared(np.zeros((), "float32"), name="theta")
    y = gc.placeholder("y", (None,))
    nll = gc.nn.losses.binary_crossentropy(gc.broadcast_to(theta, (7,)), y)
    opt = optim.SGD(1.0)
    step = gc.function([y], nll, updates=opt.updates(nll, [theta]), backend="c")
    tosses = np.array([1, 1, 1, 1, 0, 0, 0], "float32")
    for _ in range(300):
        step(tosses)
    p = 1 / (1 + np.exp(-theta.get_value()))
    assert abs(p - 4 / 7) < 1e-4


def test_linear_regression_by_gradient_descent_matches_the_closed_form():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)).astype("float32")
    y = (X @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.1 * rng.normal(size=200)).astype("float32")
    model = Sequential([Dense(1, seed=0)], input_shape=(3,))
    train.fit(model, X, y[:, None], loss="mse", optimizer=optim.SGD(0.1), epochs=300, batch_size=200,
              metrics=(), verbose=False)
    A = np.hstack([X, np.ones((200, 1))]).astype("float64")
    closed = np.linalg.lstsq(A, y.astype("float64"), rcond=None)[0]
    got = np.concatenate([model.layers[0].kernel.get_value()[:, 0], model.layers[0].bias.get_value()])
    np.testing.assert_allclose(got, closed, atol=2e-3)


def test_linear_autoencoder_decoder_spans_the_pca_subspace():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    X = (rng.normal(size=(500, 6)) * np.array([3.0, 2.0, 0.3, 0.2, 0.1, 0.05])) @ basis.T
    X = (X - X.mean(0)).astype("float32")
    model = Sequential([Dense(2, use_bias=False, seed=1), Dense(6, use_bias=False, seed=2)], input_shape=(6,))
    train.fit(model, X, X, loss="mse", optimizer=optim.Adam(0.01), epochs=300, batch_size=100, metrics=(),
              verbose=False, backend="c")
    decoder = model.layers[1].kernel.get_value().T      # (6, 2): columns span the learned subspace
    pca = np.linalg.svd(X, full_matrices=False)[2][:2].T  # top-2 principal directions
    q = np.linalg.qr(decoder)[0]
    cosines = np.linalg.svd(q.T @ pca)[1]                # cosines of the principal angles
    assert cosines.min() > 0.999


# -- the fit loop ------------------------------------------------------------------------------


def _blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[2, 0], [-2, 0], [0, 2.5]], "float32")
    y = rng.integers(0, 3, n).astype("int32")
    return (centers[y] + rng.normal(size=(n, 2))).astype("float32"), y


def test_fit_history_validation_and_plot(tmp_path):
    x, y = _blobs()
    model = Sequential([Dense(16, activation="relu", seed=1), Dense(3, seed=2)], input_shape=(2,))
    plot = str(tmp_path / "hist.png")
    hist = train.fit(model, x[:240], y[:240], validation_data=(x[240:], y[240:]), epochs=8, batch_size=32,
                     optimizer=optim.Adam(0.05), verbose=False, plot=plot)
    assert set(hist) >= {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_time"}
    assert len(hist["loss"]) == 8 and hist["loss"][-1] < hist["loss"][0]
    assert hist["val_accuracy"][-1] > 0.8
    assert open(plot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_early_stopping_restores_the_best_weights():
    x, y = _blobs()
    model = Sequential([Dense(3, seed=1)], input_shape=(2,))
    stop = train.EarlyStopping(monitor="val_loss", patience=2)
    # a learning rate this large diverges after the first epochs, so val_loss gets worse
    hist = train.fit(model, x[:240], y[:240], validation_data=(x[240:], y[240:]), epochs=50, batch_size=16,
                     optimizer=optim.SGD(5.0), callbacks=[stop], verbose=False)
    assert stop.stopped_epoch is not None and len(hist["loss"]) < 50
    best = min(hist["val_loss"])
    assert hist["val_loss"][stop.best_epoch] == best
    assert abs(hist.trainer.evaluate(x[240:], y[240:])["loss"] - best) < 1e-4


def test_learning_rate_schedule_changes_the_rate_without_recompiling():
    x, y = _blobs()
    model = Sequential([Dense(3, seed=1)], input_shape=(2,))
    opt = optim.SGD(0.1)
    seen = []

    class Spy(train.Callback):
        def on_epoch_end(self, epoch, logs, trainer):
            seen.append((float(trainer.optimizer.lr.get_value()), trainer.train_fn))

    train.fit(model, x, y, optimizer=opt, epochs=3, callbacks=[train.LearningRateScheduler(lambda e: 0.1 / (e + 1)),
                                                                Spy()], verbose=False)
    np.testing.assert_allclose([s[0] for s in seen], [0.1, 0.05, 0.1 / 3], rtol=1e-6)
    assert seen[0][1] is seen[1][1] is seen[2][1]


def test_resume_from_checkpoint_continues_where_training_stopped(tmp_path):
    x, y = _blobs()
    path = str(tmp_path / "ck.npz")

    def run(epochs, resume):
        # checkpoints match variables by name: a new process numbers layers the same way; here
        # (one process) the names are given explicitly
        model = Sequential([Dense(8, activation="relu", seed=1, name="hidden"), Dense(3, seed=2, name="out")],
                           input_shape=(2,))
        train.fit(model, x, y, optimizer=optim.Adam(0.01), epochs=epochs, batch_size=32, verbose=False,
                  callbacks=[train.ModelCheckpoint(path)], resume_from=path if resume else None)
        return [p.get_value() for p in model.params]

    full = run(6, resume=False)
    os.remove(path)
    run(3, resume=False)           # "interrupted" after 3 epochs (the checkpoint says epoch 3)
    resumed = run(6, resume=True)  # a new process would do the same: rebuild, then resume
    for a, b in zip(full, resumed):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fit_rejects_bad_input():
    model = Sequential([Dense(3, seed=1)], input_shape=(2,))
    with pytest.raises(ValueError, match="x has 4 samples but y has 3"):
        train.fit(model, np.zeros((4, 2), "float32"), np.zeros(3, "int32"), verbose=False)
    with pytest.raises(ValueError, match="unknown loss"):
        train.fit(model, np.zeros((4, 2), "float32"), np.zeros(4, "int32"), loss="nope", verbose=False)
