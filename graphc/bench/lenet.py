"""The LeNet-5 training step as a `graphc bench` workload (and for benchmarks/conv.py): graphc's
compiled step, a hand-written NumPy im2col step and a PyTorch eager twin.

LeNet-5 here: conv 5x5 (6, padding 2) - relu - maxpool 2 - conv 5x5 (16) - relu - maxpool 2 -
dense 400-120-84-10 with relu, softmax cross-entropy, SGD, batch 64, 28x28 inputs.
"""

from __future__ import annotations

import time

import numpy as np

import graphc as gc

from .frameworks import torch_fn
from .harness import Impl, Workload

# -- the model -----------------------------------------------------------------------------------

SHAPES = {"W1": (6, 1, 5, 5), "b1": (6,), "W2": (16, 6, 5, 5), "b2": (16,), "W3": (400, 120), "b3": (120,),
          "W4": (120, 84), "b4": (84,), "W5": (84, 10), "b5": (10,)}


def lenet_params(seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for k, s in SHAPES.items():
        fan_in = int(np.prod(s[1:])) if len(s) == 4 else s[0]
        out[k] = (rng.normal(0, np.sqrt(2 / fan_in), s) if len(s) > 1 else np.zeros(s)).astype("float32")
    return out


def lenet_data(batch, n=4, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.random((batch, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, batch).astype("int32"))
            for _ in range(n)]


def graphc_lenet_step(params, lr):
    P = {k: gc.shared(v, name=k) for k, v in params.items()}
    x = gc.placeholder("x", (None, 1, 28, 28))
    t = gc.placeholder("t", (None,), "int32")
    h = gc.relu(gc.conv2d(x, P["W1"], padding=2) + gc.reshape(P["b1"], (1, 6, 1, 1)))
    h = gc.max_pool2d(h, 2)
    h = gc.relu(gc.conv2d(h, P["W2"]) + gc.reshape(P["b2"], (1, 16, 1, 1)))
    h = gc.reshape(gc.max_pool2d(h, 2), (-1, 400))
    h = gc.relu(h @ P["W3"] + P["b3"])
    h = gc.relu(h @ P["W4"] + P["b4"])
    loss = gc.softmax_cross_entropy(h @ P["W5"] + P["b5"], t).mean()
    names = list(P)
    grads = gc.grad(loss, [P[k] for k in names])
    t0 = time.perf_counter()
    f = gc.function([x, t], loss, updates=[(P[k], P[k] - lr * g) for k, g in zip(names, grads)], backend="c")
    return f, P, time.perf_counter() - t0


def _im2col(xp, k, ho, wo):
    """(N*ho*wo, C*k*k) patches of padded NCHW `xp` (stride 1)."""
    v = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, :ho, :wo]
    n, c = xp.shape[:2]
    return v.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * k * k)


def _col2im(dcols, shape, k, ho, wo):
    n, c, hp, wp = shape
    d = dcols.reshape(n, ho, wo, c, k, k)
    dx = np.zeros(shape, np.float32)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + ho, j:j + wo] += d[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dx


class NumpyLeNet:
    """The same step by hand in NumPy (float32 throughout, in-place SGD)."""

    def __init__(self, params, lr):
        self.p = {k: v.copy() for k, v in params.items()}
        self.lr = np.float32(lr)

    def _conv(self, x, w, b, pad):
        n, c, h, wd = x.shape
        o, _, k, _ = w.shape
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
        ho, wo = h + 2 * pad - k + 1, wd + 2 * pad - k + 1
        cols = _im2col(xp, k, ho, wo)
        y = cols @ w.reshape(o, -1).T
        y += b
        return y.reshape(n, ho, wo, o).transpose(0, 3, 1, 2), (cols, xp.shape, ho, wo)

    def _conv_back(self, dy, w, cache, pad, need_dx):
        cols, xshape, ho, wo = cache
        o, c, k, _ = w.shape
        d2 = dy.transpose(0, 2, 3, 1).reshape(-1, o)
        dw = (d2.T @ cols).reshape(w.shape)
        db = d2.sum(axis=0)
        dx = None
        if need_dx:
            dxp = _col2im(d2 @ w.reshape(o, -1), xshape, k, ho, wo)
            dx = dxp[:, :, pad:xshape[2] - pad, pad:xshape[3] - pad] if pad else dxp
        return dx, dw, db

    @staticmethod
    def _pool(x):
        n, c, h, w = x.shape
        xr = x.reshape(n, c, h // 2, 2, w // 2, 2)
        y = xr.max(axis=(3, 5))
        return y, (xr, y)

    @staticmethod
    def _pool_back(dy, cache):
        xr, y = cache
        mask = xr == y[:, :, :, None, :, None]
        dx = mask * dy[:, :, :, None, :, None]
        n, c, h2, _, w2, _ = xr.shape
        return dx.reshape(n, c, 2 * h2, 2 * w2)

    def step(self, x, t):
        p = self.p
        z1, c1 = self._conv(x, p["W1"], p["b1"], 2)
        a1 = np.maximum(z1, 0)
        m1, pc1 = self._pool(a1)
        z2, c2 = self._conv(m1, p["W2"], p["b2"], 0)
        a2 = np.maximum(z2, 0)
        m2, pc2 = self._pool(a2)
        f = m2.reshape(len(x), 400)
        h3 = np.maximum(f @ p["W3"] + p["b3"], 0)
        h4 = np.maximum(h3 @ p["W4"] + p["b4"], 0)
        z = h4 @ p["W5"] + p["b5"]
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        n = len(x)
        loss = float(np.mean(np.log(s[:, 0]) - z[np.arange(n), t]))
        d = e / s
        d[np.arange(n), t] -= 1
        d /= n
        g = {"W5": h4.T @ d, "b5": d.sum(0)}
        d = (d @ p["W5"].T) * (h4 > 0)
        g["W4"], g["b4"] = h3.T @ d, d.sum(0)
        d = (d @ p["W4"].T) * (h3 > 0)
        g["W3"], g["b3"] = f.T @ d, d.sum(0)
        d = (d @ p["W3"].T).reshape(m2.shape)
        d = self._pool_back(d, pc2) * (z2 > 0)
        d, g["W2"], g["b2"] = self._conv_back(d, p["W2"], c2, 0, True)
        d = self._pool_back(d, pc1) * (z1 > 0)
        _, g["W1"], g["b1"] = self._conv_back(d, p["W1"], c1, 2, False)
        for k in p:
            p[k] -= self.lr * g[k]
        return loss




class LeNetStep(Workload):
    """One SGD step of LeNet-5 at batch 64 (the issue-5 workload)."""

    name = "lenet_step"
    gate_steps = 3
    rtol, atol = 2e-3, 2e-5
    lr = 0.05

    def _batch(self, size):
        return 64 if size == "full" else 4

    def title(self, size):
        return f"LeNet-5 SGD step, batch {self._batch(size)}, 28x28"

    def data(self, size):
        return lenet_data(self._batch(size))

    def cost(self, size):
        b = self._batch(size)
        conv = 2 * b * (28 * 28 * 6 * 25 + 10 * 10 * 16 * 6 * 25)  # forward MACs x2
        dense = 2 * b * (400 * 120 + 120 * 84 + 84 * 10)
        params = sum(int(np.prod(s)) for s in SHAPES.values())
        return 3 * (conv + dense), 4 * (3 * params + b * 28 * 28)

    def _graphc(self, size):
        f, P, _ = graphc_lenet_step(lenet_params(), self.lr)
        return Impl(f, lambda: [P[k].get_value() for k in SHAPES])

    def _numpy(self, size):
        net = NumpyLeNet(lenet_params(), self.lr)
        return Impl(net.step, lambda: [net.p[k].copy() for k in SHAPES])

    def _torch(self, size, compiled):
        import torch
        import torch.nn.functional as F

        p = {k: torch.tensor(v, requires_grad=True) for k, v in lenet_params().items()}
        lr = self.lr

        def step(x, t):
            h = F.max_pool2d(F.relu(F.conv2d(x, p["W1"], p["b1"], padding=2)), 2)
            h = F.max_pool2d(F.relu(F.conv2d(h, p["W2"], p["b2"])), 2).reshape(-1, 400)
            h = F.relu(h @ p["W3"] + p["b3"])
            h = F.relu(h @ p["W4"] + p["b4"])
            loss = F.cross_entropy(h @ p["W5"] + p["b5"], t)
            for v in p.values():
                v.grad = None
            loss.backward()
            with torch.no_grad():
                for v in p.values():
                    v -= lr * v.grad
            return loss.detach()

        return Impl(torch_fn(step, compiled), lambda: [p[k].detach().numpy().copy() for k in SHAPES])

    def _jax(self, size):
        raise NotImplementedError("no JAX twin of the LeNet step yet")
