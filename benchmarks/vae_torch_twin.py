"""PyTorch twin of examples/vae_mnist.py (reference only; torch is not a graphc dependency).

    .venv/bin/python benchmarks/vae_torch_twin.py [--epochs 20] [--latent 20] [--seed 0]
                                              [--init torch|graphc|glorot]

Same sizes (784-400-20), split (MNIST-5k 4000/1000), batch 128, Adam 1e-3, epochs, loss
(per-image mean of the summed BCE plus KL) and shuffles (NumPy's ``default_rng(seed)``
permutation per epoch, as graphc's `fit`), one thread. ``--init graphc`` starts from the graphc
example's initial weights instead of PyTorch's own draw.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def run(epochs: int = 20, latent: int = 20, seed: int = 0, batch_size: int = 128, init: str = "torch") -> dict:
    """Train the twin; init "torch" keeps nn.Linear's default initialisation; "graphc" and
    "glorot" copy the initial weights of ``examples/vae_mnist.make_vae(latent, seed=seed,
    init="pytorch" | "glorot")``, so both frameworks start from the same point."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    import graphc as gc

    torch.manual_seed(seed)
    torch.set_num_threads(1)

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, latent), nn.Linear(400, latent)
            self.fc3, self.fc4 = nn.Linear(latent, 400), nn.Linear(400, 784)

        def forward(self, x):
            h = F.relu(self.fc1(x))
            mu, log_var = self.fc21(h), self.fc22(h)
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
            return self.fc4(F.relu(self.fc3(z))), mu, log_var

    def loss_fn(logits, mu, log_var, x):
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp()) / len(x)
        return nll + kl

    ds = gc.data.load_mnist5k()
    xtr, xte = torch.from_numpy(np.asarray(ds.x_train)), torch.from_numpy(np.asarray(ds.x_test))
    model = VAE()
    if init in ("graphc", "glorot"):
        with torch.no_grad():
            for lin, (w, b) in zip([model.fc1, model.fc21, model.fc22, model.fc3, model.fc4],
                                   _graphc_initial_weights(latent, seed, "glorot" if init == "glorot" else "pytorch")):
                lin.weight.copy_(torch.from_numpy(w.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
    elif init != "torch":
        raise ValueError(f"init must be 'torch', 'graphc' or 'glorot', got {init!r}")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(xtr)))
        for s in range(0, len(xtr), batch_size):
            xb = xtr[order[s:s + batch_size]]
            loss = loss_fn(*model(xb), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    wall = time.perf_counter() - t0
    with torch.no_grad():
        total = sum(float(loss_fn(*model(xte[s:s + 256]), xte[s:s + 256])) * len(xte[s:s + 256])
                    for s in range(0, len(xte), 256))
    return {"test_nelbo": total / len(xte), "wall_s": wall}


def _graphc_initial_weights(latent: int, seed: int, init: str) -> list:
    """(kernel, bias) pairs of the graphc VAE's five Dense layers: fc1, mu, log-var, fc3, fc4."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "vae_mnist.py")
    spec = importlib.util.spec_from_file_location("vae_mnist", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    encoder, decoder = mod.make_vae(latent, seed=seed, init=init)
    ws = [p.get_value() for p in encoder.params + decoder.params]
    return list(zip(ws[0::2], ws[1::2]))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--latent", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default="torch", choices=["torch", "graphc", "glorot"])
    a = p.parse_args()
    r = run(a.epochs, a.latent, a.seed, init=a.init)
    print(f"torch: test negative ELBO {r['test_nelbo']:.2f} nats/image; {r['wall_s']:.1f} s for {a.epochs} epochs")
