"""A variational autoencoder on MNIST-5k (4000 train / 1000 test), pytorch/examples' sizes.

    .venv/bin/python examples/vae_mnist.py [--epochs 20] [--latent 20] [--seed 0] [--init pytorch|glorot]
                                           [--out vae] [--no-plots]

Encoder 784-400-(20 mu, 20 log-variance), decoder 20-400-784 (Bernoulli logits), Adam 1e-3,
batch 128. The noise of the reparameterisation ``z = mu + exp(log_var / 2) * eps`` is drawn
inside the compiled step (`gc.random.normal`), so one training step is one native call. The
loss is the negative ELBO per image: Bernoulli NLL (binary cross-entropy from logits, summed
over the pixels) plus ``KL(q(z|x) || N(0, I))``. With ``--latent 2`` it also draws the latent
manifold. The layers start from PyTorch's ``nn.Linear`` initialisation (`linear_init`), as the
twin (benchmarks/vae_torch_twin.py) does: with Dense's Glorot default the test -ELBO was about
1.2 nats/image worse. Writes <out>_samples.png, <out>_reconstructions.png (and <out>_manifold.png).
"""

from __future__ import annotations

import os

# Small models: one BLAS thread. graphc's OpenMP pool and a threaded OpenBLAS on a shared 2-core
# machine stall each other (a 256x128 MLP step measured 10x slower; benchmarks/RESULTS.md).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time

import numpy as np

import graphc as gc
from graphc.nn import Dense, Input, Model
from graphc.nn.losses import binary_crossentropy, kl_normal


def linear_init(fan_in: int):
    """PyTorch's ``nn.Linear`` default for kernels and biases alike: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
    (its kaiming_uniform with a = sqrt(5)), as a graphc initializer ``(shape, rng) -> array``.

    >>> w = linear_init(784)((784, 400), 0)
    >>> w.shape, bool(abs(w).max() <= 1 / 28)
    ((784, 400), True)
    """
    bound = 1.0 / np.sqrt(fan_in)

    def init(shape, rng=None):
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        return rng.uniform(-bound, bound, tuple(shape)).astype("float32")

    return init


def make_vae(latent: int = 20, hidden: int = 400, seed: int = 0, init: str = "pytorch") -> tuple[Model, Model]:
    """The encoder ``x -> [mu, log_var]`` and the decoder ``z -> logits``, usable on their own.

    init: "pytorch" (`linear_init`, pytorch/examples' initialisation; 1.2 nats better than
    Glorot here, benchmarks/RESULTS.md) or "glorot" (Dense's default, zero biases)."""
    if init not in ("pytorch", "glorot"):
        raise ValueError(f"make_vae: init must be 'pytorch' or 'glorot', got {init!r}")

    def dense(units, fan_in, s, activation=None):
        if init == "glorot":
            return Dense(units, activation=activation, seed=s)
        return Dense(units, activation=activation, seed=s, kernel_initializer=linear_init(fan_in),
                     bias_initializer=linear_init(fan_in))

    x = Input((784,), name="vae_x")
    h = dense(hidden, 784, seed + 1, "relu")(x)
    encoder = Model(x, [dense(latent, hidden, seed + 2)(h), dense(latent, hidden, seed + 3)(h)], name="encoder")
    z = Input((latent,), name="vae_z")
    decoder = Model(z, dense(784, hidden, seed + 5)(dense(hidden, latent, seed + 4, "relu")(z)), name="decoder")
    return encoder, decoder


def negative_elbo(encoder: Model, decoder: Model, x: gc.Var, eps: gc.Var) -> dict:
    """Per-image means of the reconstruction NLL, the KL term and their sum ("loss"), in nats,
    for the noise `eps` (a Var shaped like mu)."""
    mu, log_var = encoder(x)
    z = mu + gc.exp(0.5 * log_var) * eps
    logits = decoder(z)
    nll = gc.mean(gc.sum(binary_crossentropy(logits, x, reduction="none"), -1))
    kl = kl_normal(mu, log_var, reduction="mean")
    return {"loss": nll + kl, "nll": nll, "kl": kl}


def vae_step(encoder: Model, decoder: Model, lr: float = 1e-3, seed: int = 0) -> gc.train.Step:
    """The training step: fresh noise at every call, one Adam update of both networks."""

    def build(x, y, training):
        mu, _ = encoder(x)
        return negative_elbo(encoder, decoder, x, gc.random.normal(like=mu, seed=seed + 11))

    return gc.train.Step(build, params=[encoder, decoder], optimizer=gc.optim.Adam(lr), name="vae")


def save_grid(images: np.ndarray, path: str, rows: int, title: str = "") -> str:
    """Tile (n, 28, 28) images into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    cols = -(-n // rows)
    canvas = np.ones((rows * 29, cols * 29))
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * 29:r * 29 + 28, c * 29:c * 29 + 28] = im
    fig = plt.figure(figsize=(cols * 0.45, rows * 0.45 + 0.4))
    plt.imshow(canvas, cmap="gray_r", vmin=0, vmax=1)
    plt.axis("off")
    plt.title(title, fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--latent", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default="pytorch", choices=["pytorch", "glorot"])
    p.add_argument("--out", default="vae")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)

    ds = gc.data.load_mnist5k()
    encoder, decoder = make_vae(args.latent, seed=args.seed, init=args.init)
    t0 = time.perf_counter()
    hist = gc.train.fit(None, ds.x_train, steps=[vae_step(encoder, decoder, seed=args.seed)], epochs=args.epochs,
                        batch_size=args.batch_size, seed=args.seed, verbose=2)
    wall = time.perf_counter() - t0
    test = hist.trainer.evaluate(ds.x_test)
    print(f"test negative ELBO {test['loss']:.2f} nats/image (NLL {test['nll']:.2f}, KL {test['kl']:.2f}); "
          f"train {hist['loss'][-1]:.2f}; {wall:.1f} s for {args.epochs} epochs")
    result = {"test_nelbo": test["loss"], "test_nll": test["nll"], "test_kl": test["kl"], "wall_s": wall,
              "history": hist}
    if not args.no_plots:
        # the trained halves on their own: the decoder on prior samples, the encoder's means
        z = gc.placeholder("z", (None, args.latent))
        decode = gc.function([z], gc.sigmoid(decoder(z)))
        x = gc.placeholder("x", (None, 784))
        mu_fn = gc.function([x], encoder(x)[0])
        prior = np.random.default_rng(args.seed).standard_normal((64, args.latent)).astype("float32")
        save_grid(decode(prior).reshape(-1, 28, 28), f"{args.out}_samples.png", 8, "samples from the prior")
        xs = ds.x_test[:16]
        recon = decode(mu_fn(xs))
        save_grid(np.concatenate([xs, recon]).reshape(-1, 28, 28), f"{args.out}_reconstructions.png", 2,
                  "test images (top) and reconstructions from the mean code (bottom)")
        if args.latent == 2:
            from statistics import NormalDist

            q = [NormalDist().inv_cdf(u) for u in np.linspace(0.05, 0.95, 15)]
            grid = np.array([[a, b] for b in q[::-1] for a in q], "float32")
            save_grid(decode(grid).reshape(-1, 28, 28), f"{args.out}_manifold.png", 15,
                      "decoder over the 2-D latent (Gaussian quantiles)")
        print(f"wrote {args.out}_samples.png, {args.out}_reconstructions.png"
              + (f", {args.out}_manifold.png" if args.latent == 2 else ""))
    return result


if __name__ == "__main__":
    main()
