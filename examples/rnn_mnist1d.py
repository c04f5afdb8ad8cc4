"""A bidirectional GRU on MNIST-1D (the dataset paper's recurrent baseline).

    .venv/bin/python examples/rnn_mnist1d.py [--steps 4000] [--plot rnn_mnist1d.png]

The paper's settings: a GRU with 6 hidden units read in both directions over the 40 samples of
each signal, Adam 1e-2, batch 100 (4000 train / 1000 test); it reports 91% test accuracy.
Each training step (forward, BPTT through both directions, Adam) is one native call: the time
loops run inside the generated C.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc
from graphc.nn import GRU, Bidirectional, Dense, Sequential


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4000, help="optimizer steps (batch 100: 40 per epoch)")
    p.add_argument("--plot", default="rnn_mnist1d.png")
    args = p.parse_args(argv)
    ds = gc.data.load_mnist1d()
    x_train, x_test = ds.x_train[:, :, None], ds.x_test[:, :, None]  # (batch, time=40, features=1)
    model = Sequential([Bidirectional(GRU(6)), Dense(10)], input_shape=(40, 1))
    model.summary()
    epochs = max(1, round(args.steps * 100 / len(x_train)))
    start = time.perf_counter()
    history = gc.train.fit(model, x_train, ds.y_train, loss="categorical_crossentropy",
                           optimizer=gc.optim.Adam(1e-2), epochs=epochs, batch_size=100,
                           validation_data=(x_test, ds.y_test), plot=args.plot, verbose=2)
    seconds = time.perf_counter() - start
    test = history.trainer.evaluate(x_test, ds.y_test)
    steps = epochs * int(np.ceil(len(x_train) / 100))
    print(f"test accuracy {test['accuracy']:.4f} after {steps} steps in {seconds:.1f} s (compile included)")
    print(f"wrote {args.plot}")
    return {"accuracy": test["accuracy"], "seconds": seconds, "steps": steps}


if __name__ == "__main__":
    main()
