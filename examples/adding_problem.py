"""The adding problem (Hochreiter & Schmidhuber): an LSTM must add the two numbers marked in a
sequence of T = 100 steps. Predicting the mean sum (1.0) gives an MSE of 1/6 = 0.167; a model
below it has learnt to carry the marked values across the sequence.

    .venv/bin/python examples/adding_problem.py [--steps 3000] [--plot adding_problem.png]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc
from graphc.nn import LSTM, Dense, Sequential


def adding_data(n: int, steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, steps, 2) inputs: a value in [0, 1) and a 0/1 marker; targets: the sum of the two marked values."""
    values = rng.uniform(0, 1, size=(n, steps)).astype("float32")
    marks = np.zeros((n, steps), "float32")
    first = rng.integers(0, steps // 2, size=n)
    second = rng.integers(steps // 2, steps, size=n)
    marks[np.arange(n), first] = 1
    marks[np.arange(n), second] = 1
    x = np.stack([values, marks], axis=-1)
    y = (values * marks).sum(axis=1, keepdims=True).astype("float32")
    return x, y


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps at batch 50")
    p.add_argument("--length", type=int, default=100, help="sequence length T")
    p.add_argument("--plot", default="adding_problem.png")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    x_train, y_train = adding_data(10000, args.length, rng)
    x_test, y_test = adding_data(1000, args.length, rng)
    model = Sequential([LSTM(32), Dense(1)], input_shape=(args.length, 2))
    epochs = max(1, round(args.steps * 50 / len(x_train)))
    start = time.perf_counter()
    history = gc.train.fit(model, x_train, y_train, loss="mse", metrics=(), optimizer=gc.optim.Adam(1e-2),
                           epochs=epochs, batch_size=50, validation_data=(x_test, y_test), plot=args.plot,
                           verbose=2)
    mse = history.trainer.evaluate(x_test, y_test)["loss"]
    baseline = float(np.var(y_test))
    seconds = time.perf_counter() - start
    print(f"test MSE {mse:.4f} (predicting the mean: {baseline:.4f}) after {epochs} epochs in {seconds:.1f} s")
    print(f"wrote {args.plot}")
    return {"mse": mse, "baseline": baseline, "seconds": seconds}


if __name__ == "__main__":
    main()
