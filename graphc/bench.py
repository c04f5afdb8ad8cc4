"""`graphc bench`: graphc side by side with NumPy, PyTorch and JAX, against the machine's limits.

Every workload is defined once, as a graphc graph, with a hand-written NumPy twin (what a good
NumPy user writes: in-place operations where natural) and, when installed, a PyTorch twin (eager,
and ``torch.compile`` in the full run) and a JAX twin (``jax.jit``).

Method (learned on a 2-core machine; see benchmarks/RESULTS.md):

- **Correctness gate first.** Every graphc output, and every twin's, is compared with the NumPy
  twin's before anything is timed (stateful workloads: a few steps from identical weights, then
  the weights). A mismatch refuses to time the contender: it is recorded as FAILED, with the
  error, never as a time.
- **Alternating blocks.** graphc and NumPy are timed in one process, in alternating blocks; each
  block starts after a settle pause and two untimed calls, because NumPy's OpenBLAS pool and
  graphc's OpenMP/OpenBLAS pools keep spinning for a while after use and a contender timed right
  after another would pay for the other's threads. Inputs rotate among several arrays.
- **Other frameworks in child processes.** PyTorch (its own OpenMP pool), ``torch.compile`` and
  JAX (XLA's own thread pool) each run in a child process of their own, started after the graphc
  and NumPy timings: in one process their pools would contend with NumPy's and graphc's on 2
  cores (graphc's MLP step measured 48 ms instead of 3 ms beside an idle-spinning PyTorch).
- **Ceilings in the same run.** Memory bandwidth (``np.copyto`` of 32 MB, read + write) and
  float32 gemm (2048^3) are measured at the start and at the end of the run; the larger of the
  two is the ceiling. Each workload's FLOPs and compulsory bytes are counted, its roofline time
  is ``max(flops / gemm ceiling, bytes / bandwidth)``, and the fraction of the roofline reached is
  that time over the measured median.
- **Statistics.** Medians, with the interquartile range and min-max kept in the JSON.

Programmatic use: ``run(names, mode)`` returns the results dict that ``--json`` writes.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

import numpy as np

BEGIN_MARK = "<!-- graphc bench: begin -->"
END_MARK = "<!-- graphc bench: end -->"
FRAMEWORKS = ("graphc", "numpy", "torch", "torch_compile", "jax")
LABELS = {"graphc": "graphc", "numpy": "NumPy", "torch": "PyTorch", "torch_compile": "torch.compile", "jax": "JAX"}


@dataclass(frozen=True)
class Mode:
    """How hard to measure. `budget` seconds of timed calls per contender, `lo`..`hi` repeats,
    split into `blocks` alternating blocks, each after a `settle` pause."""

    name: str
    size: str  # "tiny" (tests) or "full" (the benchmark sizes)
    budget: float
    lo: int
    hi: int
    blocks: int
    settle: float
    warmup: int
    compile_runs: int  # cold/warm compile-time samples
    torch_compile: bool
    child_timeout: float


MODES = {
    "full": Mode("full", "full", 1.5, 31, 601, 6, 0.1, 3, 3, True, 420.0),
    "quick": Mode("quick", "full", 0.12, 7, 61, 3, 0.05, 2, 1, False, 150.0),
    "tiny": Mode("tiny", "tiny", 0.0, 3, 3, 1, 0.0, 1, 1, False, 120.0),
}


# ---------------------------------------------------------------------------------------------
# timing


def time_blocks(fns: Sequence[Callable], args_lists: Sequence[Sequence[tuple]], repeat: int = 15, warmup: int = 3,
                block: int = 10, settle: float = 0.1) -> list[list[float]]:
    """Seconds of every call of each function, measured in alternating blocks (a x block, b x block,
    a x block, ...) so that a drift in machine load affects every contender alike. Before each
    block the process sleeps `settle` seconds and makes two untimed calls: the BLAS and OpenMP
    thread pools (NumPy's, graphc's and PyTorch's are separate) keep spinning for a while after
    use, and a contender timed right after another would otherwise pay for the other's pool
    (measured: NumPy's MLP step 3.3 ms alone, 3.9-7 ms right after graphc's). The inputs rotate
    through each `args_lists` entry."""
    for i in range(warmup):
        for fn, args in zip(fns, args_lists):
            fn(*args[i % len(args)])
    times: list[list[float]] = [[] for _ in fns]
    done = 0
    while done < repeat:
        for j, (fn, args) in enumerate(zip(fns, args_lists)):
            if settle:
                time.sleep(settle)
            fn(*args[0])
            fn(*args[1 % len(args)])
            for i in range(done, min(done + block, repeat)):
                a = args[i % len(args)]
                t0 = time.perf_counter()
                fn(*a)
                times[j].append(time.perf_counter() - t0)
        done += block
    return times


def median_seconds(fns, args_lists, **kw) -> list[float]:
    """The median of each function's `time_blocks` times."""
    return [statistics.median(t) for t in time_blocks(fns, args_lists, **kw)]


def summarize(times: Sequence[float]) -> dict:
    """Median, quartiles, min and max of a list of seconds."""
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "min": float(min(times)),
            "max": float(max(times)), "n": len(times)}


def plan_repeats(seconds_per_call: float, mode: Mode) -> tuple[int, int]:
    """(repeat, block) for a contender taking about `seconds_per_call`: `mode.budget` seconds of
    timed calls, clamped to `mode.lo..mode.hi`, in `mode.blocks` blocks."""
    want = mode.budget / max(seconds_per_call, 1e-7)
    repeat = int(min(mode.hi, max(mode.lo, want)))
    return repeat, max(1, -(-repeat // mode.blocks))


def check_close(got, want, rtol: float, atol: float, what: str, outliers: tuple[float, float] | None = None) -> None:
    """Raise AssertionError unless every array of `got` matches `want` (same count and shapes).
    With `outliers` = (fraction, loose_atol), up to that fraction of each array's elements (at least
    one) may miss the tolerance if they stay within `loose_atol`."""
    if len(got) != len(want):
        raise AssertionError(f"{what}: {len(got)} outputs, the NumPy twin gives {len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            raise AssertionError(f"{what}: output {i} has shape {g.shape}, the NumPy twin's {w.shape}")
        msg = f"{what}: output {i} disagrees with NumPy"
        if outliers is not None and g.size:
            bad = ~np.isclose(g, w, rtol=rtol, atol=atol)
            if np.count_nonzero(bad) <= max(1, int(outliers[0] * g.size)):
                np.testing.assert_allclose(g[bad], w[bad], rtol=0, atol=outliers[1], err_msg=msg + " (outliers)")
                continue
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=msg)


# ---------------------------------------------------------------------------------------------
# implementations and workloads


@dataclass
class Impl:
    """One contender for one workload: `fn(*args)` on already converted inputs; `state()` gives the
    arrays a stateful workload (a training step) must agree on after the gate's steps."""

    fn: Callable
    state: Callable[[], list] | None = None


def _to_numpy_list(out) -> list[np.ndarray]:
    if isinstance(out, (list, tuple)):
        return [_to_numpy(o) for o in out]
    return [_to_numpy(out)]


def _to_numpy(o) -> np.ndarray:
    if hasattr(o, "detach"):  # torch
        return o.detach().numpy()
    return np.asarray(o)


def _convert(framework: str, arrays: tuple) -> tuple:
    """NumPy inputs as the framework takes them (outside any timing)."""
    if framework in ("torch", "torch_compile"):
        import torch

        return tuple(torch.from_numpy(a.astype(np.int64) if a.dtype.kind == "i" else a) for a in arrays)
    if framework == "jax":
        import jax

        return tuple(jax.device_put(a) for a in arrays)
    return arrays


class Workload:
    """A benchmark: inputs, a cost model and one implementation per framework.

    Subclasses define `title`, `data` (a list of input tuples, rotated while timing; seeded, so
    that a child process rebuilds the same ones), `cost` (FLOPs and compulsory bytes per call) and
    `_graphc`, `_numpy`, `_torch`, `_jax` returning an `Impl`."""

    name = ""
    rtol, atol = 1e-5, 1e-6
    gate_steps = 1  # stateful workloads: steps compared before timing
    state_outliers: tuple[float, float] | None = None  # see check_close

    def title(self, size: str) -> str:
        raise NotImplementedError

    def data(self, size: str) -> list[tuple]:
        raise NotImplementedError

    def cost(self, size: str) -> tuple[float, float]:
        raise NotImplementedError

    def tolerance(self, size: str) -> tuple[float, float]:
        return self.rtol, self.atol

    shapes: dict[str, tuple[int, ...]] = {}  # the input shape per size, where a workload has one

    def _shape(self, size: str) -> tuple[int, ...]:
        return self.shapes[size]

    def impl(self, framework: str, size: str) -> Impl:
        if framework == "torch_compile":
            return self._torch(size, compiled=True)
        if framework == "torch":
            return self._torch(size, compiled=False)
        return getattr(self, "_" + framework)(size)

    def _torch(self, size: str, compiled: bool) -> Impl:
        raise NotImplementedError

    def _graphc(self, size: str) -> Impl:
        raise NotImplementedError

    def _numpy(self, size: str) -> Impl:
        raise NotImplementedError

    def _jax(self, size: str) -> Impl:
        raise NotImplementedError


def _torch_fn(fn, compiled: bool):
    import torch

    return torch.compile(fn) if compiled else fn


def _jax_fn(fn, **jit_kw):
    import jax

    jf = jax.jit(fn, **jit_kw)
    return lambda *a: jax.block_until_ready(jf(*a))


class _Math:
    """The elementwise functions an expression needs, from one framework."""

    def __init__(self, framework: str):
        if framework == "graphc":
            import graphc as gc

            self.tanh, self.sigmoid, self.exp = gc.tanh, gc.sigmoid, gc.exp
        elif framework == "jax":
            import jax
            import jax.numpy as jnp

            self.tanh, self.sigmoid, self.exp = jnp.tanh, jax.nn.sigmoid, jnp.exp
        else:
            import torch

            self.tanh, self.sigmoid, self.exp = torch.tanh, torch.sigmoid, torch.exp


class Elementwise(Workload):
    """A fused elementwise chain over a 1-D float32 array. `expr(m, x)` is written once and traced
    by graphc, PyTorch and JAX (`m` gives tanh/sigmoid/exp); `numpy_fn` is the hand-written twin."""

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
        return Impl(gc.function([x], self.expr(_Math("graphc"), x), backend="c"))

    def _numpy(self, size):
        return Impl(self.numpy_fn)

    def _torch(self, size, compiled):
        m = _Math("torch")
        return Impl(_torch_fn(lambda x: self.expr(m, x), compiled))

    def _jax(self, size):
        m = _Math("jax")
        return Impl(_jax_fn(lambda x: self.expr(m, x)))


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

        loss_fn = _torch_fn(torch.nn.functional.cross_entropy, compiled)

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

        return Impl(_jax_fn(jax.value_and_grad(loss)))


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
        return Impl(_torch_fn(lambda x: x.sum() if ax is None else x.sum(dim=ax), compiled))

    def _jax(self, size):
        return Impl(_jax_fn(lambda x: x.sum(axis=self.axis)))


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

        return Impl(_torch_fn(torch.matmul, compiled))

    def _jax(self, size):
        import jax.numpy as jnp

        return Impl(_jax_fn(jnp.matmul))


# the MLP training step ----------------------------------------------------------------------

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
            b1, b2, eps = ADAM["beta1"], ADAM["beta2"], ADAM["eps"]
            step_size = np.float32(self.lr / (1 - b1**self.t))
            inv_bc2 = np.float32(1 / np.sqrt(1 - b2**self.t))
            for p, g, m, v in zip(self.params, grads, self.m, self.v):
                m *= np.float32(b1)
                m += np.float32(1 - b1) * g
                v *= np.float32(b2)
                g *= g
                g *= np.float32(1 - b2)
                v += g
                d = np.sqrt(v)
                d *= inv_bc2
                d += np.float32(eps)
                np.divide(m, d, out=d)
                d *= step_size
                p -= d
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
        return Impl(_torch_fn(step, compiled),
                    lambda: [m.weight.detach().numpy().T.copy() for m in lins] + [m.bias.detach().numpy().copy()
                                                                                   for m in lins])

    def _jax(self, size):
        import jax
        import jax.numpy as jnp

        ws, bs = mlp_params(np.random.default_rng(3), self._sizes(size))
        lr, adam = self.lr, self.optimizer == "adam"
        b1, b2, eps = ADAM["beta1"], ADAM["beta2"], ADAM["eps"]

        def loss_fn(params, x, t):
            h = x
            n = len(params) // 2
            for i in range(n):
                h = h @ params[i] + params[n + i]
                if i < n - 1:
                    h = jax.nn.relu(h)
            return jnp.mean(jax.nn.logsumexp(h, axis=1) - jnp.take_along_axis(h, t[:, None], axis=1)[:, 0])

        def step(params, m, v, k, x, t):
            loss, g = jax.value_and_grad(loss_fn)(params, x, t)
            if not adam:
                return loss, [p - lr * gi for p, gi in zip(params, g)], m, v, k
            k = k + 1
            m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
            v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
            step_size = lr / (1 - b1**k)
            inv_bc2 = 1 / jnp.sqrt(1 - b2**k)
            params = [p - step_size * mi / (jnp.sqrt(vi) * inv_bc2 + eps) for p, mi, vi in zip(params, m, v)]
            return loss, params, m, v, k

        jstep = jax.jit(step, donate_argnums=(0, 1, 2))
        params = [jnp.asarray(p) for p in ws + bs]
        st = [params, [jnp.zeros_like(p) for p in params], [jnp.zeros_like(p) for p in params], jnp.float32(0)]

        def fn(x, t):
            loss, p, m, v, k = jstep(*st, x, t)
            st[:] = [p, m, v, k]
            jax.block_until_ready((loss, st[0]))
            return loss

        return Impl(fn, lambda: [np.asarray(p) for p in st[0]])


class CompileTime(Workload):
    """Compile time of the MLP Adam training step: cold (a fresh GRAPHC_CACHE_DIR in a new process:
    graph passes, code generation and gcc) and warm (a new process finding the cache entry)."""

    name = "compile"

    def title(self, size):
        return f"compile {MLP_ADAM.title(size)}"


MLP_ADAM = MLPStep("adam", 128)
COMPILE = CompileTime()

def _lenet():
    from .bench_lenet import LeNetStep  # its module imports this one

    return LeNetStep()


# The workloads of `graphc bench`, in table order.
WORKLOADS: dict[str, Workload] = {w.name: w for w in [
    SHORT_CHAIN, LONG_CHAIN, CrossEntropy(), Reduction(0), Reduction(1), Reduction(None),
    Matmul(128), Matmul(512), Matmul(1024), MLP_ADAM, _lenet(), COMPILE,
]}
# Run only when named with --only: the issue-3 SGD steps (benchmarks/c_backend.py).
EXTRA_WORKLOADS: dict[str, Workload] = {w.name: w for w in [
    MLPStep("sgd", 128, "mlp_sgd_128"), MLPStep("sgd", 16, "mlp_sgd_16"),
]}
PENDING: dict[str, str] = {}


def select(only: str | None) -> list[str]:
    """Workload names matching `only` (comma-separated names or globs; a prefix matches too)."""
    if not only:
        return list(WORKLOADS)
    every = list(WORKLOADS) + list(EXTRA_WORKLOADS)
    names: list[str] = []
    for pat in (p.strip() for p in only.split(",")):
        if not pat:
            continue
        hits = [n for n in every if fnmatch.fnmatch(n, pat) or n.startswith(pat)]
        if not hits:
            raise ValueError(f"no workload matches {pat!r}; workloads: {', '.join(every)}"
                             + "".join(f"; {k} is pending ({v})" for k, v in PENDING.items() if k == pat))
        names += [n for n in hits if n not in names]
    return names


def get_workload(name: str) -> Workload:
    return WORKLOADS.get(name) or EXTRA_WORKLOADS[name]


# ---------------------------------------------------------------------------------------------
# running one framework's side of a workload


def gate(wl: Workload, framework: str, size: str, data: list[tuple], impl: Impl, args: list[tuple]) -> float:
    """Compare `impl` (framework's implementation, `args` its converted `data`) with a fresh NumPy
    twin: one call, or for a stateful workload `gate_steps` steps and then the state. Raises on
    any disagreement; returns the seconds of impl's first call (which compiles, for JAX and
    torch.compile)."""
    rtol, atol = wl.tolerance(size)
    ref = wl.impl("numpy", size)
    what = f"{wl.name} ({LABELS[framework]})"
    first = 0.0
    for k in range(wl.gate_steps):
        want = _to_numpy_list(ref.fn(*data[k % len(data)]))
        t0 = time.perf_counter()
        out = impl.fn(*args[k % len(args)])
        if k == 0:
            first = time.perf_counter() - t0
        check_close(_to_numpy_list(out), want, rtol, atol, what)
    if impl.state is not None:
        check_close(impl.state(), ref.state(), rtol, atol, f"{what}, state after {wl.gate_steps} steps",
                    wl.state_outliers)
    return first


def _error(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}".strip()
    lines = [ln for ln in msg.splitlines() if ln.strip()]
    return " / ".join(lines[:6])[:600]


def run_side(wl: Workload, frameworks: Sequence[str], mode: Mode) -> dict:
    """Gate, then time, `frameworks` (contenders that share this process) on `wl`, in alternating
    blocks. Returns {"times": {fw: stats}, "failed": {fw: error}, "build_s": {fw: seconds}}, where
    build_s is the time to build the implementation plus its first call."""
    size = mode.size
    data = wl.data(size)
    out: dict = {"times": {}, "failed": {}, "build_s": {}}
    ready = []
    for fw in frameworks:
        try:
            t0 = time.perf_counter()
            impl = wl.impl(fw, size)
            build = time.perf_counter() - t0
            args = [_convert(fw, a) for a in data]
            out["build_s"][fw] = build + gate(wl, fw, size, data, impl, args)
        except NotImplementedError as e:  # no twin written for this framework: shown as "—"
            out.setdefault("no_twin", {})[fw] = str(e)
            continue
        except Exception as e:  # a failed gate or a twin that cannot run: recorded, never timed
            out["failed"][fw] = _error(e)
            out["build_s"].pop(fw, None)
            continue
        ready.append((fw, impl, args))
    if not ready or frameworks[0] in out["failed"]:  # the subject (graphc, in the parent) failed: time nothing
        return out
    estimates = []
    for _, impl, args in ready:
        t0 = time.perf_counter()
        impl.fn(*args[1 % len(args)])
        estimates.append(time.perf_counter() - t0)
    repeat, block = plan_repeats(max(estimates), mode)
    times = time_blocks([r[1].fn for r in ready], [r[2] for r in ready], repeat=repeat, warmup=mode.warmup,
                        block=block, settle=mode.settle)
    for (fw, _, _), t in zip(ready, times):
        out["times"][fw] = summarize(t)
    return out


# ---------------------------------------------------------------------------------------------
# child processes


CHILD_CODE = "import sys; from graphc.bench import _child_main; sys.exit(_child_main(sys.argv[1]))"
CHILD_TAG = "GRAPHC-BENCH "


def _child_main(spec_json: str) -> int:
    """Entry point of a child process: time one framework on the given workloads, printing one
    tagged JSON line per workload as soon as it is done (a timeout keeps the finished ones)."""
    spec = json.loads(spec_json)
    mode = MODES[spec["mode"]]
    fw = spec["framework"]
    if fw == "jax":
        import warnings

        warnings.filterwarnings("ignore", message=".*[Dd]onat.*")
    for name in spec["names"]:
        try:
            res = run_side(get_workload(name), [fw], mode)
        except Exception as e:
            res = {"times": {}, "failed": {fw: _error(e)}, "build_s": {}}
            traceback.print_exc()
        print(CHILD_TAG + json.dumps({"name": name, **res}), flush=True)
    return 0


def framework_available(fw: str) -> bool:
    mod = {"torch": "torch", "torch_compile": "torch", "jax": "jax"}.get(fw)
    return mod is None or importlib.util.find_spec(mod) is not None


def run_child(fw: str, names: list[str], mode: Mode, log=print) -> dict[str, dict]:
    """Time framework `fw` on `names` in a child process; {name: run_side result}. Workloads the
    child did not finish (timeout, crash) get a failure naming the cause."""
    env = dict(os.environ)
    tmp = None
    if fw == "torch_compile":
        env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no compile-worker pool spinning beside the timings
        tmp = tempfile.mkdtemp(prefix="graphc-bench-inductor-")
        env["TORCHINDUCTOR_CACHE_DIR"] = tmp  # a cold compile, comparable with graphc's cold one
    spec = json.dumps({"framework": fw, "names": names, "mode": mode.name})
    proc = subprocess.Popen([sys.executable, "-c", CHILD_CODE, spec], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    why = None
    try:
        stdout, stderr = proc.communicate(timeout=mode.child_timeout)
        if proc.returncode:
            why = f"child process exited with {proc.returncode}: {stderr.strip().splitlines()[-1:] or ''}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        why = f"timeout: the {LABELS[fw]} child ran past {mode.child_timeout:.0f} s"
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    results = {}
    for line in (stdout or "").splitlines():
        if line.startswith(CHILD_TAG):
            r = json.loads(line[len(CHILD_TAG):])
            results[r.pop("name")] = r
    for name in names:
        if name not in results:
            results[name] = {"times": {}, "failed": {fw: why or "the child process gave no result"}, "build_s": {}}
    return results


COMPILE_CHILD = """
import json, time
from graphc.bench import MLP_ADAM, graphc_mlp_step
from graphc.backends.c import build
f, _, s = graphc_mlp_step(MLP_ADAM._sizes({size!r}))
print("GRAPHC-BENCH " + json.dumps({{"compile_s": s, "stats": build.STATS}}))
"""


def run_compile(mode: Mode) -> dict:
    """Cold and warm compile time of the MLP Adam step, each in a new process: cold with a fresh
    GRAPHC_CACHE_DIR (passes + codegen + gcc), warm right after in the same directory (cache hit)."""
    cold, warm = [], []
    out: dict = {"times": {}, "failed": {}, "build_s": {}}
    try:
        for _ in range(mode.compile_runs):
            cache = tempfile.mkdtemp(prefix="graphc-bench-cache-")
            try:
                env = dict(os.environ, GRAPHC_CACHE_DIR=cache)
                for want_compiles, sink in ((1, cold), (0, warm)):
                    r = subprocess.run([sys.executable, "-c", COMPILE_CHILD.format(size=mode.size)], env=env,
                                       capture_output=True, text=True, timeout=300)
                    if r.returncode:
                        raise RuntimeError(f"compile child failed: {r.stderr.strip()[-400:]}")
                    line = [ln for ln in r.stdout.splitlines() if ln.startswith(CHILD_TAG)][-1]
                    res = json.loads(line[len(CHILD_TAG):])
                    if res["stats"]["compiles"] != want_compiles:
                        raise AssertionError(f"expected {want_compiles} gcc compile(s), the child made "
                                             f"{res['stats']['compiles']} ({res['stats']})")
                    sink.append(res["compile_s"])
            finally:
                shutil.rmtree(cache, ignore_errors=True)
    except Exception as e:
        out["failed"]["graphc"] = _error(e)
        return out
    out["times"] = {"cold": summarize(cold), "warm": summarize(warm)}
    return out


# ---------------------------------------------------------------------------------------------
# ceilings, machine, the whole run


def measure_ceilings(mode: Mode) -> dict:
    """Memory bandwidth (np.copyto of 8M float32, read + write bytes) and float32 gemm (2048^3)."""
    rng = np.random.default_rng(5)
    n = 8 * 1024 * 1024 if mode.size == "full" else 1024 * 1024
    src = [(rng.standard_normal(n).astype("float32"),) for _ in range(2)]
    dst = np.empty(n, "float32")
    reps = 21 if mode.name == "full" else 9
    tc, = median_seconds([lambda a: np.copyto(dst, a)], [src], repeat=reps, warmup=2, block=reps, settle=0)
    k = 2048 if mode.size == "full" else 512
    a = [(rng.standard_normal((k, k)).astype("float32"), rng.standard_normal((k, k)).astype("float32"))]
    tg, = median_seconds([np.matmul], [a], repeat=max(3, reps // 3), warmup=1, block=reps, settle=0)
    return {"copy_GBps": 2 * 4 * n / tc / 1e9, "sgemm_GFLOPs": 2 * k**3 / tg / 1e9}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """The machine and software versions (without importing PyTorch or JAX into this process)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        gcc = subprocess.run([os.environ.get("CC", "gcc"), "-dumpfullversion"], capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        gcc = None
    import graphc

    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "os": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "graphc": graphc.__version__, "gcc": gcc, "torch": _version("torch"), "jax": _version("jax"),
            "jaxlib": _version("jaxlib"), "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "load_start": _loadavg()}


def _loadavg() -> float | None:
    """The 1-minute load average: other processes on a 2-core machine spoil every timing."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def cpu_snapshot() -> dict | None:
    """Machine-wide busy and steal CPU seconds (/proc/stat) and this process's own CPU seconds
    (its finished children included): two snapshots tell how much CPU other processes took."""
    try:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = vals
    t = os.times()
    return {"busy": (user + nice + system + irq + softirq) / hz, "steal": steal / hz,
            "own": t.user + t.system + t.children_user + t.children_system, "wall": time.monotonic()}


def others_load(a: dict | None, b: dict | None, cores: int) -> dict:
    """The share of the machine's CPU that other processes, and the hypervisor (steal), took
    between snapshots `a` and `b`."""
    if not a or not b or b["wall"] <= a["wall"]:
        return {}
    cap = (b["wall"] - a["wall"]) * cores
    return {"others_cpu_fraction": max(0.0, (b["busy"] - a["busy"]) - (b["own"] - a["own"])) / cap,
            "steal_fraction": (b["steal"] - a["steal"]) / cap}


def finish_row(row: dict, ceil: dict) -> None:
    """Ratios and roofline figures of one workload's row (in place)."""
    t = {fw: s["median"] for fw, s in row["times"].items() if fw in FRAMEWORKS}
    if "graphc" in t:
        row["speedup"] = {fw: t[fw] / t["graphc"] for fw in t if fw != "graphc"}
    flops, nbytes = row.get("flops"), row.get("bytes")
    if not flops or not nbytes:
        return
    t_flops, t_bytes = flops / (ceil["sgemm_GFLOPs"] * 1e9), nbytes / (ceil["copy_GBps"] * 1e9)
    row["bound"] = "compute" if t_flops >= t_bytes else "memory"
    row["roofline_s"] = max(t_flops, t_bytes)
    row["achieved"], row["roofline_fraction"] = {}, {}
    for fw, s in t.items():
        row["achieved"][fw] = (flops / s / 1e9) if row["bound"] == "compute" else (nbytes / s / 1e9)
        row["roofline_fraction"][fw] = row["roofline_s"] / s


def run(names: Sequence[str] | None = None, mode: str | Mode = "full", log=None) -> dict:
    """Run the benchmark: the results dict that `--json` writes."""
    mode = MODES[mode] if isinstance(mode, str) else mode
    log = log or (lambda *a: None)
    names = list(names) if names is not None else list(WORKLOADS)
    t_start = time.perf_counter()
    machine = machine_info()
    snap = cpu_snapshot()
    log(f"ceilings ({mode.name}) ...")
    ceil_start = measure_ceilings(mode)
    rows: dict[str, dict] = {}
    for name in names:
        wl = get_workload(name)
        log(f"{name}: graphc and NumPy ...")
        if isinstance(wl, CompileTime):
            res = run_compile(mode)
        else:
            res = run_side(wl, ["graphc", "numpy"], mode)  # a graphc refused by the gate: nothing is timed
        rows[name] = {"name": name, "title": wl.title(mode.size), **res}
    timed = [n for n in names if not isinstance(get_workload(n), CompileTime) and "graphc" not in rows[n]["failed"]]
    if any(isinstance(get_workload(n), CompileTime) for n in names) and MLP_ADAM.name not in timed:
        extra_mlp = [MLP_ADAM.name]  # the compile row shows JAX's and torch.compile's first call of this step
    else:
        extra_mlp = []
    skipped: dict[str, str] = {}
    for fw in ("torch", "torch_compile", "jax"):
        if not framework_available(fw):
            skipped[fw] = "not installed"
            continue
        if fw == "torch_compile" and not mode.torch_compile:
            skipped[fw] = f"not run in {mode.name} mode (compiling costs minutes; the full run has it)"
            continue
        todo = timed + [n for n in extra_mlp if n not in timed]
        if not todo:
            continue
        log(f"{LABELS[fw]} (child process) ...")
        for name, res in run_child(fw, todo, mode).items():
            if name not in rows:
                rows[name] = {"name": name, "title": get_workload(name).title(mode.size), "times": {},
                              "failed": {}, "build_s": {}, "hidden": True}
            for key in ("times", "failed", "build_s"):
                rows[name][key].update(res[key])
    log("ceilings again ...")
    ceil_end = measure_ceilings(mode)
    ceil = {k: max(ceil_start[k], ceil_end[k]) for k in ceil_start}
    for name, row in rows.items():
        wl = get_workload(name)
        if isinstance(wl, CompileTime):
            mlp = rows.get(MLP_ADAM.name, {}).get("build_s", {})
            row["first_call_s"] = {fw: mlp[fw] for fw in ("jax", "torch_compile") if fw in mlp}
            continue
        row["flops"], row["bytes"] = wl.cost(mode.size)
        row["status"] = "FAILED" if "graphc" in row["failed"] else "ok"
        if row["status"] == "ok":
            finish_row(row, ceil)
    for row in rows.values():
        row.setdefault("status", "FAILED" if "graphc" in row["failed"] else "ok")
    machine.update(others_load(snap, cpu_snapshot(), machine["cores"] or 1))
    return {"mode": mode.name, "machine": machine, "ceilings": {**ceil, "start": ceil_start, "end": ceil_end},
            "skipped": skipped, "pending": dict(PENDING), "elapsed_s": time.perf_counter() - t_start,
            "workloads": [rows[n] for n in rows]}


# ---------------------------------------------------------------------------------------------
# output


def fmt_seconds(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale or unit == "µs":
            v = s / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{s:g} s"


def _cell(row: dict, fw: str, results: dict) -> str:
    if fw in row["times"]:
        st = row["times"][fw]
        spread = (st["q3"] - st["q1"]) / 2 / st["median"] * 100
        return f"{fmt_seconds(st['median'])} ±{spread:.0f}%"
    if fw in row["failed"]:
        return "FAILED"
    if fw in results.get("skipped", {}):
        return "—"
    return "—"


def markdown_table(results: dict) -> str:
    """The results as a Markdown table (visible rows only) with footnotes for failures."""
    hdr = ["workload", "graphc", "NumPy", "PyTorch", "torch.compile", "JAX", "x NumPy", "x PyTorch",
           "x torch.compile", "x JAX", "graphc achieved", "roofline"]
    lines = ["| " + " | ".join(hdr) + " |", "|" + " --- |" * len(hdr)]
    notes = []
    for row in results["workloads"]:
        if row.get("hidden"):
            continue
        if row["name"] == "compile":
            lines += _compile_lines(row)
            if row["failed"]:
                notes.append(f"`compile`: FAILED: {row['failed'].get('graphc')}")
            continue
        cells = [row["title"]] + [_cell(row, fw, results) for fw in FRAMEWORKS]
        sp = row.get("speedup", {})
        for fw in ("numpy", "torch", "torch_compile", "jax"):
            cells.append(f"**{sp[fw]:.2f}x**" if fw == "numpy" and fw in sp else f"{sp[fw]:.2f}x" if fw in sp else "")
        if "graphc" in row.get("achieved", {}):
            unit = "GFLOP/s" if row["bound"] == "compute" else "GB/s"
            cells += [f"{row['achieved']['graphc']:.3g} {unit}",
                      f"{100 * row['roofline_fraction']['graphc']:.0f}% ({row['bound']})"]
        else:
            cells += ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
        for fw, err in row["failed"].items():
            notes.append(f"`{row['name']}` {LABELS[fw]}: FAILED: {err}")
    out = "\n".join(lines)
    if notes:
        out += "\n\nFailures (refused by the correctness gate or unable to run; never timed):\n\n" + "\n".join(
            f"- {n}" for n in notes)
    return out


def _compile_lines(row: dict) -> list[str]:
    t = row.get("times", {})
    first = row.get("first_call_s", {})
    blank = [""] * 6
    cold = fmt_seconds(t["cold"]["median"]) + f" ({fmt_seconds(t['cold']['min'])}–{fmt_seconds(t['cold']['max'])})" \
        if "cold" in t else "FAILED"
    warm = fmt_seconds(t["warm"]["median"]) + f" ({fmt_seconds(t['warm']['min'])}–{fmt_seconds(t['warm']['max'])})" \
        if "warm" in t else "FAILED"
    tc = fmt_seconds(first["torch_compile"]) + " (first call)" if "torch_compile" in first else "—"
    jx = fmt_seconds(first["jax"]) + " (first call)" if "jax" in first else "—"
    return [f"| {row['title']}, cold (new process, empty cache: passes, codegen, gcc) | {cold} | — | — | {tc} | "
            f"{jx} | " + " | ".join(blank) + " |",
            f"| {row['title']}, warm (new process, cache hit) | {warm} | — | — | — | — | " + " | ".join(blank) + " |"]


def summary_text(results: dict, command: str) -> str:
    m, c = results["machine"], results["ceilings"]
    soft = [f"Python {m['python']}", f"NumPy {m['numpy']}", f"graphc {m['graphc']}", f"gcc {m['gcc']}"]
    soft += [f"PyTorch {m['torch']}" if m["torch"] else "PyTorch not installed",
             f"JAX {m['jax']} (jaxlib {m['jaxlib']})" if m["jax"] else "JAX not installed"]
    lines = [
        f"Command: `{command}` ({results['mode']} mode; the run took {results['elapsed_s']:.0f} s, {m['date']}).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable); {', '.join(soft)}; {m['os']}.",
        "",
        f"Other load: 1-minute load average {_fmt_load(m.get('load_start'))} before the run; during it, other "
        f"processes took {_fmt_pct(m.get('others_cpu_fraction'))} of the CPU and the hypervisor "
        f"{_fmt_pct(m.get('steal_fraction'))} (steal)"
        + (" — **the machine was busy, and the timings suffer**" if (m.get("others_cpu_fraction") or 0)
           + (m.get("steal_fraction") or 0) > 0.1 else "") + ".",
        "",
        f"Ceilings, measured at the start and at the end of the run (the larger is used): memory bandwidth "
        f"(`np.copyto`, read + write) **{c['copy_GBps']:.1f} GB/s** ({c['start']['copy_GBps']:.1f} / "
        f"{c['end']['copy_GBps']:.1f}); float32 gemm 2048³ **{c['sgemm_GFLOPs']:.0f} GFLOP/s** "
        f"({c['start']['sgemm_GFLOPs']:.0f} / {c['end']['sgemm_GFLOPs']:.0f}).",
        "",
        markdown_table(results),
        "",
        "Times are medians; ± is half the interquartile range, in % of the median (all quartiles, min and "
        "max are in the JSON). `x F` = F's time / graphc's time: above 1, graphc is faster. \"achieved\" is "
        "GB/s for memory-bound workloads and GFLOP/s for compute-bound ones; \"roofline\" is the roofline "
        "time max(FLOPs / gemm ceiling, bytes / bandwidth) over graphc's time (above 100% means the data "
        "stayed in cache, beating the DRAM ceiling). `—`: not run.",
    ]
    for fw, why in results.get("skipped", {}).items():
        lines.append(f"{LABELS[fw]}: {why}.")
    for name, why in results.get("pending", {}).items():
        lines.append(f"Not yet measured: `{name}` ({why}).")
    return "\n".join(lines)


def _fmt_load(x) -> str:
    return "?" if x is None else f"{x:.2f}"


def _fmt_pct(x) -> str:
    return "?" if x is None else f"{100 * x:.0f}%"


def write_results(path: str, results: dict, command: str, plot_path: str | None = None) -> None:
    """Regenerate the generated block of `path` (between BEGIN_MARK and END_MARK), keeping
    everything outside the markers; without markers the block is appended."""
    body = summary_text(results, command)
    if plot_path:
        rel = os.path.relpath(os.path.abspath(plot_path), os.path.dirname(os.path.abspath(path)))
        body += f"\n\n![speedup over NumPy per workload]({rel})"
    block = (f"{BEGIN_MARK}\n<!-- generated by `graphc bench --results`: edit outside the markers only -->\n\n"
             f"{body}\n\n{END_MARK}")
    old = ""
    if os.path.exists(path):
        with open(path) as fh:
            old = fh.read()
    if BEGIN_MARK in old and END_MARK in old and old.index(BEGIN_MARK) < old.index(END_MARK):
        new = old[:old.index(BEGIN_MARK)] + block + old[old.index(END_MARK) + len(END_MARK):]
    else:
        new = (old.rstrip("\n") + "\n\n" if old else "# Benchmark results\n\n") + block + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(new)
    os.replace(tmp, path)


def plot(results: dict, path: str) -> None:
    """A bar chart PNG: each framework's speedup over NumPy, per workload (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["workloads"] if "numpy" in r.get("times", {}) and not r.get("hidden")]
    fws = [fw for fw in ("graphc", "torch", "torch_compile", "jax") if any(fw in r["times"] for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.8))
    width = 0.8 / max(1, len(fws))
    for k, fw in enumerate(fws):
        xs = [i + (k - (len(fws) - 1) / 2) * width for i, r in enumerate(rows) if fw in r["times"]]
        ys = [r["times"]["numpy"]["median"] / r["times"][fw]["median"] for r in rows if fw in r["times"]]
        bars = ax.bar(xs, ys, width, label=LABELS[fw])
        if fw == "graphc":
            ax.bar_label(bars, labels=[f"{y:.2g}x" for y in ys], fontsize=7, padding=1)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("speedup over NumPy (NumPy time / time)")
    m = results["machine"]
    ax.set_title(f"graphc bench ({results['mode']}): {m['cpu']}, {m['cores']} cores", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="fewer repeats and no torch.compile (under 2 minutes)")
    p.add_argument("--only", metavar="NAME", help="comma-separated workload names or globs (a prefix matches: "
                   f"'matmul'); default: {', '.join(WORKLOADS)}; extra: {', '.join(EXTRA_WORKLOADS)}")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a bar chart PNG of the speedups over NumPy")
    p.add_argument("--results", metavar="PATH", help="regenerate the marked block of this Markdown file "
                   "(e.g. benchmarks/RESULTS.md), keeping the rest")
    p.add_argument("--size", choices=["full", "tiny"], default="full", help=argparse.SUPPRESS)  # tiny: tests


def main(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """`graphc bench` with parsed `args`; `argv` (the command's arguments) is recorded."""
    mode = MODES["tiny" if args.size == "tiny" else "quick" if args.quick else "full"]
    try:
        names = select(args.only)
    except ValueError as e:
        print(f"graphc bench: {e}", file=sys.stderr)
        return 2
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "graphc " + " ".join(argv)
    results = run(names, mode, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    results["command"] = command
    print(summary_text(results, command))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    if args.plot:
        try:
            plot(results, args.plot)
        except ImportError as e:
            print(f"graphc bench: --plot needs matplotlib (pip install 'graphc[train]'): {e}", file=sys.stderr)
            args.plot = None
    if args.results:
        write_results(args.results, results, command, args.plot)
    return 1 if any(r.get("status") == "FAILED" for r in results["workloads"]) else 0
