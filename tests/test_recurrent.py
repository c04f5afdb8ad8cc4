"""Recurrent layers against PyTorch with the same weights (outputs and every gradient), and
their Keras behaviour: return_sequences/return_state, go_backwards, initial_state, masking,
dropout masks, Bidirectional. Each runs on ref and C."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("backend")
RNG = np.random.default_rng(0)
B, T, D, H = 3, 5, 4, 6


def _graphc_run(layer, xv, extra_outputs=()):
    x = gc.placeholder("x", (None, None, D))
    y = layer(x)
    loss = gc.sum(y * gc.constant(np.linspace(-1, 1, H, dtype="float32")))
    grads = gc.grad(loss, [x, *layer.params])
    f = gc.function([x], [y, *grads])
    return f(xv)


def _torch_grads(module, xv, hs):
    w = torch.linspace(-1, 1, H)
    x = torch.tensor(xv, requires_grad=True)
    out, _ = module(x)
    y = out[:, -1] if not hs else out
    (y * w).sum().backward()
    return y.detach().numpy(), x.grad.numpy()


def _torch_lstm_like(layer, suffix="", module=None):
    """A torch.nn.LSTM holding `layer`'s weights (Keras' layout is the transpose of PyTorch's;
    both order the gates i, f, g/c, o; Keras has one bias)."""
    m = module if module is not None else torch.nn.LSTM(D, H, batch_first=True)
    with torch.no_grad():
        getattr(m, "weight_ih_l0" + suffix).copy_(torch.tensor(layer.kernel.get_value().T))
        getattr(m, "weight_hh_l0" + suffix).copy_(torch.tensor(layer.recurrent_kernel.get_value().T))
        getattr(m, "bias_ih_l0" + suffix).copy_(torch.tensor(layer.bias.get_value()))
        getattr(m, "bias_hh_l0" + suffix).zero_()
    return m


def _close(a, b, what):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=what)


def test_lstm_matches_torch_outputs_and_gradients():
    layer = nn.LSTM(H, seed=1)
    xv = RNG.normal(size=(B, T, D)).astype("float32")
    y, gx, gk, gr, gb = _graphc_run(layer, xv)
    m = _torch_lstm_like(layer)
    ty, tgx = _torch_grads(m, xv, False)
    _close(y, ty, "output")
    _close(gx, tgx, "input gradient")
    _close(gk, m.weight_ih_l0.grad.numpy().T, "kernel gradient")
    _close(gr, m.weight_hh_l0.grad.numpy().T, "recurrent kernel gradient")
    _close(gb, m.bias_ih_l0.grad.numpy(), "bias gradient")


def _keras_to_torch_gru(a, H):
    z, r, h = a[..., :H], a[..., H:2 * H], a[..., 2 * H:]
    return np.concatenate([r, z, h], axis=-1)  # PyTorch orders the gates r, z, n


def test_gru_matches_torch_outputs_and_gradients():
    layer = nn.GRU(H, return_sequences=True, seed=2, bias_initializer="uniform")
    xv = RNG.normal(size=(B, T, D)).astype("float32")
    y, gx, gk, gr, gb = _graphc_run(layer, xv)
    m = torch.nn.GRU(D, H, batch_first=True)
    bias = layer.bias.get_value()
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.tensor(_keras_to_torch_gru(layer.kernel.get_value(), H).T))
        m.weight_hh_l0.copy_(torch.tensor(_keras_to_torch_gru(layer.recurrent_kernel.get_value(), H).T))
        m.bias_ih_l0.copy_(torch.tensor(_keras_to_torch_gru(bias[0], H)))
        m.bias_hh_l0.copy_(torch.tensor(_keras_to_torch_gru(bias[1], H)))
    ty, tgx = _torch_grads(m, xv, True)
    _close(y, ty, "output")
    _close(gx, tgx, "input gradient")
    _close(gk, _keras_to_torch_gru(m.weight_ih_l0.grad.numpy().T, H), "kernel gradient")
    _close(gr, _keras_to_torch_gru(m.weight_hh_l0.grad.numpy().T, H), "recurrent kernel gradient")
    tgb = np.stack([_keras_to_torch_gru(m.bias_ih_l0.grad.numpy(), H),
                    _keras_to_torch_gru(m.bias_hh_l0.grad.numpy(), H)])
    _close(gb, tgb, "bias gradient")


def test_simple_rnn_matches_torch():
    layer = nn.SimpleRNN(H, return_sequences=True, seed=3)
    xv = RNG.normal(size=(B, T, D)).astype("float32")
    y, gx, gk, gr, gb = _graphc_run(layer, xv)
    m = torch.nn.RNN(D, H, batch_first=True)
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.tensor(layer.kernel.get_value().T))
        m.weight_hh_l0.copy_(torch.tensor(layer.recurrent_kernel.get_value().T))
        m.bias_ih_l0.copy_(torch.tensor(layer.bias.get_value()))
        m.bias_hh_l0.zero_()
    ty, tgx = _torch_grads(m, xv, True)
    _close(y, ty, "output")
    _close(gx, tgx, "input gradient")
    _close(gr, m.weight_hh_l0.grad.numpy().T, "recurrent kernel gradient")


def test_bidirectional_lstm_matches_torch():
    fwd = nn.LSTM(H, return_sequences=True, seed=4)
    layer = nn.Bidirectional(fwd)
    x = gc.placeholder("x", (None, None, D))
    y = layer(x)
    assert y.shape == (None, None, 2 * H)
    xv = RNG.normal(size=(B, T, D)).astype("float32")
    got = gc.function([x], y)(xv)
    m = torch.nn.LSTM(D, H, batch_first=True, bidirectional=True)
    for suffix, lay in (("", layer.forward_layer), ("_reverse", layer.backward_layer)):
        _torch_lstm_like(lay, suffix, m)
    with torch.no_grad():
        want, _ = m(torch.tensor(xv))
    _close(got, want.numpy(), "bidirectional output")


def test_return_state_initial_state_and_go_backwards():
    layer = nn.LSTM(H, return_sequences=True, return_state=True, go_backwards=True, seed=5)
    x = gc.placeholder("x", (None, None, D))
    h0, c0 = gc.placeholder("h0", (None, H)), gc.placeholder("c0", (None, H))
    seq, h, c = layer(x, initial_state=[h0, c0])
    xv = RNG.normal(size=(B, T, D)).astype("float32")
    hv, cv = RNG.normal(size=(B, H)).astype("float32"), RNG.normal(size=(B, H)).astype("float32")
    s, hh, cc = gc.function([x, h0, c0], [seq, h, c])(xv, hv, cv)
    m = _torch_lstm_like(layer)
    with torch.no_grad():
        # go_backwards: the sequence is read from the end and the outputs stay in that order
        out, (th, tc) = m(torch.tensor(xv[:, ::-1].copy()), (torch.tensor(hv)[None], torch.tensor(cv)[None]))
    _close(s, out.numpy(), "sequence")
    _close(hh, th[0].numpy(), "h")
    _close(cc, tc[0].numpy(), "c")
    with pytest.raises(ValueError, match="2 tensor"):
        layer(x, initial_state=[h0])


def test_masking_carries_the_state_through_padding():
    emb = nn.Embedding(10, D, mask_zero=True, seed=6)
    rnn = nn.GRU(H, seed=7)
    ids = gc.placeholder("ids", (None, None), "int32")
    last = rnn(emb(ids))
    f = gc.function([ids], last)
    seq = np.array([[3, 5, 2, 0, 0], [4, 1, 0, 0, 0]], "int32")
    trimmed = [gc.function([ids], last)(seq[i:i + 1, :n]) for i, n in ((0, 3), (1, 2))]
    got = f(seq)
    np.testing.assert_allclose(got[0], trimmed[0][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], trimmed[1][0], rtol=1e-5, atol=1e-6)


def test_dropout_masks_are_per_sequence_and_only_in_training():
    layer = nn.SimpleRNN(H, dropout=0.5, recurrent_dropout=0.5, return_sequences=True, seed=8)
    x = gc.placeholder("x", (None, None, D))
    train, infer = layer(x, training=True), layer(x, training=False)
    xv = RNG.normal(size=(B, T, D)).astype("float32")
    f_train, f_infer = gc.function([x], train), gc.function([x], infer)
    a, b = f_train(xv), f_train(xv)
    assert not np.allclose(a, b)  # fresh masks each call
    np.testing.assert_array_equal(f_infer(xv), f_infer(xv))
    assert not np.allclose(a, f_infer(xv))


def test_dense_acts_on_the_last_axis_of_a_sequence():
    seq = nn.LSTM(H, return_sequences=True, seed=9)
    dense = nn.Dense(2, seed=10)
    x = gc.placeholder("x", (None, None, D))
    y = dense(seq(x))
    assert y.shape == (None, None, 2)
    xv = RNG.normal(size=(B, T, D)).astype("float32")
    hs = gc.function([x], seq(x))(xv)
    np.testing.assert_allclose(gc.function([x], y)(xv), hs @ dense.kernel.get_value() + dense.bias.get_value(),
                               rtol=1e-5, atol=1e-6)


def test_argument_errors():
    with pytest.raises(ValueError, match="units"):
        nn.LSTM(0)
    with pytest.raises(ValueError, match="dropout"):
        nn.GRU(4, dropout=1.5)
    with pytest.raises(gc.ShapeError, match="batch, time, features"):
        nn.SimpleRNN(4)(gc.placeholder("x", (None, 3)))
    with pytest.raises(TypeError, match="recurrent layer"):
        nn.Bidirectional(nn.Dense(3))


def test_recurrent_examples_train_a_few_steps(tmp_path):
    """The examples' models: the loss falls within a few steps (the slow tests train them fully)."""
    import importlib.util
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("adding", os.path.join(root, "examples", "adding_problem.py"))
    adding = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(adding)
    x, y = adding.adding_data(64, 12, np.random.default_rng(0))
    model = nn.Sequential([nn.LSTM(8, seed=1), nn.Dense(1, seed=2)], input_shape=(12, 2))
    history = gc.train.fit(model, x, y, loss="mse", metrics=(), optimizer=gc.optim.Adam(1e-2), epochs=8,
                           batch_size=16, verbose=0)
    assert history["loss"][-1] < 0.7 * history["loss"][0]
