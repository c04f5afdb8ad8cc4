"""The measuring method: modes, alternating-block timing, statistics, the correctness gate, the
`Workload`/`Impl` protocol every benchmark implements, and one process's side of a workload."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .frameworks import LABELS, PYTENSOR_MODES, convert, to_numpy_list


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
    "full": Mode("full", "full", 1.5, 31, 601, 6, 0.15, 3, 3, True, 420.0),
    "quick": Mode("quick", "full", 0.12, 7, 61, 3, 0.12, 2, 1, False, 150.0),
    "tiny": Mode("tiny", "tiny", 0.0, 3, 3, 1, 0.0, 1, 1, False, 120.0),
}



def time_blocks(fns: Sequence[Callable], args_lists: Sequence[Sequence[tuple]], repeat: int = 15, warmup: int = 3,
                block: int = 10, settle: float = 0.1) -> list[list[float]]:
    """Seconds of every call of each function, measured in alternating blocks (a x block, b x block,
    a x block, ...) so that a drift in machine load affects every contender alike. Before each
    block the process sleeps `settle` seconds and makes two untimed calls: the BLAS and OpenMP
    thread pools (NumPy's, graphc's and PyTorch's are separate) keep spinning for a while after
    use, and a contender timed right after another would otherwise pay for the other's pool
    (measured: NumPy's MLP step 3.3 ms alone, 3.9-7 ms right after graphc's). The modes' settle
    (0.12-0.15 s) outlasts the longest of them: NumPy's OpenBLAS workers poll for 0.1 s after
    its last call (a full core of CPU time, measured); with a 0.05 s settle graphc's matmul
    1024^3 measured 11.6 ms against 6.7 ms. The inputs rotate through each `args_lists` entry."""
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



@dataclass
class Impl:
    """One contender for one workload: `fn(*args)` on already converted inputs; `state()` gives the
    arrays a stateful workload (a training step) must agree on after the gate's steps."""

    fn: Callable
    state: Callable[[], list] | None = None



class Workload:
    """A benchmark: inputs, a cost model and one implementation per framework.

    Subclasses define `title`, `data` (a list of input tuples, rotated while timing; seeded, so
    that a child process rebuilds the same ones), `cost` (FLOPs and compulsory bytes per call) and
    `_graphc`, `_numpy`, `_torch`, `_jax` and `_pytensor` (given the PyTensor mode: None for the
    default, "CVM" for the C VM) returning an `Impl`."""

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
        if framework in PYTENSOR_MODES:
            return self._pytensor(size, PYTENSOR_MODES[framework])
        return getattr(self, "_" + framework)(size)

    def _torch(self, size: str, compiled: bool) -> Impl:
        raise NotImplementedError

    def _graphc(self, size: str) -> Impl:
        raise NotImplementedError

    def _numpy(self, size: str) -> Impl:
        raise NotImplementedError

    def _jax(self, size: str) -> Impl:
        raise NotImplementedError

    def _pytensor(self, size: str, mode: str | None) -> Impl:
        raise NotImplementedError(f"{self.name} has no PyTensor twin")




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
        want = to_numpy_list(ref.fn(*data[k % len(data)]))
        t0 = time.perf_counter()
        out = impl.fn(*args[k % len(args)])
        if k == 0:
            first = time.perf_counter() - t0
        check_close(to_numpy_list(out), want, rtol, atol, what)
    if impl.state is not None:
        check_close(impl.state(), ref.state(), rtol, atol, f"{what}, state after {wl.gate_steps} steps",
                    wl.state_outliers)
    return first


def error_text(e: BaseException) -> str:
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
            args = [convert(fw, a) for a in data]
            out["build_s"][fw] = build + gate(wl, fw, size, data, impl, args)
        except NotImplementedError as e:  # no twin written for this framework: shown as "—"
            out.setdefault("no_twin", {})[fw] = str(e)
            continue
        except Exception as e:  # a failed gate or a twin that cannot run: recorded, never timed
            out["failed"][fw] = error_text(e)
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
