"""Benchmarks of the C backend against NumPy (and PyTorch when installed).

    .venv/bin/python benchmarks/c_backend.py [--quick] [--json PATH]

graphc and NumPy are timed in this process, in alternating blocks (warm-up first; inputs rotated
among several arrays so that a cache-resident input does not flatter a result), and each graphc
result is checked against its NumPy twin before it is timed. PyTorch is timed the same way in a
child process started right after: in one process its OpenMP pool, OpenBLAS's pool and NumPy's
pool spin against each other on a 2-core machine (graphc's MLP step measured 48 ms instead of
3 ms beside an idle-spinning PyTorch), which measures the contention, not the frameworks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import graphc as gc


def timeit(fn, args_list, repeat=15, warmup=3) -> float:
    """Median seconds of fn(*args) over `repeat` runs, rotating through `args_list`."""
    for i in range(warmup):
        fn(*args_list[i % len(args_list)])
    times = []
    for i in range(repeat):
        a = args_list[i % len(args_list)]
        t0 = time.perf_counter()
        fn(*a)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timeit_interleaved(fns, args_lists, repeat=15, warmup=3, block=10, settle=0.1) -> list[float]:
    """Median seconds of each function, measured in alternating blocks (a x5, b x5, a x5, ...)
    so that a drift in machine load affects every contender alike. Before each block the process
    sleeps `settle` seconds and makes one untimed run: the BLAS thread pools (NumPy's, graphc's
    and PyTorch's are separate) keep spinning for a while after use, and a contender timed right
    after another would otherwise pay for the other's pool (measured: NumPy's MLP step 3.3 ms
    alone, 3.9-7 ms right after graphc's)."""
    for i in range(warmup):
        for fn, args in zip(fns, args_lists):
            fn(*args[i % len(args)])
    times = [[] for _ in fns]
    done = 0
    while done < repeat:
        for j, (fn, args) in enumerate(zip(fns, args_lists)):
            time.sleep(settle)
            fn(*args[0])
            fn(*args[1 % len(args)])
            for i in range(done, min(done + block, repeat)):
                a = args[i % len(args)]
                t0 = time.perf_counter()
                fn(*a)
                times[j].append(time.perf_counter() - t0)
        done += block
    return [statistics.median(t) for t in times]


def check(got, want, rtol=1e-4, atol=1e-5, what=""):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"{what}: graphc disagrees with NumPy")


def bench_transcendental(n, repeat):
    x = gc.placeholder("x", (None,))
    y = gc.tanh(0.7 * x + 0.1) * gc.sigmoid(x) + 0.5 * x * x - 0.25 * gc.exp(-x * x)
    f = gc.function([x], y, backend="c")

    def np_chain(a):
        return np.tanh(np.float32(0.7) * a + np.float32(0.1)) * (1 / (1 + np.exp(-a))) + np.float32(0.5) * a * a \
            - np.float32(0.25) * np.exp(-a * a)

    rng = np.random.default_rng(0)
    xs = [(rng.uniform(-4, 4, n).astype("float32"),) for _ in range(3)]
    check(f(*xs[0]), np_chain(*xs[0]), what="transcendental chain")
    tg, tn = timeit_interleaved([f, np_chain], [xs, xs], repeat)
    return {"workload": f"transcendental chain, {n:,} float32", "graphc_s": tg, "numpy_s": tn,
            "speedup_vs_numpy": tn / tg, "target": ">= 6x NumPy"}


def bench_arithmetic(n, repeat):
    x = gc.placeholder("x", (None,))
    y = (x * 0.5 + 1.0) * x - 0.25
    f = gc.function([x], y, backend="c")
    rng = np.random.default_rng(1)
    xs = [(rng.standard_normal(n).astype("float32"),) for _ in range(3)]
    check(f(*xs[0]), (xs[0][0] * np.float32(0.5) + 1) * xs[0][0] - np.float32(0.25), what="arithmetic chain")
    dst = np.empty(n, "float32")
    tc, fresh, tg, tn = timeit_interleaved(
        [lambda a: np.copyto(dst, a), np.copy, f, lambda a: (a * np.float32(0.5) + 1) * a - np.float32(0.25)],
        [xs] * 4, repeat)
    gbs = 2 * 4 * n / tg / 1e9
    return {"workload": f"arithmetic chain, {n:,} float32", "graphc_s": tg, "numpy_s": tn, "copyto_s": tc,
            "np_copy_s": fresh, "graphc_GBps": gbs, "copyto_GBps": 2 * 4 * n / tc / 1e9,
            "fraction_of_copyto": tc / tg, "speedup_vs_numpy": tn / tg, "target": ">= 80% of np.copyto speed"}


def bench_matmul(n, repeat):
    a = gc.placeholder("a", (n, n))
    b = gc.placeholder("b", (n, n))
    f = gc.function([a, b], a @ b, backend="c")
    rng = np.random.default_rng(2)
    args = [(rng.standard_normal((n, n)).astype("float32"), rng.standard_normal((n, n)).astype("float32"))
            for _ in range(2)]
    check(f(*args[0]), args[0][0] @ args[0][1], rtol=1e-3, atol=1e-3, what="matmul")
    tg, tn = timeit_interleaved([f, lambda x, y: x @ y], [args, args], repeat)
    flops = 2 * n**3
    return {"workload": f"matmul {n}^3 float32", "graphc_s": tg, "numpy_s": tn, "graphc_GFLOPs": flops / tg / 1e9,
            "numpy_GFLOPs": flops / tn / 1e9, "speedup_vs_numpy": tn / tg, "target": "within 5% of NumPy"}


def mlp_params(rng, sizes):
    ws = [rng.normal(0, np.sqrt(2 / i), (i, o)).astype("float32") for i, o in zip(sizes, sizes[1:])]
    bs = [np.zeros(o, "float32") for o in sizes[1:]]
    return ws, bs


def graphc_mlp_step(sizes, lr):
    rng = np.random.default_rng(3)
    ws, bs = mlp_params(rng, sizes)
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
    grads = gc.grad(loss, params)
    t0 = time.perf_counter()
    f = gc.function([x, t], loss, updates=[(p, p - lr * g) for p, g in zip(params, grads)], backend="c")
    return f, params, time.perf_counter() - t0


class NumpyMLP:
    """A hand-written NumPy SGD step: what a good NumPy user writes (in-place updates, no copies)."""

    def __init__(self, sizes, lr):
        self.ws, self.bs = mlp_params(np.random.default_rng(3), sizes)
        self.lr = np.float32(lr)

    def step(self, x, t):
        hs = [x]
        for i, (w, b) in enumerate(zip(self.ws, self.bs)):
            z = hs[-1] @ w
            z += b
            if i < len(self.ws) - 1:
                np.maximum(z, 0, out=z)
            hs.append(z)
        z = hs[-1]
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        n = x.shape[0]
        loss = float(np.mean(np.log(s[:, 0]) - z[np.arange(n), t]))
        d = e / s
        d[np.arange(n), t] -= 1
        d /= n
        for i in reversed(range(len(self.ws))):
            gw = hs[i].T @ d
            gb = d.sum(axis=0)
            if i:
                d = d @ self.ws[i].T
                d *= hs[i] > 0
            self.ws[i] -= self.lr * gw
            self.bs[i] -= self.lr * gb
        return loss


def torch_mlp(sizes, lr):
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    ws, bs = mlp_params(np.random.default_rng(3), sizes)
    params = []
    for w, b in zip(ws, bs):
        params += [torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)]

    def step(x, t):
        h = x
        for i in range(0, len(params), 2):
            h = h @ params[i] + params[i + 1]
            if i < len(params) - 2:
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h, t)
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        return loss.item()

    return step, torch


def bench_mlp(batch, repeat, sizes=(784, 512, 512, 10), lr=0.01):
    f, params, compile_s = graphc_mlp_step(list(sizes), lr)
    ref = NumpyMLP(list(sizes), lr)
    rng = np.random.default_rng(4)
    data = [(rng.standard_normal((batch, sizes[0])).astype("float32"),
             rng.integers(0, sizes[-1], batch).astype("int32")) for _ in range(4)]
    # correctness gate: a few steps from identical weights agree with the NumPy step
    for xb, tb in data[:3]:
        check(float(f(xb, tb)), ref.step(xb, tb), rtol=1e-3, what="MLP step loss")
    for p, w in zip(params, ref.ws + ref.bs):
        check(p.get_value(), w, rtol=1e-3, atol=1e-5, what="MLP step weights")
    tg, tn = timeit_interleaved([f, ref.step], [data, data], repeat)
    out = {"workload": f"MLP SGD step {'-'.join(map(str, sizes))}, batch {batch}", "graphc_s": tg, "numpy_s": tn,
           "speedup_vs_numpy": tn / tg, "graphc_compile_s": compile_s}
    flops = 3 * 2 * batch * sum(i * o for i, o in zip(sizes, sizes[1:]))
    out["graphc_GFLOPs"] = flops / tg / 1e9
    tt = torch_step_seconds_in_child(batch, repeat, sizes, lr)
    if tt is not None:
        out["torch_s"] = tt
        out["speedup_vs_torch"] = tt / tg
        out["torch_vs_numpy"] = tn / tt
    return out


def torch_step_seconds(batch, repeat, sizes, lr):
    """Median seconds of PyTorch's eager SGD step (same data recipe and method), or None."""
    tm = torch_mlp(list(sizes), lr)
    if tm is None:
        return None
    step, torch = tm
    rng = np.random.default_rng(4)
    data = [(torch.tensor(rng.standard_normal((batch, sizes[0])).astype("float32")),
             torch.tensor(rng.integers(0, sizes[-1], batch).astype("int64"))) for _ in range(4)]
    return timeit_interleaved([step], [data], repeat)[0]


def torch_step_seconds_in_child(batch, repeat, sizes, lr):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (f"import sys, json; sys.path.insert(0, {root!r}); from benchmarks.c_backend import torch_step_seconds; "
            f"print(json.dumps(torch_step_seconds({batch}, {repeat}, {tuple(sizes)!r}, {lr})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


COMPILE_CHILD = """
import time, json, sys
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from benchmarks.c_backend import graphc_mlp_step
from graphc.backends.c import build
f, _, s = graphc_mlp_step([784, 512, 512, 10], 0.01)
print(json.dumps({{"compile_s": s, "stats": build.STATS}}))
"""


def bench_compile():
    """Cold (empty cache: codegen + gcc) and warm (cache hit in a new process) compile time of the
    MLP training step."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cache = tempfile.mkdtemp(prefix="graphc-bench-cache-")
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache)
    try:
        runs = []
        for _ in range(2):
            r = subprocess.run([sys.executable, "-c", COMPILE_CHILD.format(root=root)], env=env, capture_output=True,
                               text=True, check=True)
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    assert runs[0]["stats"]["compiles"] == 1 and runs[1]["stats"]["compiles"] == 0
    return {"workload": "compile MLP training step", "cold_s": runs[0]["compile_s"], "warm_s": runs[1]["compile_s"],
            "target": "cold <= 2 s, warm <= 0.1 s"}


def machine_ceilings(repeat):
    rng = np.random.default_rng(5)
    n = 8 * 1024 * 1024
    src = [rng.standard_normal(n).astype("float32") for _ in range(2)]
    dst = np.empty(n, "float32")
    tc = timeit(lambda a: np.copyto(dst, a), [(s,) for s in src], repeat)
    a = rng.standard_normal((2048, 2048)).astype("float32")
    tg = timeit(lambda: a @ a, [()], max(3, repeat // 3))
    return {"copy_GBps": 2 * 4 * n / tc / 1e9, "sgemm_GFLOPs": 2 * 2048**3 / tg / 1e9}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--json", help="write the results to this file")
    args = p.parse_args(argv)
    repeat = 7 if args.quick else 21
    results = {"machine": {"cpus": os.cpu_count(), "numpy": np.__version__, **machine_ceilings(repeat)}}
    rows = [bench_transcendental(4 * 1024 * 1024, repeat), bench_arithmetic(8 * 1024 * 1024, repeat),
            bench_matmul(1024, max(5, repeat // 2)), bench_mlp(128, repeat), bench_mlp(16, repeat * 3),
            bench_compile()]
    results["rows"] = rows
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
