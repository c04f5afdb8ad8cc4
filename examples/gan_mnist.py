"""A GAN on MNIST-5k digits (4000 training images), with a sample grid after every epoch.

    .venv/bin/python examples/gan_mnist.py [--epochs 10] [--arch mlp|dcgan] [--out gan_mnist]

mlp: generator 64-256-512-784 (sigmoid pixels), discriminator 784-512-256-1 with LeakyReLU(0.2).
dcgan (Radford et al. 2016, without batch normalisation): generator Dense 64 -> 64x7x7, then
Conv2DTranspose 4x4/2 to 32x14x14 (ReLU) and to 1x28x28 (sigmoid); discriminator Conv2D 4x4/2
to 32x14x14 and 64x7x7 (LeakyReLU 0.2), then Dense 1. Both use
the non-saturating generator loss, Adam(2e-4, beta1=0.5), noise drawn inside both compiled
steps. The two `graphc.train.Step`s share the networks' weights. Writes
<out>_epoch<k>.png with the same 64 noise vectors every epoch.
"""

from __future__ import annotations

import os

# Small models: one BLAS thread (see examples/gan_ring.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402

import numpy as np  # noqa: E402

import graphc as gc  # noqa: E402
from graphc.nn import Conv2D, Conv2DTranspose, Dense, Flatten, LeakyReLU, Reshape, Sequential  # noqa: E402
from graphc.nn.losses import binary_crossentropy  # noqa: E402

Z = 64


def make_gan(batch: int, seed: int = 0, arch: str = "mlp"):
    """Generator ``z -> (batch, 784)`` pixels, discriminator ``(batch, 784) -> logit`` and their two Steps."""
    if arch == "mlp":
        G = Sequential([Dense(256, activation="relu", seed=seed + 1), Dense(512, activation="relu", seed=seed + 2),
                        Dense(784, activation="sigmoid", seed=seed + 3)], input_shape=(Z,), name="G")
        D = Sequential([Dense(512, seed=seed + 4), LeakyReLU(0.2), Dense(256, seed=seed + 5), LeakyReLU(0.2),
                        Dense(1, seed=seed + 6)], input_shape=(784,), name="D")
    elif arch == "dcgan":
        G = Sequential([Dense(64 * 7 * 7, activation="relu", seed=seed + 1), Reshape((64, 7, 7)),
                        Conv2DTranspose(32, 4, strides=2, padding="same", activation="relu", seed=seed + 2),
                        Conv2DTranspose(1, 4, strides=2, padding="same", activation="sigmoid", seed=seed + 3),
                        Reshape((784,))], input_shape=(Z,), name="G")
        D = Sequential([Reshape((1, 28, 28)), Conv2D(32, 4, strides=2, padding="same", seed=seed + 4), LeakyReLU(0.2),
                        Conv2D(64, 4, strides=2, padding="same", seed=seed + 5), LeakyReLU(0.2), Flatten(),
                        Dense(1, seed=seed + 6)], input_shape=(784,), name="D")
    else:
        raise ValueError(f"unknown arch {arch!r}: mlp or dcgan")
    noise = gc.random.normal((batch, Z), seed=seed + 100)
    ones, zeros = gc.constant(np.ones((batch, 1), "float32")), gc.constant(np.zeros((batch, 1), "float32"))

    def d_build(x, y, training):
        fake = gc.stop_gradient(G(noise))
        real, fake_logits = D(x), D(fake)
        return {"d_loss": binary_crossentropy(real, ones) + binary_crossentropy(fake_logits, zeros),
                "d_real": gc.mean(gc.sigmoid(real)), "d_fake": gc.mean(gc.sigmoid(fake_logits))}

    def g_build(x, y, training):
        return {"g_loss": binary_crossentropy(D(G(noise)), ones)}

    steps = [gc.train.Step(d_build, [D], gc.optim.Adam(2e-4, beta1=0.5), name="D", validate=False),
             gc.train.Step(g_build, [G], gc.optim.Adam(2e-4, beta1=0.5), name="G", validate=False)]
    return G, D, steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--arch", default="mlp", choices=["mlp", "dcgan"])
    p.add_argument("--out", default="gan_mnist")
    args = p.parse_args(argv)
    from vae_mnist import save_grid

    ds = gc.data.load_mnist5k()
    n = len(ds.x_train) // args.batch_size * args.batch_size  # the noise has a static batch size
    G, D, steps = make_gan(args.batch_size, arch=args.arch)
    z = gc.placeholder("z", (None, Z))
    sample = gc.function([z], G(z))
    fixed = np.random.default_rng(0).standard_normal((64, Z)).astype("float32")

    class Grid(gc.train.Callback):
        def on_epoch_end(self, epoch, logs, trainer):
            save_grid(sample(fixed).reshape(-1, 28, 28), f"{args.out}_epoch{epoch + 1}.png", 8,
                      f"GAN samples after epoch {epoch + 1}")

    hist = gc.train.fit(None, ds.x_train[:n], steps=steps, epochs=args.epochs, batch_size=args.batch_size,
                        verbose=2, callbacks=[Grid()])
    print(f"wrote {args.out}_epoch1.png ... {args.out}_epoch{args.epochs}.png; "
          f"median epoch {np.median(hist['epoch_time']):.1f} s")
    return hist


if __name__ == "__main__":
    main()
