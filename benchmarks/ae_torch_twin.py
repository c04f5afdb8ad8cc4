"""PyTorch twin of the undercomplete autoencoder of examples/autoencoders.py (reference only).

    .venv/bin/python benchmarks/ae_torch_twin.py [--epochs 20] [--seed 0]

Same sizes (784-256-32-256-784, ReLU hidden layers, sigmoid output), split (MNIST-5k
4000/1000), batch 64, Adam 1e-3, per-pixel MSE, the same shuffles (NumPy's
``default_rng(seed).permutation`` per epoch, as graphc's `fit`), one thread like the example
(which sets ``OPENBLAS_NUM_THREADS=1``). Initialisation is PyTorch's own.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def run(epochs: int = 20, seed: int = 0, batch_size: int = 64) -> dict:
    """Train the twin; returns the test MSE per pixel and the training wall time in seconds."""
    import torch
    from torch import nn

    import graphc as gc

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 32),
                          nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 784), nn.Sigmoid())
    ds = gc.data.load_mnist5k()
    xtr, xte = torch.from_numpy(np.asarray(ds.x_train)), torch.from_numpy(np.asarray(ds.x_test))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(xtr)))
        for s in range(0, len(xtr), batch_size):
            xb = xtr[order[s:s + batch_size]]
            loss = torch.mean((model(xb) - xb) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
    wall = time.perf_counter() - t0
    with torch.no_grad():
        mse = float(torch.mean((model(xte) - xte) ** 2))
    return {"test_mse": mse, "wall_s": wall}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    r = run(a.epochs, a.seed)
    print(f"torch: undercomplete AE test MSE {r['test_mse']:.5f}; {r['wall_s']:.1f} s for {a.epochs} epochs")
