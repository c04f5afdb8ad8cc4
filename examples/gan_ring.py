"""GANs on the ring of 8 Gaussians (radius 2, std 0.05): a vanilla GAN collapses, WGAN-GP covers.

    .venv/bin/python examples/gan_ring.py [--method both|vanilla|wgan-gp] [--seeds 5] [--out gan_ring]

Both are two `graphc.train.Step`s per batch that share the generator's and critic's weights,
with the noise drawn inside the compiled steps. The vanilla GAN uses the non-saturating
generator loss and Adam(beta1=0.5). WGAN-GP (Gulrajani et al. 2017) trains the critic
`critic_steps` times per generator step (the generator step has ``every=critic_steps``) with the
gradient penalty ``lambda * (|grad_x D(x_hat)| - 1)**2`` on random interpolates: the penalty is a
gradient, so the critic's step differentiates a gradient (second order), which graphc's
symbol-to-symbol `grad` gives for free. Quality (VEEGAN/PacGAN): of 2,500 samples a sample is
high quality within 3 std of its nearest mode; a mode is captured with at least 20 of them.
Writes <out>.png: samples over the modes at several points of training.
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
from graphc.nn import Dense, LeakyReLU, Sequential
from graphc.nn.losses import binary_crossentropy

RADIUS, STD, MODES = 2.0, 0.05, 8
CENTERS = RADIUS * np.stack([np.cos(2 * np.pi * np.arange(MODES) / MODES),
                             np.sin(2 * np.pi * np.arange(MODES) / MODES)], 1).astype("float32")


def ring_data(n: int, seed: int) -> np.ndarray:
    """`n` points from the ring: a uniform mode, then N(center, STD^2 I)."""
    rng = np.random.default_rng(seed)
    return (CENTERS[rng.integers(MODES, size=n)] + STD * rng.standard_normal((n, 2))).astype("float32")


def quality(samples: np.ndarray, min_count: int = 20) -> tuple[int, float]:
    """(modes captured, share of high-quality samples): high quality within 3 std of the nearest mode."""
    d = np.linalg.norm(samples[:, None, :] - CENTERS[None], axis=-1)
    near, hq = d.argmin(1), d.min(1) < 3 * STD
    counts = np.bincount(near[hq], minlength=MODES)
    return int((counts >= min_count).sum()), float(hq.mean())


def mlp(out: int, hidden: int, seed: int, in_dim: int, name: str) -> Sequential:
    return Sequential([Dense(hidden, seed=seed), LeakyReLU(0.2), Dense(hidden, seed=seed + 1), LeakyReLU(0.2),
                       Dense(out, seed=seed + 2)], input_shape=(in_dim,), name=name)


def make_steps(method: str, batch: int, seed: int, z_dim: int = 16, hidden: int = 128, critic_steps: int = 5,
               gp: float = 0.1):
    """The generator, the critic and the two Steps of `method` ("vanilla" or "wgan-gp")."""
    G = mlp(2, hidden, 100 * seed + 1, z_dim, f"G{seed}")
    D = mlp(1, hidden, 100 * seed + 11, 2, f"D{seed}")
    noise = gc.random.normal((batch, z_dim), seed=1000 + seed)
    if method == "vanilla":
        adam = dict(lr=1e-3, beta1=0.5)

        def d_build(x, y, training):
            fake = gc.stop_gradient(G(noise))
            real_logits, fake_logits = D(x), D(fake)
            loss = binary_crossentropy(real_logits, gc.constant(np.ones((batch, 1), "float32"))) \
                + binary_crossentropy(fake_logits, gc.constant(np.zeros((batch, 1), "float32")))
            return {"d_loss": loss}

        def g_build(x, y, training):  # non-saturating: maximise log D(G(z))
            return {"g_loss": binary_crossentropy(D(G(noise)), gc.constant(np.ones((batch, 1), "float32")))}

        every = 1
    elif method == "wgan-gp":
        adam = dict(lr=1e-3, beta1=0.5, beta2=0.9)
        u = gc.random.uniform((batch, 1), seed=2000 + seed)

        def d_build(x, y, training):
            fake = gc.stop_gradient(G(noise))
            x_hat = u * x + (1.0 - u) * fake
            gx = gc.grad(gc.sum(D(x_hat)), x_hat)  # per-sample input gradients (samples are independent)
            penalty = gc.mean(gc.square(gc.sqrt(gc.sum(gc.square(gx), 1) + 1e-12) - 1.0))
            w_dist = gc.mean(D(x)) - gc.mean(D(fake))
            return {"d_loss": -w_dist + gp * penalty, "w_dist": w_dist, "gp": penalty}

        def g_build(x, y, training):
            return {"g_loss": -gc.mean(D(G(noise)))}

        every = critic_steps
    else:
        raise ValueError(f"unknown method {method!r}: vanilla or wgan-gp")
    d_step = gc.train.Step(d_build, [D], gc.optim.Adam(**adam), name="D")
    g_step = gc.train.Step(g_build, [G], gc.optim.Adam(**adam), name="G", every=every)
    return G, D, [d_step, g_step]


def train(method: str, seed: int, epochs: int = 30, batch: int = 256, n: int = 256 * 50, snapshots=(),
          verbose: int = 0) -> dict:
    """Train one GAN; returns the final (modes, HQ share), samples at the `snapshots` epochs, time."""
    G, D, steps = make_steps(method, batch, seed)
    z = gc.placeholder("z", (None, 16))
    sample = gc.function([z], G(z))
    zs = np.random.default_rng(seed + 7).standard_normal((2500, 16)).astype("float32")
    shots = {}

    class Snap(gc.train.Callback):
        def on_epoch_end(self, epoch, logs, trainer):
            if epoch + 1 in snapshots:
                shots[epoch + 1] = sample(zs)

    t0 = time.perf_counter()
    hist = gc.train.fit(None, ring_data(n, seed), steps=steps, epochs=epochs, batch_size=batch, seed=seed,
                        verbose=verbose, callbacks=[Snap()])
    wall = time.perf_counter() - t0
    final = sample(zs)
    modes, hq = quality(final)
    return {"modes": modes, "hq": hq, "samples": final, "snapshots": shots, "wall_s": wall, "history": hist}


def plot(runs: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(runs)
    cols = max(len(r["snapshots"]) for r in runs.values())
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.4 * cols, 2.4 * len(rows)), squeeze=False)
    for i, name in enumerate(rows):
        for j, (ep, s) in enumerate(sorted(runs[name]["snapshots"].items())):
            ax = axes[i][j]
            ax.scatter(s[:, 0], s[:, 1], s=1, alpha=0.4)
            ax.scatter(CENTERS[:, 0], CENTERS[:, 1], s=12, c="red", marker="x")
            ax.set_xlim(-3, 3)
            ax.set_ylim(-3, 3)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}, epoch {ep}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="both", choices=["both", "vanilla", "wgan-gp"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=150)  # 50 batches of 256 per epoch
    p.add_argument("--out", default="gan_ring")
    args = p.parse_args(argv)
    methods = ["vanilla", "wgan-gp"] if args.method == "both" else [args.method]
    snaps = tuple(sorted({1, max(1, args.epochs // 4), max(1, args.epochs // 2), args.epochs}))
    results, shown = {}, {}
    for m in methods:
        results[m] = []
        for seed in range(args.seeds):
            r = train(m, seed, args.epochs, snapshots=snaps if seed == 0 else ())
            results[m].append(r)
            print(f"{m:8s} seed {seed}: {r['modes']}/8 modes, {100 * r['hq']:.1f}% high quality "
                  f"({r['wall_s']:.1f} s)")
        shown[m] = results[m][0]
        ok = sum(r["modes"] == 8 and r["hq"] >= 0.8 for r in results[m])
        print(f"{m}: all 8 modes with >= 80% high quality in {ok} of {args.seeds} seeds; "
              f"mean modes {np.mean([r['modes'] for r in results[m]]):.1f}, "
              f"mean HQ {100 * np.mean([r['hq'] for r in results[m]]):.1f}%")
    print(f"wrote {plot(shown, args.out + '.png')}")
    return results


if __name__ == "__main__":
    main()
