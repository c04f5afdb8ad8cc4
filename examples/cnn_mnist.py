"""Train a LeNet-5-style convolutional network on MNIST-5k (4000 train / 1000 test images) with
graphc's C backend, and save the first layer's filters as a PNG.

    .venv/bin/python examples/cnn_mnist.py [--epochs 15] [--filters cnn_filters.png]

Images are NCHW (N, 1, 28, 28). Each minibatch step (convolutions, pooling, dense layers,
backward pass and Adam update) is one call into generated C.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import graphc as gc
from graphc.nn import Conv2D, Dense, Flatten, MaxPool2D, Sequential


def lenet5(seed: int = 0) -> Sequential:
    """LeNet-5 with ReLU and max pooling: 6@5x5 (padding "same") - pool - 16@5x5 - pool - 120 - 84 - 10."""
    return Sequential([
        Conv2D(6, 5, padding="same", activation="relu", kernel_initializer="he_uniform", seed=seed + 1),
        MaxPool2D(2),
        Conv2D(16, 5, activation="relu", kernel_initializer="he_uniform", seed=seed + 2),
        MaxPool2D(2),
        Flatten(),
        Dense(120, activation="relu", kernel_initializer="he_uniform", seed=seed + 3),
        Dense(84, activation="relu", kernel_initializer="he_uniform", seed=seed + 4),
        Dense(10, seed=seed + 5),                   # logits; the loss applies the softmax
    ], input_shape=(1, 28, 28))


def save_filters(kernel: np.ndarray, path: str) -> str:
    """A grid of the (O, 1, kh, kw) filters of a first conv layer, each on its own colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = kernel.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 1.9), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.imshow(kernel[i, 0], cmap="gray", interpolation="nearest")
        ax.set_title(f"filter {i}", fontsize=8)
        ax.axis("off")
    fig.suptitle("first convolution layer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--filters", default="cnn_filters.png", help="PNG of the first layer's filters")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    ds = gc.data.load_mnist5k(flatten=False)       # (N, 1, 28, 28), pixels in [0, 1], int32 labels
    model = lenet5(args.seed)
    model.summary()
    t0 = time.perf_counter()
    trainer = gc.train.Trainer(model, ds.x_train[:1], ds.y_train[:1], optimizer=gc.optim.Adam(args.lr),
                               backend="c")
    compile_s = time.perf_counter() - t0
    history = gc.train.fit(model, ds.x_train, ds.y_train, epochs=args.epochs, batch_size=args.batch_size,
                           seed=args.seed, trainer=trainer, verbose=2)
    test = trainer.evaluate(ds.x_test, ds.y_test)
    epoch_times = history["epoch_time"]
    print(f"test accuracy {test['accuracy']:.4f}, test loss {test['loss']:.4f}")
    print(f"compile {compile_s:.2f} s; training {sum(epoch_times):.2f} s for {len(epoch_times)} epochs, "
          f"median epoch time {1000 * float(np.median(epoch_times)):.0f} ms")
    print(f"wrote {save_filters(model.layers[0].kernel.get_value(), args.filters)}")
    return {"accuracy": test["accuracy"], "train_seconds": sum(epoch_times), "compile_seconds": compile_s}


if __name__ == "__main__":
    main(sys.argv[1:])
