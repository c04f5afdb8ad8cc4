"""Data-parallel scaling of the 784-512-512-10 MLP training step (Adam) under mpiexec, and the
cost of graphc's in-graph allreduce against a bare mpi4py ``Allreduce`` of the same bytes.

    .venv/bin/python benchmarks/distributed.py [--rounds 3] [--seconds 2] [--json PATH]

The driver launches ``mpiexec -n K python benchmarks/distributed.py --worker ...`` for each
configuration, in `--rounds` alternating rounds (the machine is shared: medians over rounds):

- ``1x2``: 1 rank with 2 threads (OpenMP + OpenBLAS), global batch 256;
- ``2x1``: 2 ranks with 1 thread each, global batch 256 (128 per rank): strong scaling;
- ``1x1``: 1 rank, 1 thread, batch 256;
- ``2x1w``: 2 ranks, 1 thread, global batch 512 (256 per rank): weak scaling against ``1x1``.

In each 2-rank job the worker also times, alternating in blocks, (a) the distributed step with
the compiler's per-kernel profile (GRAPHC_PROFILE=1): the allreduce kernel's time per step,
and (b) the same step without the allreduce (the plain optimizer) followed by a bare
``comm.Allreduce(MPI.IN_PLACE, buf)`` (plus the division by the number of ranks, which the
kernel does too) of a float32 buffer of the gradients' size: that call's time per step. Both
sit right after the backward pass of a step, so both include the same waiting for the slower
rank. Finally it prints the ring-allreduce model's prediction for 8 and 64 ranks on 25 Gbit/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

LAYERS = (784, 512, 512, 10)
LINK_GBIT = 25.0
ALPHA_S = 10e-6  # per-message latency assumed for the model (a 25 GbE hop, TCP or RoCE)


def grad_bytes() -> int:
    return 4 * sum(a * b + b for a, b in zip(LAYERS[:-1], LAYERS[1:]))


# -- worker (inside mpiexec) -----------------------------------------------------------------------


def build(distributed: bool, seed: int = 0):
    import graphc as gc
    from graphc import distributed as dist
    from graphc.nn import Dense, Sequential, losses

    model = Sequential([Dense(LAYERS[1], activation="relu", seed=seed + 1),
                        Dense(LAYERS[2], activation="relu", seed=seed + 2), Dense(LAYERS[3], seed=seed + 3)],
                       input_shape=(LAYERS[0],))
    x = gc.placeholder("x", (None, LAYERS[0]))
    t = gc.placeholder("t", (None,), "int32")
    loss = losses.categorical_crossentropy(model(x, training=True), t)
    opt = gc.optim.Adam(1e-4)
    if distributed:
        opt = dist.DistributedOptimizer(opt)
    step = gc.function([x, t], loss, updates=opt.updates(loss, model.params), backend="c")
    if distributed:
        dist.broadcast_variables(model.params)
    return step


def worker(global_batch: int, seconds: float) -> dict:
    from graphc import distributed as dist

    rank, size = dist.rank(), dist.size()
    local = global_batch // size
    rng = np.random.default_rng(rank)
    xs = [rng.normal(size=(local, LAYERS[0])).astype("float32") for _ in range(3)]
    ts = [rng.integers(0, 10, local).astype("int32") for _ in range(3)]
    step = build(distributed=True)
    result = {"ranks": size, "global_batch": global_batch, "threads": os.environ.get("OMP_NUM_THREADS"),
              "load_before": os.getloadavg()[0]}

    def block(fn, calls: int) -> float:
        dist.barrier()
        t0 = time.perf_counter()
        for i in range(calls):
            fn(i)
        return (time.perf_counter() - t0) / calls

    for i in range(5):  # warm-up: page faults, OpenBLAS buffers
        step(xs[i % 3], ts[i % 3])
    per = block(lambda i: step(xs[i % 3], ts[i % 3]), 5)
    calls = max(5, int(0.25 / max(per, 1e-4)))
    if size > 1:  # every rank must run the same number of steps (each step is a collective)
        from graphc.ops.collective import world

        calls = world().comm.bcast(calls, root=0)
    steps = []
    end = time.perf_counter() + seconds
    while True:
        steps.append(block(lambda i: step(xs[i % 3], ts[i % 3]), calls))
        go = time.perf_counter() < end or len(steps) < 5
        if size > 1:  # every rank runs the same number of blocks: rank 0 decides
            from graphc.ops.collective import world

            go = world().comm.bcast(go, root=0)
        if not go:
            break
    result["step_s"] = float(np.median(steps))
    result["examples_per_s"] = global_batch / result["step_s"]
    if size > 1:
        result.update(allreduce_cost(xs, ts, seconds))
    result["load_after"] = os.getloadavg()[0]
    return result


def allreduce_cost(xs, ts, seconds: float) -> dict:
    """Per-step seconds of the in-graph allreduce kernel against a bare mpi4py Allreduce of the
    same bytes placed at the same point of a step, alternating in blocks."""
    from mpi4py import MPI

    from graphc.ops.collective import world

    w = world()
    os.environ["GRAPHC_PROFILE"] = "1"
    prof_step = build(distributed=True)
    local_step = build(distributed=False)
    os.environ.pop("GRAPHC_PROFILE")
    prog = prof_step._program
    k_index = [i for i, k in enumerate(prog.schedule.kernels) if k.label == "op[allreduce]"]
    assert len(k_index) == 1, prog.schedule
    buf = np.zeros(grad_bytes() // 4, "float32")
    inv = np.float32(w.size)

    def kernel_seconds():
        return prog.profile()[k_index[0]][1]

    graphc_s, bare_s, bare_div_s = [], [], []
    for i in range(3):
        prof_step(xs[i % 3], ts[i % 3])
        local_step(xs[i % 3], ts[i % 3])
    end = time.perf_counter() + seconds
    go = True
    while go:
        w.comm.Barrier()
        before = kernel_seconds()
        for i in range(20):
            prof_step(xs[i % 3], ts[i % 3])
        graphc_s.append((kernel_seconds() - before) / 20)
        w.comm.Barrier()
        tot, tot_div = 0.0, 0.0
        for i in range(20):
            local_step(xs[i % 3], ts[i % 3])
            t0 = time.perf_counter()
            w.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            t1 = time.perf_counter()
            np.divide(buf, inv, out=buf)
            t2 = time.perf_counter()
            tot += t1 - t0
            tot_div += t2 - t0
        bare_s.append(tot / 20)
        bare_div_s.append(tot_div / 20)
        go = w.comm.bcast(time.perf_counter() < end, root=0)
    g, b, bd = (float(np.median(v)) for v in (graphc_s, bare_s, bare_div_s))
    return {"allreduce_graphc_s": g, "allreduce_bare_s": b, "allreduce_bare_div_s": bd,
            "allreduce_ratio": g / bd, "allreduce_ratio_vs_call_only": g / b, "blocks": len(graphc_s),
            "grad_bytes": grad_bytes()}


# -- driver ----------------------------------------------------------------------------------------

CONFIGS = {"1x2": (1, 2, 256), "2x1": (2, 1, 256), "1x1": (1, 1, 256), "2x1w": (2, 1, 512)}


def launch(name: str, seconds: float) -> dict:
    ranks, threads, batch = CONFIGS[name]
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    env.pop("GRAPHC_BACKEND", None)
    cmd = [mpiexec, "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker", str(batch),
           "--seconds", str(seconds)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][0]
    return json.loads(line[len("RESULT "):])


def ring_model(step_1rank_s: float) -> list[str]:
    """Ring allreduce: each rank sends (and receives) 2(N-1)/N of the gradient bytes per step,
    in 2(N-1) messages; no overlap with compute assumed (graphc reduces after the backward)."""
    b = grad_bytes()
    bw = LINK_GBIT * 1e9 / 8
    lines = [f"| ranks | bytes sent per rank per step | transfer at {LINK_GBIT:g} Gbit/s | + latency "
             f"2(N-1)x{ALPHA_S * 1e6:g} us | weak-scaling efficiency (256/rank) | strong (global 256) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for n in (8, 64):
        sent = 2 * (n - 1) / n * b
        t = sent / bw + 2 * (n - 1) * ALPHA_S
        weak = step_1rank_s / (step_1rank_s + t)
        strong = (step_1rank_s / n) / (step_1rank_s / n + t)
        lines.append(f"| {n} | {sent / 1e6:.2f} MB | {sent / bw * 1e3:.2f} ms | {t * 1e3:.2f} ms | "
                     f"{100 * weak:.0f}% | {100 * strong:.0f}% |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per configuration and round")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.worker is not None:
        res = worker(args.worker, args.seconds)
        from graphc import distributed as dist

        if dist.rank() == 0:
            print("RESULT " + json.dumps(res), flush=True)
        return 0
    runs: dict[str, list[dict]] = {k: [] for k in CONFIGS}
    for r in range(args.rounds):
        for name in CONFIGS:
            runs[name].append(launch(name, args.seconds))
            print(f"round {r + 1} {name}: {runs[name][-1]['examples_per_s']:.0f} examples/s", file=sys.stderr)
    med = {k: float(np.median([x["examples_per_s"] for x in v])) for k, v in runs.items()}
    step1 = float(np.median([x["step_s"] for x in runs["1x1"]]))
    ar = [x for k in ("2x1", "2x1w") for x in runs[k]]
    g = float(np.median([x["allreduce_graphc_s"] for x in ar]))
    b = float(np.median([x["allreduce_bare_div_s"] for x in ar]))
    bc = float(np.median([x["allreduce_bare_s"] for x in ar]))
    ratios = [x["allreduce_ratio"] for x in ar]
    print(f"load average before: {os.getloadavg()}")
    print("| configuration | examples/s (median of rounds) | |")
    print("|---|---:|---|")
    print(f"| 1 rank x 2 threads, batch 256 | {med['1x2']:.0f} | |")
    print(f"| 2 ranks x 1 thread, global batch 256 | {med['2x1']:.0f} | {med['2x1'] / med['1x2']:.2f}x of 1x2 |")
    print(f"| 1 rank x 1 thread, batch 256 | {med['1x1']:.0f} | |")
    print(f"| 2 ranks x 1 thread, global batch 512 | {med['2x1w']:.0f} | weak-scaling efficiency "
          f"{100 * med['2x1w'] / (2 * med['1x1']):.0f}% |")
    print(f"\nallreduce of {grad_bytes() / 1e6:.2f} MB per step: in-graph kernel {g * 1e3:.3f} ms, bare mpi4py "
          f"Allreduce {bc * 1e3:.3f} ms, + division {b * 1e3:.3f} ms; ratio {g / b:.3f} "
          f"(per-job ratios {', '.join(f'{r:.3f}' for r in ratios)})\n")
    print("\n".join(ring_model(step1)))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(runs, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
