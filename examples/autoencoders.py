"""Autoencoders on MNIST-5k (4000 train / 1000 test) beside PCA with the same code size.

    .venv/bin/python examples/autoencoders.py [--kinds undercomplete,sparse,denoising,contractive,conv]
                                              [--epochs 30] [--out autoencoders]

- undercomplete: 784-256-32-256-784, trained with ``fit(model, x, loss="mse")`` (no labels);
- sparse: the same with an L1 penalty on the code;
- denoising: masking (25% of the pixels) and Gaussian noise (std 0.2) drawn inside the compiled
  step with `gc.random`, the loss against the clean input;
- contractive: a one-layer sigmoid encoder 784-32 with the penalty ``||J||_F^2`` of its Jacobian,
  in closed form ``sum_j (h_j (1 - h_j))^2 sum_i W_ij^2`` (tested against autodiff), and a
  linear decoder: with a sigmoid output layer the sigmoid code saturated within an epoch (the
  penalty went to 0 even with weight 0) and the reconstruction sat at the mean image, MSE 0.067;
- conv: Conv2D down to 32x7x7, a 32-d code, Conv2DTranspose back up.
Reports test MSE per pixel beside PCA-32 and writes <out>.png (inputs, corrupted inputs,
reconstructions).
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
from graphc.nn import Conv2D, Conv2DTranspose, Dense, Flatten, Input, Model, Reshape
from graphc.nn.losses import mse

CODE = 32


def pca_mse(x_train: np.ndarray, x_test: np.ndarray, k: int = CODE) -> float:
    """Test MSE per pixel of the best rank-k affine reconstruction fitted on the training set."""
    mean = x_train.mean(0)
    _, _, vt = np.linalg.svd(x_train - mean, full_matrices=False)
    v = vt[:k].T
    rec = (x_test - mean) @ v @ v.T + mean
    return float(np.mean((rec - x_test) ** 2))


def dense_autoencoder(seed: int = 0, code_activation=None) -> tuple[Model, Model, Model]:
    """(autoencoder, encoder, decoder): 784-256-32-256-784, sigmoid outputs."""
    x = Input((784,), name="ae_x")
    code = Dense(CODE, activation=code_activation, seed=seed + 2)(Dense(256, activation="relu", seed=seed + 1)(x))
    encoder = Model(x, code, name="encoder")
    z = Input((CODE,), name="ae_z")
    out = Dense(784, activation="sigmoid", seed=seed + 4)(Dense(256, activation="relu", seed=seed + 3)(z))
    decoder = Model(z, out, name="decoder")
    xa = Input((784,), name="ae_in")
    return Model(xa, decoder(encoder(xa))), encoder, decoder


def corrupt(x: gc.Var, seed: int, drop: float = 0.25, std: float = 0.2) -> gc.Var:
    """Masking noise and additive Gaussian noise, fresh at every call of the compiled step."""
    keep = gc.random.bernoulli(1.0 - drop, like=x, seed=seed)
    return x * keep + gc.random.normal(like=x, seed=seed + 1, std=std)


def contractive_penalty(h: gc.Var, kernel: gc.Var) -> gc.Var:
    """``mean_n ||d h_n / d x_n||_F^2`` for ``h = sigmoid(x @ W + b)``, in closed form."""
    return gc.mean(gc.sum(gc.square(h * (1.0 - h)) * gc.sum(gc.square(kernel), 0), 1))


def conv_autoencoder(seed: int = 0) -> Model:
    x = Input((1, 28, 28), name="cae_x")
    h = Conv2D(16, 3, strides=2, padding="same", activation="relu", seed=seed + 1)(x)
    h = Conv2D(32, 3, strides=2, padding="same", activation="relu", seed=seed + 2)(h)
    code = Dense(CODE, seed=seed + 3)(Flatten()(h))
    h = Reshape((32, 7, 7))(Dense(32 * 7 * 7, activation="relu", seed=seed + 4)(code))
    h = Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu", seed=seed + 5)(h)
    return Model(x, Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid", seed=seed + 6)(h))


def train(kind: str, ds, epochs: int, seed: int = 0, batch: int = 64, verbose: int = 0) -> dict:
    """Train one kind; returns test MSE, wall time, a reconstruction function and its corruption."""
    xtr, xte = np.asarray(ds.x_train), np.asarray(ds.x_test)
    kw = dict(epochs=epochs, batch_size=batch, seed=seed, verbose=verbose)
    corrupted = None
    t0 = time.perf_counter()
    if kind == "undercomplete":
        model, _, _ = dense_autoencoder(seed)
        gc.train.fit(model, xtr, loss="mse", optimizer=gc.optim.Adam(1e-3), **kw)
    elif kind == "sparse":
        model, encoder, decoder = dense_autoencoder(seed, code_activation="relu")

        def build(x, y, training):
            code = encoder(x)
            rec = mse(decoder(code), x)
            l1 = gc.mean(gc.sum(gc.abs(code), 1))
            return {"loss": rec + 1e-4 * l1, "mse": rec, "code_l1": l1}

        gc.train.fit(None, xtr, steps=[gc.train.Step(build, [model], gc.optim.Adam(1e-3), name="sparse")], **kw)
    elif kind == "denoising":
        model, _, _ = dense_autoencoder(seed)

        def build(x, y, training):
            return {"loss": mse(model(corrupt(x, seed + 50)), x)}

        gc.train.fit(None, xtr, steps=[gc.train.Step(build, [model], gc.optim.Adam(1e-3), name="dae")], **kw)
        xc = gc.placeholder("xc", (None, 784))
        corrupted = gc.function([xc], corrupt(xc, seed + 99))(xte[:10])
    elif kind == "contractive":
        x = Input((784,), name="cae_in")
        enc_layer = Dense(CODE, activation="sigmoid", seed=seed + 1)
        model = Model(x, Dense(784, seed=seed + 2)(enc_layer(x)))  # linear: see the docstring

        def build(xv, y, training):
            h = enc_layer(xv)
            rec = mse(model(xv), xv)
            pen = contractive_penalty(h, enc_layer.kernel)
            return {"loss": rec + 1e-4 * pen, "mse": rec, "jacobian_fro2": pen}

        gc.train.fit(None, xtr, steps=[gc.train.Step(build, [model], gc.optim.Adam(3e-3), name="cae")], **kw)
    elif kind == "conv":
        model = conv_autoencoder(seed)
        xtr, xte = xtr.reshape(-1, 1, 28, 28), xte.reshape(-1, 1, 28, 28)
        gc.train.fit(model, xtr, loss="mse", optimizer=gc.optim.Adam(2e-3), **kw)
    else:
        raise ValueError(f"unknown autoencoder kind {kind!r}")
    wall = time.perf_counter() - t0
    xin = gc.placeholder("xin", (None, *xte.shape[1:]))
    rec_fn = gc.function([xin], model(xin))
    rec = np.concatenate([rec_fn(xte[s:s + 250]) for s in range(0, len(xte), 250)])
    return {"kind": kind, "test_mse": float(np.mean((rec - xte) ** 2)), "wall_s": wall,
            "recon": rec[:10].reshape(10, 28, 28),
            "corrupted": None if corrupted is None else corrupted.reshape(-1, 28, 28)}


def plot(results: list, inputs: np.ndarray, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("input", inputs)]
    for r in results:
        if r["corrupted"] is not None:
            rows.append((f"{r['kind']} input", r["corrupted"]))
        rows.append((f"{r['kind']} ({r['test_mse']:.4f})", r["recon"]))
    fig, axes = plt.subplots(len(rows), 10, figsize=(10, 1.1 * len(rows)), squeeze=False)
    for i, (label, ims) in enumerate(rows):
        for j in range(10):
            axes[i][j].imshow(np.clip(ims[j], 0, 1), cmap="gray_r", vmin=0, vmax=1)
            axes[i][j].axis("off")
        axes[i][0].set_title(label, fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", default="undercomplete,sparse,denoising,contractive,conv")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--conv-epochs", type=int, default=30)  # leaves its mean-image plateau after ~4
    p.add_argument("--out", default="autoencoders")
    args = p.parse_args(argv)
    ds = gc.data.load_mnist5k()
    base = pca_mse(np.asarray(ds.x_train), np.asarray(ds.x_test))
    print(f"PCA-{CODE}: test MSE {base:.5f}")
    results = []
    for kind in args.kinds.split(","):
        r = train(kind, ds, args.conv_epochs if kind == "conv" else args.epochs)
        r["vs_pca"] = 1 - r["test_mse"] / base
        results.append(r)
        print(f"{kind:13s}: test MSE {r['test_mse']:.5f} ({100 * r['vs_pca']:+.1f}% below PCA-{CODE}), "
              f"{r['wall_s']:.1f} s")
    print(f"wrote {plot(results, np.asarray(ds.x_test[:10]).reshape(10, 28, 28), args.out + '.png')}")
    return results


if __name__ == "__main__":
    main()
