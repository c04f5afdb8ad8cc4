"""The kernel-sized workloads: elementwise chains, softmax cross-entropy, reductions, matmul."""

from __future__ import annotations

import numpy as np

from .frameworks import Math, jax_fn, pytensor_function, torch_fn
from .harness import Impl, Workload


class Elementwise(Workload):
    """A fused elementwise chain over a 1-D float32 array. `expr(m, x)` is written once and traced
    by graphc, PyTorch, JAX and PyTensor (`m` gives tanh/sigmoid/exp); `numpy_fn` is the
    hand-written twin."""

    def __init__(self, name, label, expr, numpy_fn, n, ops_per_element, seed, rtol=1e-5, atol=1e-6):
        self.name, self.label, self.expr, self.numpy_fn = name, label, expr, numpy_fn
        self.n, self.ops, self.seed, self.rtol, self.atol = n, ops_per_element, seed, rtol, atol

    def _len(self, size):
        return self.n if size == "full" else 1000

    def title(self, size):
        return f"{self.label}, {self._len(size):,} float32"

    def data(self, size):
        rng = np.random.default_rng(self.seed)
        return [(rng.uniform(-4, 4, self._len(size)).astype("float32"),) for _ in range(3)]

    def cost(self, size):
        n = self._len(size)
        return self.ops * n, 8 * n

    def _graphc(self, size):
        import graphc as gc

        x = gc.placeholder("x", (None,))
        return Impl(gc.function([x], self.expr(Math("graphc"), x), backend="c"))

    def _numpy(self, size):
        return Impl(self.numpy_fn)

    def _torch(self, size, compiled):
        m = Math("torch")
        return Impl(torch_fn(lambda x: self.expr(m, x), compiled))

    def _jax(self, size):
        m = Math("jax")
        return Impl(jax_fn(lambda x: self.expr(m, x)))

    def _pytensor(self, size, mode):
        import pytensor.tensor as pt

        x = pt.vector("x", dtype="float32")
        return Impl(pytensor_function([x], self.expr(Math("pytensor"), x), mode))


def _np_short_chain(x):
    y = x * np.float32(0.5)
    y += 1
    y *= x
    y -= np.float32(0.25)
    return y


def _np_long_chain(x):
    sq = x * x
    y = x * np.float32(0.7)
    y += np.float32(0.1)
    np.tanh(y, out=y)
    s = np.negative(x)  # sigmoid(x) = 1 / (1 + exp(-x))
    np.exp(s, out=s)
    s += 1
    y /= s
    np.negative(sq, out=s)
    np.exp(s, out=s)
    s *= np.float32(0.25)
    sq *= np.float32(0.5)
    y += sq
    y -= s
    return y


SHORT_CHAIN = Elementwise(
    "ew_short", "arithmetic chain `(0.5x+1)x-0.25`", lambda m, x: (x * 0.5 + 1.0) * x - 0.25, _np_short_chain,
    8 * 1024 * 1024, 4, seed=1)
LONG_CHAIN = Elementwise(
    "ew_long", "transcendental chain `tanh(0.7x+0.1)sigmoid(x)+0.5x^2-0.25exp(-x^2)`",
    lambda m, x: m.tanh(0.7 * x + 0.1) * m.sigmoid(x) + 0.5 * x * x - 0.25 * m.exp(-x * x), _np_long_chain,
    4 * 1024 * 1024, 12, seed=0, rtol=1e-4, atol=1e-5)


class CrossEntropy(Workload):
    """Softmax cross-entropy, forward and backward: the mean loss and its gradient w.r.t. the logits."""

    name = "xent"
    rtol, atol = 1e-4, 1e-6
    shapes = {"full": (512, 1000), "tiny": (8, 10)}

    def title(self, size):
        b, c = self._shape(size)
        return f"softmax cross-entropy fwd+bwd, {b}x{c} float32"

    def data(self, size):
        b, c = self._shape(size)
        rng = np.random.default_rng(6)
        return [(rng.normal(0, 3, (b, c)).astype("float32"), rng.integers(0, c, b).astype("int32"))
                for _ in range(3)]

    def cost(self, size):
        b, c = self._shape(size)
        return 6 * b * c, 8 * b * c + 4 * b

    def _graphc(self, size):
        import graphc as gc

        c = self._shape(size)[1]
        z = gc.placeholder("z", (None, c))
        t = gc.placeholder("t", (None,), "int32")
        loss = gc.softmax_cross_entropy(z, t).mean()
        return Impl(gc.function([z, t], [loss, gc.grad(loss, z)], backend="c"))

    def _numpy(self, size):
        def xent(z, t):
            n = z.shape[0]
            rows = np.arange(n)
            m = z.max(axis=1, keepdims=True)
            e = z - m
            np.exp(e, out=e)
            s = e.sum(axis=1, keepdims=True)
            loss = np.mean(np.log(s[:, 0]) + m[:, 0] - z[rows, t])
            e /= s
            e[rows, t] -= 1
            e *= np.float32(1 / n)
            return loss, e

        return Impl(xent)

    def _torch(self, size, compiled):
        import torch

        loss_fn = torch_fn(torch.nn.functional.cross_entropy, compiled)

        def xent(z, t):
            z = z.detach().requires_grad_()
            loss = loss_fn(z, t)
            loss.backward()
            return loss.detach(), z.grad

        return Impl(xent)

    def _jax(self, size):
        import jax
        import jax.numpy as jnp

        def loss(z, t):
            return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, t[:, None], axis=1)[:, 0])

        return Impl(jax_fn(jax.value_and_grad(loss)))

    def _pytensor(self, size, mode):
        import pytensor
        import pytensor.tensor as pt

        z, t = pt.matrix("z", dtype="float32"), pt.ivector("t")
        loss = pt.mean(pt.logsumexp(z, axis=1) - z[pt.arange(t.shape[0]), t])
        return Impl(pytensor_function([z, t], [loss, pytensor.grad(loss, z)], mode))


class Reduction(Workload):
    """`x.sum(axis)` of a 2-D float32 array."""

    def __init__(self, axis):
        self.axis = axis
        self.name = f"sum_axis{axis}" if axis is not None else "sum_all"
        self.shapes = {"full": (4096, 2048), "tiny": (33, 17)}

    def title(self, size):
        r, c = self._shape(size)
        return f"sum over {'all' if self.axis is None else f'axis {self.axis}'}, {r}x{c} float32"

    def data(self, size):
        rng = np.random.default_rng(7)
        return [(rng.standard_normal(self._shape(size)).astype("float32"),) for _ in range(3)]

    def tolerance(self, size):
        # float32 sums in different orders: allow a few ulp of the sum of magnitudes
        x = self.data(size)[0][0]
        return 1e-5, 1e-6 * float(np.abs(x).sum(axis=self.axis).max())

    def cost(self, size):
        r, c = self._shape(size)
        out = {0: c, 1: r, None: 1}[self.axis]
        return r * c, 4 * (r * c + out)

    def _graphc(self, size):
        import graphc as gc

        x = gc.placeholder("x", self._shape(size))
        return Impl(gc.function([x], x.sum(axis=self.axis), backend="c"))

    def _numpy(self, size):
        return Impl(lambda x: x.sum(axis=self.axis))

    def _torch(self, size, compiled):
        ax = self.axis
        return Impl(torch_fn(lambda x: x.sum() if ax is None else x.sum(dim=ax), compiled))

    def _jax(self, size):
        return Impl(jax_fn(lambda x: x.sum(axis=self.axis)))

    def _pytensor(self, size, mode):
        import pytensor.tensor as pt

        x = pt.matrix("x", dtype="float32")
        return Impl(pytensor_function([x], x.sum(axis=self.axis), mode))


class Matmul(Workload):
    """`a @ b`, square float32."""

    rtol, atol = 1e-3, 1e-3

    def __init__(self, n):
        self.n = n
        self.name = f"matmul_{n}"

    def _n(self, size):
        return self.n if size == "full" else max(4, self.n // 64)

    def title(self, size):
        n = self._n(size)
        return f"matmul {n}x{n} @ {n}x{n} float32"

    def data(self, size):
        n = self._n(size)
        rng = np.random.default_rng(2)
        return [tuple(rng.standard_normal((n, n)).astype("float32") for _ in range(2)) for _ in range(3)]

    def cost(self, size):
        n = self._n(size)
        return 2 * n**3, 12 * n * n

    def _graphc(self, size):
        import graphc as gc

        n = self._n(size)
        a, b = gc.placeholder("a", (n, n)), gc.placeholder("b", (n, n))
        return Impl(gc.function([a, b], a @ b, backend="c"))

    def _numpy(self, size):
        return Impl(np.matmul)

    def _torch(self, size, compiled):
        import torch

        return Impl(torch_fn(torch.matmul, compiled))

    def _jax(self, size):
        import jax.numpy as jnp

        return Impl(jax_fn(jnp.matmul))

    def _pytensor(self, size, mode):
        import pytensor.tensor as pt

        a, b = pt.matrix("a", dtype="float32"), pt.matrix("b", dtype="float32")
        return Impl(pytensor_function([a, b], pt.dot(a, b), mode))
