"""The recurrent workloads of issue 11: an LSTM and a tanh RNN training step (forward, BPTT and
Adam) and the per-step overhead of a scan whose body is one small elementwise op.

The loss of both training steps is the MSE of the last hidden state against a target,
``mean((h_T - y)**2)`` (no Dense head: the step is the recurrent layer alone). Weights use
Keras' layout, as `gc.nn.LSTM` / `gc.nn.SimpleRNN`: ``kernel`` (D, k*H), ``recurrent_kernel``
(H, k*H) and one ``bias`` (k*H), LSTM gates in the order i, f, c, o. The NumPy twin is the same
network with BPTT written by hand; the PyTorch twins get the weights transposed into
``nn.LSTM`` / ``nn.RNN`` (whose second bias, ``bias_hh``, is frozen at zero, so that both sides
train the same parameters); the JAX twin is ``lax.scan`` under ``jax.jit``; the PyTensor twin is
``pytensor.scan`` in one compiled function with the Adam updates.
"""

from __future__ import annotations

import numpy as np

from .frameworks import jax_training_step, pytensor_training_step, torch_fn
from .harness import Impl, Workload
from .mlp import ADAM, adam_update

LR = 1e-3


def recurrent_params(cell: str, D: int, H: int, seed: int = 7) -> list[np.ndarray]:
    """[kernel (D, k*H), recurrent_kernel (H, k*H), bias (k*H)] in float32, k = 4 for "lstm"
    (forget bias 1, Keras' ``unit_forget_bias``) and 1 for "rnn"; seeded, so every process
    builds the same ones."""
    k = 4 if cell == "lstm" else 1
    rng = np.random.default_rng(seed)
    lim = np.sqrt(6 / (D + k * H))  # glorot_uniform, as Keras
    kernel = rng.uniform(-lim, lim, (D, k * H)).astype("float32")
    rec = (rng.standard_normal((H, k * H)) / np.sqrt(H)).astype("float32")
    bias = np.zeros(k * H, "float32")
    if cell == "lstm":
        bias[H:2 * H] = 1.0
    return [kernel, rec, bias]


def _sigmoid(z):
    out = np.negative(z)
    np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)
    return out



class NumpyRecurrent:
    """The training step in NumPy with BPTT by hand. The sequence-only gemms are batched over
    time, as a good NumPy user writes them: ``x @ kernel`` before the loop, ``x^T dz`` and
    ``h_{t-1}^T dz`` after it; only ``h @ R`` and ``dz @ R^T`` stay in the loop."""

    def __init__(self, cell: str, D: int, H: int):
        self.cell, self.H = cell, H
        self.params = recurrent_params(cell, D, H)
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def grads(self, x, y):
        K, R, b = self.params
        B, T, D = x.shape
        H = self.H
        x_tm = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(T * B, D)
        xw = (x_tm @ K).reshape(T, B, -1)
        xw += b
        dt = x.dtype  # float32 in the benchmark; float64 in the finite-difference test
        hs = np.zeros((T + 1, B, H), dt)  # hs[t] is h_{t-1}
        if self.cell == "lstm":
            gates = np.empty((T, B, 4 * H), dt)  # i, f, g, o after their activations
            cs = np.zeros((T + 1, B, H), dt)
            tcs = np.empty((T, B, H), dt)
            for t in range(T):
                z = xw[t] + hs[t] @ R
                ga = gates[t]
                ga[:, :2 * H] = _sigmoid(z[:, :2 * H])
                ga[:, 3 * H:] = _sigmoid(z[:, 3 * H:])
                np.tanh(z[:, 2 * H:3 * H], out=ga[:, 2 * H:3 * H])
                i, f, g, o = ga[:, :H], ga[:, H:2 * H], ga[:, 2 * H:3 * H], ga[:, 3 * H:]
                np.multiply(f, cs[t], out=cs[t + 1])
                cs[t + 1] += i * g
                np.tanh(cs[t + 1], out=tcs[t])
                np.multiply(o, tcs[t], out=hs[t + 1])
        else:
            for t in range(T):
                z = xw[t] + hs[t] @ R
                np.tanh(z, out=hs[t + 1])
        diff = hs[T] - y
        loss = np.mean(diff * diff)
        dh = diff * dt.type(2 / diff.size)
        dz = np.empty_like(xw)
        if self.cell == "lstm":
            dc = np.zeros((B, H), dt)
            for t in reversed(range(T)):
                ga, tc = gates[t], tcs[t]
                i, f, g, o = ga[:, :H], ga[:, H:2 * H], ga[:, 2 * H:3 * H], ga[:, 3 * H:]
                d = dz[t]
                d[:, 3 * H:] = dh * tc * o * (1 - o)  # do
                dc += dh * o * (1 - tc * tc)
                d[:, :H] = dc * g * i * (1 - i)  # di
                d[:, H:2 * H] = dc * cs[t] * f * (1 - f)  # df
                d[:, 2 * H:3 * H] = dc * i * (1 - g * g)  # dg
                dc *= f
                dh = d @ R.T
        else:
            for t in reversed(range(T)):
                np.multiply(dh, 1 - hs[t + 1] * hs[t + 1], out=dz[t])
                dh = dz[t] @ R.T
        dz2 = dz.reshape(T * B, -1)
        gK = x_tm.T @ dz2
        gR = hs[:T].reshape(T * B, H).T @ dz2
        gb = dz2.sum(axis=0)
        return loss, [gK, gR, gb]

    def step(self, x, y):
        loss, grads = self.grads(x, y)
        self.t += 1
        adam_update(self.params, grads, self.m, self.v, self.t, LR)
        return loss


class RecurrentStep(Workload):
    """One training step of an LSTM or tanh RNN layer (MSE of the last hidden state): forward,
    BPTT and Adam on the kernel, recurrent kernel and bias. ``torch_loop=True``: the PyTorch
    twin is ``nn.RNNCell`` in a Python loop over time instead of ``nn.RNN``."""

    gate_steps = 3
    rtol, atol = 1e-3, 2e-5
    # Adam's m/(sqrt(v)+eps) moves a weight whose gradient is ~0 by anything up to lr per step:
    # allow 1 in 10^4 weights (at least one per array) to differ by at most one step per gate step
    state_outliers = (1e-4, LR * 3)

    def __init__(self, cell: str, full: tuple[int, int, int, int], name: str, torch_loop: bool = False):
        self.cell, self.full, self.name, self.torch_loop = cell, full, name, torch_loop

    def _dims(self, size):
        """(T, batch, inputs, hidden)."""
        return self.full if size == "full" else (5, 3, 4, 6)

    def steps(self, size) -> int:
        return self._dims(size)[0]

    def title(self, size):
        T, B, D, H = self._dims(size)
        kind = "LSTM" if self.cell == "lstm" else "tanh RNN"
        loop = ", PyTorch as RNNCell in a Python loop" if self.torch_loop else ""
        return f"{kind} step T={T}, batch {B}, {D} -> {H} (BPTT + Adam){loop}"

    def data(self, size):
        T, B, D, H = self._dims(size)
        rng = np.random.default_rng(11)
        return [(rng.standard_normal((B, T, D)).astype("float32"), rng.standard_normal((B, H)).astype("float32"))
                for _ in range(2)]

    def gemm_flops(self, size) -> float:
        """The step's gemms: x@K and h@R forward; x^T dz, h^T dz and dz R^T backward (no dx)."""
        T, B, D, H = self._dims(size)
        k = 4 if self.cell == "lstm" else 1
        return 2.0 * T * B * k * H * (2 * D + 3 * H)

    def cost(self, size):
        T, B, D, H = self._dims(size)
        k = 4 if self.cell == "lstm" else 1
        n_params = (D + H + 1) * k * H
        ew = T * B * H * (40 if self.cell == "lstm" else 8)  # gate arithmetic, forward and backward
        return self.gemm_flops(size) + ew + 12 * n_params, 4 * (6 * n_params + B * T * D + B * H)

    # -- the contenders ---------------------------------------------------------------------------
    def _graphc(self, size):
        import graphc as gc

        T, B, D, H = self._dims(size)
        x = gc.placeholder("x", (None, None, D))
        y = gc.placeholder("y", (None, H))
        layer = gc.nn.LSTM(H, seed=1) if self.cell == "lstm" else gc.nn.SimpleRNN(H, seed=1)
        h = layer(x)
        params = [layer.kernel, layer.recurrent_kernel, layer.bias]
        for p, value in zip(params, recurrent_params(self.cell, D, H)):
            p.set_value(value)
        loss = gc.mean(gc.square(h - y))
        f = gc.function([x, y], loss, updates=gc.optim.Adam(LR, **ADAM).updates(loss, params), backend="c")
        return Impl(f, lambda: [p.get_value() for p in params])

    def _numpy(self, size):
        T, B, D, H = self._dims(size)
        net = NumpyRecurrent(self.cell, D, H)
        return Impl(net.step, lambda: [p.copy() for p in net.params])

    def _torch(self, size, compiled):
        import torch

        T, B, D, H = self._dims(size)
        K, R, b = recurrent_params(self.cell, D, H)
        if self.torch_loop:
            m = torch.nn.RNNCell(D, H)
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        else:
            m = (torch.nn.LSTM if self.cell == "lstm" else torch.nn.RNN)(D, H, batch_first=True)
            names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
        w_ih, w_hh, b_ih, b_hh = (getattr(m, n) for n in names)
        with torch.no_grad():
            w_ih.copy_(torch.from_numpy(K.T))
            w_hh.copy_(torch.from_numpy(R.T))
            b_ih.copy_(torch.from_numpy(b))
            b_hh.zero_()
        b_hh.requires_grad_(False)  # Keras' one bias: the second stays zero
        trained = [w_ih, w_hh, b_ih]
        opt = torch.optim.Adam(trained, lr=LR, betas=(ADAM["beta1"], ADAM["beta2"]), eps=ADAM["eps"])

        def step(x, y):
            opt.zero_grad(set_to_none=True)
            if self.torch_loop:
                h = torch.zeros(x.shape[0], H)
                for t in range(x.shape[1]):
                    h = m(x[:, t], h)
            else:
                h = m(x)[0][:, -1]
            loss = ((h - y) ** 2).mean()
            loss.backward()
            opt.step()
            return loss.detach()

        return Impl(torch_fn(step, compiled),
                    lambda: [w_ih.detach().numpy().T.copy(), w_hh.detach().numpy().T.copy(),
                             b_ih.detach().numpy().copy()])

    def _jax(self, size):
        if self.torch_loop:
            raise NotImplementedError("the Python-loop variant is PyTorch's; JAX's scan is in rnn_step")
        import jax
        import jax.numpy as jnp

        T, B, D, H = self._dims(size)
        lstm = self.cell == "lstm"

        def loss_fn(params, x, y):
            K, R, b = params
            xw = jnp.swapaxes(x, 0, 1) @ K + b  # (T, B, k*H): one gemm before the loop

            def body(carry, xw_t):
                h, c = carry
                z = xw_t + h @ R
                if not lstm:
                    h = jnp.tanh(z)
                    return (h, c), None
                i, f, g, o = jnp.split(z, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                return (jax.nn.sigmoid(o) * jnp.tanh(c), c), None

            zero = jnp.zeros((x.shape[0], H), x.dtype)
            (h, _), _ = jax.lax.scan(body, (zero, zero), xw)
            return jnp.mean((h - y) ** 2)

        return Impl(*jax_training_step(loss_fn, recurrent_params(self.cell, D, H), LR, ADAM))

    def _pytensor(self, size, mode):
        if self.torch_loop:
            raise NotImplementedError("the Python-loop variant is PyTorch's; PyTensor's scan is in rnn_step")
        import pytensor
        import pytensor.tensor as pt

        T, B, D, H = self._dims(size)
        params = [pytensor.shared(p, name=n) for p, n in zip(recurrent_params(self.cell, D, H), "KRb")]
        K, R, b = params
        x, y = pt.tensor3("x", dtype="float32"), pt.matrix("y", dtype="float32")
        xw = pt.dot(x.dimshuffle(1, 0, 2), K) + b
        zero = pt.zeros((x.shape[0], H), dtype="float32")
        if self.cell == "lstm":
            def body(xw_t, h, c):
                z = xw_t + pt.dot(h, R)
                i, f, o = (pt.sigmoid(z[:, j * H:(j + 1) * H]) for j in (0, 1, 3))
                c = f * c + i * pt.tanh(z[:, 2 * H:3 * H])
                return o * pt.tanh(c), c
            hs = pytensor_scan(pytensor, body, [xw], [zero, zero])[0]
        else:
            hs = pytensor_scan(pytensor, lambda xw_t, h: pt.tanh(xw_t + pt.dot(h, R)), [xw], [zero])
        loss = pt.mean(pt.sqr(hs[-1] - y))
        return Impl(*pytensor_training_step([x, y], loss, params, LR, ADAM, mode))


def pytensor_scan(pytensor, fn, sequences, outputs_info):
    """`pytensor.scan`'s outputs (PyTensor returns (outputs, updates); the updates are empty here)."""
    res = pytensor.scan(fn, sequences=sequences, outputs_info=outputs_info)
    if isinstance(res, tuple) and len(res) == 2 and not isinstance(res[1], (list, tuple)):
        res = res[0]
    return res


class ScanOverhead(Workload):
    """A scan whose body is one small elementwise op, ``h = 0.5 * h + x_t`` on 4 floats (one fused
    kernel), returning the last state: the loop's own cost per step. graphc and a NumPy loop."""

    name = "scan_overhead"
    rtol, atol = 1e-5, 1e-6

    def _T(self, size):
        return 50_000 if size == "full" else 40

    def steps(self, size) -> int:
        return self._T(size)

    def title(self, size):
        return f"scan overhead: h = 0.5 h + x_t on 4 floats, {self._T(size)} steps"

    def data(self, size):
        rng = np.random.default_rng(12)
        return [(rng.standard_normal((self._T(size), 4)).astype("float32"),) for _ in range(2)]

    def cost(self, size):
        T = self._T(size)
        return 2.0 * 4 * T, 4.0 * 4 * T

    def _graphc(self, size):
        import graphc as gc

        x = gc.placeholder("x", (None, 4), "float32")
        ys = gc.scan(lambda xt, h: h * 0.5 + xt, sequences=x, outputs_info=gc.constant(np.zeros(4, "float32")))
        return Impl(gc.function([x], ys[-1], backend="c"))

    def _numpy(self, size):
        half = np.float32(0.5)

        def loop(x):
            h = np.zeros(4, "float32")
            for xt in x:
                h *= half
                h += xt
            return h

        return Impl(loop)

    def _torch(self, size, compiled):
        raise NotImplementedError("scan_overhead measures graphc's loop against a NumPy loop only")

    def _jax(self, size):
        raise NotImplementedError("scan_overhead measures graphc's loop against a NumPy loop only")


LSTM_STEP = RecurrentStep("lstm", (100, 64, 64, 256), "lstm_step")
RNN_STEP = RecurrentStep("rnn", (100, 32, 32, 128), "rnn_step")
RNN_STEP_PYLOOP = RecurrentStep("rnn", (100, 32, 32, 128), "rnn_step_pyloop", torch_loop=True)
SCAN_OVERHEAD = ScanOverhead()
