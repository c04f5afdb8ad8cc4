"""PyTorch twin of examples/gan_ring.py (reference only; torch is not a graphc dependency).

    .venv/bin/python benchmarks/gan_ring_torch_twin.py [--method gp0|wgan-gp|vanilla] [--epochs N] [--seeds 1]

Same networks (2-hidden-layer MLPs of 128 LeakyReLU(0.2) units, 16-d Gaussian noise), data
(the ring drawn by the example's `ring_data`, 50 batches of 256 per epoch, NumPy's
``default_rng(seed).permutation`` shuffles), losses, Adam settings, critic steps, penalty
weights and learning-rate decay, one thread. Initialisation and noise are PyTorch's own.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import numpy as np


def _example():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "gan_ring.py")
    spec = importlib.util.spec_from_file_location("gan_ring", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(method: str = "gp0", seed: int = 0, epochs: int | None = None, batch: int = 256, n: int = 256 * 50,
        z_dim: int = 16, hidden: int = 128, lr: float = 1e-3, critic_steps: int = 5) -> dict:
    """Train the twin with the example's settings for `method` (its ``DEFAULTS``: epochs, penalty
    weight, decay); returns modes captured, the high-quality share and the wall time."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    ex = _example()
    cfg = ex.DEFAULTS[method]
    gp, decay = cfg.get("gp", 0.0), cfg.get("decay", 0.0)
    epochs = cfg["epochs"] if epochs is None else epochs
    torch.manual_seed(seed)
    torch.set_num_threads(1)

    def mlp(i, o):
        return nn.Sequential(nn.Linear(i, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                             nn.Linear(hidden, o))

    G, D = mlp(z_dim, 2), mlp(2, 1)
    betas = (0.5, 0.9) if method == "wgan-gp" else (0.5, 0.999)
    opt_d, opt_g = torch.optim.Adam(D.parameters(), lr, betas=betas), torch.optim.Adam(G.parameters(), lr, betas=betas)
    every = critic_steps if method == "wgan-gp" else 1
    x_all = torch.from_numpy(ex.ring_data(n, seed))
    rng = np.random.default_rng(seed)
    start = int(round(epochs * (1 - decay)))
    t0 = time.perf_counter()
    for epoch in range(epochs):
        if decay and epoch >= start:
            for o in (opt_d, opt_g):
                for group in o.param_groups:
                    group["lr"] = lr * (epochs - epoch) / max(epochs - start, 1)
        order = torch.from_numpy(rng.permutation(n))
        for b, s in enumerate(range(0, n, batch)):
            x = x_all[order[s:s + batch]]
            fake = G(torch.randn(len(x), z_dim)).detach()
            if method == "wgan-gp":
                d_loss = D(fake).mean() - D(x).mean()
            else:
                d_loss = F.softplus(-D(x)).mean() + F.softplus(D(fake)).mean()
            if method in ("wgan-gp", "gp0"):
                u = torch.rand(len(x), 1)
                x_hat = (u * x + (1 - u) * fake).requires_grad_(True)
                (gx,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
                norm2 = (gx ** 2).sum(1)
                pen = ((torch.sqrt(norm2 + 1e-12) - 1) ** 2).mean() if method == "wgan-gp" else norm2.mean()
                d_loss = d_loss + gp * pen
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            if b % every == 0:
                out = D(G(torch.randn(len(x), z_dim)))
                g_loss = -out.mean() if method == "wgan-gp" else F.softplus(-out).mean()
                opt_g.zero_grad()
                g_loss.backward()
                opt_g.step()
    wall = time.perf_counter() - t0
    with torch.no_grad():
        samples = G(torch.from_numpy(np.random.default_rng(seed + 7).standard_normal((2500, z_dim)).astype("float32")))
    modes, hq = ex.quality(samples.numpy())
    return {"modes": modes, "hq": hq, "wall_s": wall}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="gp0", choices=["vanilla", "wgan-gp", "gp0"])
    p.add_argument("--epochs", type=int, default=None, help="default: the example's for the method")
    p.add_argument("--seeds", type=int, default=1)
    a = p.parse_args()
    for seed in range(a.seeds):
        r = run(a.method, seed, a.epochs)
        print(f"torch {a.method} seed {seed}: {r['modes']}/8 modes, {100 * r['hq']:.1f}% high quality; "
              f"{r['wall_s']:.1f} s")
