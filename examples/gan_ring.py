"""GANs on the ring of 8 Gaussians (radius 2, std 0.05): a vanilla GAN drops modes; gradient
penalties cover all of them.

    .venv/bin/python examples/gan_ring.py [--method vanilla,gp0,wgan-gp|all|unrolled] [--seeds 5]
                                          [--epochs N] [--out gan_ring]

Each method is two `graphc.train.Step`s per batch that share the generator's and critic's
weights, with the noise drawn inside the compiled steps, Adam(beta1=0.5) and a learning rate
that falls linearly to 0 over the last part of training (`LinearDecay`: the samples sharpen onto
the modes once the generator stops chasing the critic).

- vanilla: the non-saturating GAN (Goodfellow et al. 2014).
- gp0: the same plus a zero-centred gradient penalty ``lambda * |grad_x D(x_hat)|^2`` on random
  interpolates of real and fake points (Thanh-Tung et al. 2019; Mescheder et al.'s R1 is the
  same on real points only). The penalty is a gradient, so the critic's step is second order.
- wgan-gp: WGAN-GP (Gulrajani et al. 2017): 5 critic steps per generator step
  (``every=critic_steps``), the penalty ``lambda * (|grad_x D(x_hat)| - 1)^2``.
- unrolled: Metz et al. 2017: the generator's loss is taken against the critic `unroll` SGD
  steps ahead, as one symbolic expression (`unrolled`), so the generator differentiates through
  the critic's optimisation (each step is a gradient: second order, built by `gc.grad`).
  Tested against explicit SGD steps, but in the four settings tried it did worse than vanilla
  (the critic overpowers the generator) and a step costs 20x vanilla's: not in the default run.

Measured (benchmarks/RESULTS.md, 5 seeds): vanilla drops 1-4 modes in every seed; gp0 keeps all
8 with 84-87% high-quality samples in 5 of 5; WGAN-GP keeps all 8 with 78-80%.

Quality (VEEGAN/PacGAN): of 2,500 samples a sample is high quality within 3 std of its nearest
mode; a mode is captured with at least 20 of them. Prints one table row per seed and writes
<out>.png: samples over the modes at several points of training (seed 0 of each method).
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
from graphc.core import clone_replace
from graphc.nn import Dense, LeakyReLU, Sequential

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


def _bce(logits: gc.Var, target: float) -> gc.Var:
    """Mean binary cross-entropy against a constant label 1 or 0: mean softplus(-z) or softplus(z)."""
    return gc.mean(gc.softplus(-logits if target else logits))


def unrolled(loss: gc.Var, params: list, k: int, lr: float) -> list:
    """`params` after `k` SGD steps on `loss`, as expressions that keep their dependence on
    everything `loss` depends on (Metz et al. 2017): differentiating a function of the result
    differentiates through the k steps, each of which is a gradient (second order)."""
    cur = list(params)
    for _ in range(k):
        step_loss = loss if cur is params else clone_replace([loss], dict(zip(params, cur)))[0]
        grads = gc.grad(step_loss, cur)
        cur = [p - lr * g for p, g in zip(cur, grads)]
    return cur


def make_steps(method: str, batch: int, seed: int, z_dim: int = 16, hidden: int = 128, critic_steps: int = 5,
               gp: float = 0.1, lr: float = 1e-3, unroll: int = 5, unroll_lr: float = 1e-2):
    """The generator, the critic and the two Steps of `method` ("vanilla", "unrolled" or "wgan-gp")."""
    G = mlp(2, hidden, 100 * seed + 1, z_dim, f"G{seed}")
    D = mlp(1, hidden, 100 * seed + 11, 2, f"D{seed}")
    noise = gc.random.normal((batch, z_dim), seed=1000 + seed)
    every = 1
    if method in ("vanilla", "unrolled", "gp0"):
        adam = dict(lr=lr, beta1=0.5)
        u = gc.random.uniform((batch, 1), seed=2000 + seed)

        def d_build(x, y, training):
            fake = gc.stop_gradient(G(noise))
            loss = _bce(D(x), 1.0) + _bce(D(fake), 0.0)
            if method != "gp0":
                return {"d_loss": loss}
            # zero-centred gradient penalty on interpolates (Thanh-Tung et al. 2019)
            x_hat = u * x + (1.0 - u) * fake
            gx = gc.grad(gc.sum(D(x_hat)), x_hat)
            penalty = gc.mean(gc.sum(gc.square(gx), 1))
            return {"d_loss": loss + gp * penalty, "gp": penalty}

        if method in ("vanilla", "gp0"):
            def g_build(x, y, training):  # non-saturating: maximise log D(G(z))
                return {"g_loss": _bce(D(G(noise)), 1.0)}
        else:
            def g_build(x, y, training):
                # the generator's loss against the critic `unroll` SGD steps ahead, the critic's
                # steps taken on this batch and these fakes (no stop_gradient: G sees how D reacts)
                fake = G(noise)
                d_loss = _bce(D(x), 1.0) + _bce(D(fake), 0.0)
                ahead = unrolled(d_loss, D.params, unroll, unroll_lr)
                (g_loss,) = clone_replace([_bce(D(fake), 1.0)], dict(zip(D.params, ahead)))
                return {"g_loss": g_loss}
    elif method == "wgan-gp":
        adam = dict(lr=lr, beta1=0.5, beta2=0.9)
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
        raise ValueError(f"unknown method {method!r}: vanilla, unrolled or wgan-gp")
    d_step = gc.train.Step(d_build, [D], gc.optim.Adam(**adam), name="D", validate=False)
    g_step = gc.train.Step(g_build, [G], gc.optim.Adam(**adam), name="G", every=every, validate=False)
    return G, D, [d_step, g_step]


class LinearDecay(gc.train.Callback):
    """Both optimizers' learning rate falls linearly to 0 over the last `fraction` of the epochs:
    the samples sharpen onto the modes once the generator stops chasing the critic."""

    def __init__(self, steps: list, lr: float, epochs: int, fraction: float):
        self.steps, self.lr, self.epochs, self.start = steps, lr, epochs, int(round(epochs * (1 - fraction)))

    def on_epoch_begin(self, epoch, trainer):
        if epoch >= self.start:
            left = (self.epochs - epoch) / max(self.epochs - self.start, 1)
            for s in self.steps:
                gc.optim.set_lr(s.optimizer, self.lr * left)


# Each method's settings for the 5-seed table (benchmarks/RESULTS.md); the sweep behind them is there.
DEFAULTS = {
    "vanilla": dict(epochs=150, decay=0.3),
    "unrolled": dict(epochs=150, decay=0.3, unroll=5, unroll_lr=1e-2),
    "wgan-gp": dict(epochs=600, decay=0.3, gp=0.1, critic_steps=5),
    "gp0": dict(epochs=300, decay=0.5, gp=10.0),
}


def train(method: str, seed: int, epochs: int = 30, batch: int = 256, n: int = 256 * 50, snapshots=(),
          verbose: int = 0, decay: float = 0.0, **kw) -> dict:
    """Train one GAN; returns the final (modes, HQ share), samples at the `snapshots` epochs, time.
    decay: the fraction of the epochs over which the learning rates fall linearly to 0."""
    G, D, steps = make_steps(method, batch, seed, **kw)
    z_dim = kw.get("z_dim", 16)
    z = gc.placeholder("z", (None, z_dim))
    sample = gc.function([z], G(z))
    zs = np.random.default_rng(seed + 7).standard_normal((2500, z_dim)).astype("float32")
    shots = {}

    class Snap(gc.train.Callback):
        def on_epoch_end(self, epoch, logs, trainer):
            if epoch + 1 in snapshots:
                shots[epoch + 1] = sample(zs)

    callbacks = [Snap()]
    if decay:
        callbacks.append(LinearDecay(steps, kw.get("lr", 1e-3), epochs, decay))
    t0 = time.perf_counter()
    hist = gc.train.fit(None, ring_data(n, seed), steps=steps, epochs=epochs, batch_size=batch, seed=seed,
                        verbose=verbose, callbacks=callbacks)
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
    p.add_argument("--method", default="vanilla,gp0,wgan-gp",
                   help=f"all, or a comma-separated list of {', '.join(DEFAULTS)}")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=None, help="50 batches of 256 per epoch (default: per method)")
    p.add_argument("--out", default="gan_ring")
    args = p.parse_args(argv)
    methods = list(DEFAULTS) if args.method == "all" else args.method.split(",")
    for m in methods:
        if m not in DEFAULTS:
            p.error(f"unknown method {m!r}: choose from {', '.join(DEFAULTS)}")
    results, shown, rows = {}, {}, []
    for m in methods:
        kw = dict(DEFAULTS[m])
        if args.epochs is not None:
            kw["epochs"] = args.epochs
        ep = kw["epochs"]
        snaps = tuple(sorted({1, max(1, ep // 4), max(1, ep // 2), ep}))
        results[m] = []
        for seed in range(args.seeds):
            r = train(m, seed, snapshots=snaps if seed == 0 else (), **kw)
            results[m].append(r)
            rows.append(f"| {m} | {seed} | {r['modes']}/8 | {100 * r['hq']:.1f}% | {r['wall_s']:.0f} s |")
            print(rows[-1], flush=True)
        shown[m] = results[m][0]
        ok = sum(r["modes"] == 8 and r["hq"] >= 0.8 for r in results[m])
        rows.append(f"| {m} | all | mean {np.mean([r['modes'] for r in results[m]]):.1f} | "
                    f"mean {100 * np.mean([r['hq'] for r in results[m]]):.1f}% | 8 modes and >= 80% HQ in "
                    f"{ok} of {args.seeds} seeds |")
        print(rows[-1], flush=True)
    print("\n| method | seed | modes | high quality | wall |\n|---|---|---|---|---|\n" + "\n".join(rows))
    print(f"wrote {plot(shown, args.out + '.png')}")
    return results


if __name__ == "__main__":
    main()
