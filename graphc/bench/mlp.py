"""The MLP training step (Adam or SGD) and the compile-time workload built on it."""

from __future__ import annotations

import time

import numpy as np

from .frameworks import jax_training_step, pytensor_training_step, torch_fn
from .harness import Impl, Workload

ADAM = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


def mlp_params(rng, sizes):
    """He-normal weights (in, out) and zero biases, float32."""
    ws = [rng.normal(0, np.sqrt(2 / i), (i, o)).astype("float32") for i, o in zip(sizes, sizes[1:])]
    bs = [np.zeros(o, "float32") for o in sizes[1:]]
    return ws, bs


def graphc_mlp_step(sizes, optimizer="adam", lr=1e-3):
    """graphc's training step of a ReLU MLP with softmax cross-entropy: ``(f, params, compile_s)``,
    `params` being W0.. then b0.., `compile_s` the seconds `gc.function` took."""
    import graphc as gc

    ws, bs = mlp_params(np.random.default_rng(3), sizes)
    W = [gc.shared(w, name=f"W{i}") for i, w in enumerate(ws)]
    B = [gc.shared(b, name=f"b{i}") for i, b in enumerate(bs)]
    x = gc.placeholder("x", (None, sizes[0]))
    t = gc.placeholder("t", (None,), "int32")
    h = x
    for i in range(len(W)):
        h = h @ W[i] + B[i]
        if i < len(W) - 1:
            h = gc.relu(h)
    loss = gc.softmax_cross_entropy(h, t).mean()
    params = W + B
    if optimizer == "adam":
        updates = gc.optim.Adam(lr, **ADAM).updates(loss, params)
    else:
        updates = [(p, p - lr * g) for p, g in zip(params, gc.grad(loss, params))]
    t0 = time.perf_counter()
    f = gc.function([x, t], loss, updates=updates, backend="c")
    return f, params, time.perf_counter() - t0



def adam_update(params, grads, m, v, t: int, lr: float) -> None:
    """PyTorch's Adam (as `gc.optim.Adam`), in place, step `t` (from 1); consumes `grads`."""
    b1, b2, eps = ADAM["beta1"], ADAM["beta2"], ADAM["eps"]
    step_size = np.float32(lr / (1 - b1**t))
    inv_bc2 = np.float32(1 / np.sqrt(1 - b2**t))
    for p, g, mi, vi in zip(params, grads, m, v):
        mi *= np.float32(b1)
        mi += np.float32(1 - b1) * g
        vi *= np.float32(b2)
        g *= g
        g *= np.float32(1 - b2)
        vi += g
        d = np.sqrt(vi)
        d *= inv_bc2
        d += np.float32(eps)
        np.divide(mi, d, out=d)
        d *= step_size
        p -= d

class NumpyMLP:
    """A hand-written NumPy training step (SGD or Adam): what a good NumPy user writes, with
    in-place updates and no needless copies. Adam is PyTorch's formula, as `gc.optim.Adam`."""

    def __init__(self, sizes, optimizer="adam", lr=1e-3):
        self.ws, self.bs = mlp_params(np.random.default_rng(3), sizes)
        self.lr, self.optimizer, self.t = np.float32(lr), optimizer, 0
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]

    @property
    def params(self):
        return self.ws + self.bs

    def grads(self, x, t):
        hs = [x]
        for i, (w, b) in enumerate(zip(self.ws, self.bs)):
            z = hs[-1] @ w
            z += b
            if i < len(self.ws) - 1:
                np.maximum(z, 0, out=z)
            hs.append(z)
        d = hs.pop()  # the logits, turned in place into their gradient
        n, rows = x.shape[0], np.arange(x.shape[0])
        d -= d.max(axis=1, keepdims=True)
        picked = d[rows, t]
        np.exp(d, out=d)
        s = d.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) - picked)
        d /= s
        d[rows, t] -= 1
        d *= np.float32(1 / n)
        gws, gbs = [None] * len(self.ws), [None] * len(self.ws)
        for i in reversed(range(len(self.ws))):
            gws[i] = hs[i].T @ d
            gbs[i] = d.sum(axis=0)
            if i:
                d = d @ self.ws[i].T
                d *= hs[i] > 0
        return loss, gws + gbs

    def step(self, x, t):
        loss, grads = self.grads(x, t)
        if self.optimizer == "adam":
            self.t += 1
            adam_update(self.params, grads, self.m, self.v, self.t, self.lr)
        else:
            for p, g in zip(self.params, grads):
                g *= self.lr
                p -= g
        return loss


class MLPStep(Workload):
    """One training step of a 784-512-512-10 ReLU MLP with softmax cross-entropy: forward,
    backward and the optimizer's update of every weight."""

    gate_steps = 3
    rtol, atol = 1e-3, 2e-5

    def __init__(self, optimizer="adam", batch=128, name=None):
        self.optimizer, self.batch = optimizer, batch
        self.lr = 1e-3 if optimizer == "adam" else 0.01
        self.name = name or f"mlp_{optimizer}"
        if optimizer == "adam":
            # Adam's step m/(sqrt(v)+eps) is ill-conditioned where a gradient is ~0 (|g| <~ eps, a sum
            # that cancels): float32 rounding there may move a weight by up to a whole step (lr).
            # Allow 1 in 10^4 weights to differ by at most one step per gate step.
            self.state_outliers = (1e-4, self.lr * self.gate_steps)

    def _sizes(self, size):
        return [784, 512, 512, 10] if size == "full" else [20, 16, 16, 10]

    def _batch(self, size):
        return self.batch if size == "full" else max(2, self.batch // 16)

    def title(self, size):
        opt = {"adam": "Adam", "sgd": "SGD"}[self.optimizer]
        return f"MLP {opt} step {'-'.join(map(str, self._sizes(size)))}, batch {self._batch(size)}"

    def data(self, size):
        sizes, b = self._sizes(size), self._batch(size)
        rng = np.random.default_rng(4)
        return [(rng.standard_normal((b, sizes[0])).astype("float32"),
                 rng.integers(0, sizes[-1], b).astype("int32")) for _ in range(4)]

    def cost(self, size):
        sizes, b = self._sizes(size), self._batch(size)
        layers = list(zip(sizes, sizes[1:]))
        gemm = 2 * b * (2 * sum(i * o for i, o in layers) + sum(i * o for i, o in layers[1:]))  # fwd, dW, dX
        n_params = sum(i * o + o for i, o in layers)
        per_param = (12, 6) if self.optimizer == "adam" else (2, 3)  # (flops, float32 arrays read + written)
        return gemm + per_param[0] * n_params, 4 * (per_param[1] * n_params + b * (sizes[0] + 1))

    def _graphc(self, size):
        f, params, _ = graphc_mlp_step(self._sizes(size), self.optimizer, self.lr)
        return Impl(f, lambda: [p.get_value() for p in params])

    def _numpy(self, size):
        net = NumpyMLP(self._sizes(size), self.optimizer, self.lr)
        return Impl(net.step, lambda: [p.copy() for p in net.params])

    def _torch(self, size, compiled):
        import torch

        ws, bs = mlp_params(np.random.default_rng(3), self._sizes(size))
        layers = []
        for w, b in zip(ws, bs):
            lin = torch.nn.Linear(*w.shape)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w.T))
                lin.bias.copy_(torch.from_numpy(b))
            layers += [lin, torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers[:-1])
        if self.optimizer == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=self.lr, betas=(ADAM["beta1"], ADAM["beta2"]),
                                   eps=ADAM["eps"])
        else:
            opt = torch.optim.SGD(model.parameters(), lr=self.lr)

        def step(x, t):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x), t)
            loss.backward()
            opt.step()
            return loss.detach()

        lins = [m for m in model if isinstance(m, torch.nn.Linear)]
        return Impl(torch_fn(step, compiled),
                    lambda: [m.weight.detach().numpy().T.copy() for m in lins] + [m.bias.detach().numpy().copy()
                                                                                   for m in lins])

    def _jax(self, size):
        import jax
        import jax.numpy as jnp

        ws, bs = mlp_params(np.random.default_rng(3), self._sizes(size))
        lr, adam = self.lr, self.optimizer == "adam"

        def loss_fn(params, x, t):
            h = x
            n = len(params) // 2
            for i in range(n):
                h = h @ params[i] + params[n + i]
                if i < n - 1:
                    h = jax.nn.relu(h)
            return jnp.mean(jax.nn.logsumexp(h, axis=1) - jnp.take_along_axis(h, t[:, None], axis=1)[:, 0])

        return Impl(*jax_training_step(loss_fn, ws + bs, lr, ADAM if adam else None))

    def _pytensor(self, size, mode):
        import pytensor
        import pytensor.tensor as pt

        ws, bs = mlp_params(np.random.default_rng(3), self._sizes(size))
        params = [pytensor.shared(p) for p in ws + bs]
        x, t = pt.matrix("x", dtype="float32"), pt.ivector("t")
        h, n = x, len(ws)
        for i in range(n):
            h = pt.dot(h, params[i]) + params[n + i]
            if i < n - 1:
                h = pt.maximum(h, 0)
        logp = h - pt.logsumexp(h, axis=1, keepdims=True)
        loss = -pt.mean(logp[pt.arange(t.shape[0]), t])
        adam = ADAM if self.optimizer == "adam" else None
        return Impl(*pytensor_training_step([x, t], loss, params, self.lr, adam, mode))


class CompileTime(Workload):
    """Compile time of the MLP Adam training step: cold (a fresh GRAPHC_CACHE_DIR in a new process:
    graph passes, code generation and gcc) and warm (a new process finding the cache entry)."""

    name = "compile"

    def title(self, size):
        return f"compile {MLP_ADAM.title(size)}"


MLP_ADAM = MLPStep("adam", 128)
COMPILE = CompileTime()
