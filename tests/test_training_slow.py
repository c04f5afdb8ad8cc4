"""Long training runs (make test-slow): accuracy targets from the issues, on real datasets."""

from __future__ import annotations

import time

import pytest

import graphc as gc
from graphc.nn import Dense, Sequential

pytestmark = pytest.mark.slow


def test_mlp_reaches_97_percent_on_digits():
    ds = gc.data.load_digits()
    model = Sequential([Dense(128, activation="relu", seed=1), Dense(10, seed=2)], input_shape=(64,))
    hist = gc.train.fit(model, ds.x_train, ds.y_train, optimizer=gc.optim.Adam(1e-3), epochs=60, batch_size=32,
                        backend="c", verbose=False)
    acc = hist.trainer.evaluate(ds.x_test, ds.y_test)["accuracy"]
    print(f"digits test accuracy {acc:.4f}")
    assert acc >= 0.97


def test_mlp_reaches_91_percent_on_mnist5k_faster_than_the_pytorch_twin():
    """784-256-10, Adam, 20 epochs, trained on 4000 and tested on 1000. The PyTorch twin in the
    issue reached 91.9% in 1.5 s on this machine."""
    ds = gc.data.load_mnist5k()
    model = Sequential([Dense(256, activation="relu", seed=1), Dense(10, seed=2)], input_shape=(784,))
    t0 = time.perf_counter()
    hist = gc.train.fit(model, ds.x_train, ds.y_train, optimizer=gc.optim.Adam(1e-3), epochs=20, batch_size=64,
                        backend="c", verbose=False)
    seconds = time.perf_counter() - t0  # compile (cached after the first run) + 20 epochs
    acc = hist.trainer.evaluate(ds.x_test, ds.y_test)["accuracy"]
    print(f"MNIST-5k test accuracy {acc:.4f} in {seconds:.2f} s (epochs {sum(hist['epoch_time']):.2f} s)")
    assert acc >= 0.91


def test_lenet_example_reaches_95_percent_on_mnist5k(tmp_path, capsys):
    """examples/cnn_mnist.py: LeNet-5 (conv 6@5x5 - pool - conv 16@5x5 - pool - 120 - 84 - 10), Adam,
    15 epochs, batch 64, trained on 4000 and tested on 1000. The PyTorch twin in the issue reached
    96.0% in 4.1 s on this machine."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "cnn_mnist.py")
    spec = importlib.util.spec_from_file_location("cnn_mnist_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    png = tmp_path / "filters.png"
    result = example.main(["--epochs", "15", "--filters", str(png)])
    with capsys.disabled():
        print(f"\nLeNet on MNIST-5k: test accuracy {result['accuracy']:.4f}, training {result['train_seconds']:.2f} s "
              f"(+ compile {result['compile_seconds']:.2f} s)")
    assert result["accuracy"] >= 0.95
    assert png.read_bytes()[:4] == b"\x89PNG"


def _example(name):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"{name}_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bidirectional_gru_reaches_88_percent_on_mnist1d(tmp_path, capsys, monkeypatch):
    """examples/rnn_mnist1d.py with the MNIST-1D paper's settings (it reports 91%), on the C
    backend as a user runs it (the suite's default backend is ref)."""
    monkeypatch.setenv("GRAPHC_BACKEND", "c")
    png = tmp_path / "rnn.png"
    result = _example("rnn_mnist1d").main(["--steps", "4000", "--plot", str(png)])
    with capsys.disabled():
        print(f"\nGRU on MNIST-1D: {result['accuracy']:.4f} after {result['steps']} steps in {result['seconds']:.1f} s")
    assert result["accuracy"] >= 0.88
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_lstm_solves_the_adding_problem(tmp_path, monkeypatch):
    """T = 100: far below the 0.167 MSE of predicting the mean (C backend, as a user runs it)."""
    monkeypatch.setenv("GRAPHC_BACKEND", "c")
    result = _example("adding_problem").main(["--steps", "2000", "--plot", str(tmp_path / "adding.png")])
    assert result["mse"] < 0.05 < result["baseline"]


def test_char_lstm_learns_python_docs_and_samples_text(tmp_path, monkeypatch):
    """examples/char_rnn.py, default 600 steps: the cross-entropy falls from about ln(vocab)
    (4.6 nats) to well under 2, and the 400 sampled characters (one compiled scan) look like
    text: mostly letters and spaces. C backend, as a user runs it."""
    monkeypatch.setenv("GRAPHC_BACKEND", "c")
    png = tmp_path / "char.png"
    result = _example("char_rnn").main(["--plot", str(png)])
    assert result["first_loss"] > 3.5 and result["last_loss"] < 1.9, result
    sample = result["sample"]
    assert len(sample) == 401
    assert sum(ch.isalpha() or ch == " " for ch in sample) / len(sample) > 0.6, sample
    assert png.read_bytes()[:4] == b"\x89PNG"
