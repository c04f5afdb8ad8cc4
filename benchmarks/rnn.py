"""Recurrent training steps: graphc's scan against PyTorch (nn.LSTM / nn.RNN and a Python loop),
timed in one process, alternating, medians of repeated calls.

    .venv/bin/python benchmarks/rnn.py [--repeats 15]

Workloads (issue 11): the LSTM training step T=100, batch 64, 64 -> 256 (forward, BPTT, Adam);
the tanh RNN step T=100, batch 32, 32 -> 128; the loop overhead of a scan whose body is one
small elementwise op; the cold compile time of the LSTM step at T=100 and T=1000.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import graphc as gc
from graphc import nn


def _median_ms(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)


def graphc_step(cell: str, T: int, B: int, D: int, H: int):
    rng = np.random.default_rng(0)
    x = gc.placeholder("x", (None, None, D))
    y = gc.placeholder("y", (None, H))
    layer = nn.LSTM(H, seed=1) if cell == "lstm" else nn.SimpleRNN(H, seed=1)
    loss = gc.mean(gc.square(layer(x) - y))
    f = gc.function([x, y], loss, updates=gc.optim.Adam(1e-3).updates(loss, layer.params))
    xv = rng.normal(size=(B, T, D)).astype("float32")
    yv = rng.normal(size=(B, H)).astype("float32")
    return lambda: f(xv, yv)


def torch_step(cell: str, T: int, B: int, D: int, H: int, python_loop: bool = False):
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    xv = torch.tensor(rng.normal(size=(B, T, D)).astype("float32"))
    yv = torch.tensor(rng.normal(size=(B, H)).astype("float32"))
    if python_loop:
        m = torch.nn.RNNCell(D, H)
        opt = torch.optim.Adam(m.parameters(), 1e-3)

        def run():
            opt.zero_grad()
            h = torch.zeros(B, H)
            for t in range(T):
                h = m(xv[:, t], h)
            ((h - yv) ** 2).mean().backward()
            opt.step()
        return run
    m = torch.nn.LSTM(D, H, batch_first=True) if cell == "lstm" else torch.nn.RNN(D, H, batch_first=True)
    opt = torch.optim.Adam(m.parameters(), 1e-3)

    def run():
        opt.zero_grad()
        out, _ = m(xv)
        ((out[:, -1] - yv) ** 2).mean().backward()
        opt.step()
    return run


def loop_overhead_ns(T: int = 100_000) -> float:
    x = gc.placeholder("x", (None, 4), "float32")
    ys = gc.scan(lambda xt, h: h * 0.5 + xt, sequences=x, outputs_info=gc.constant(np.zeros(4, "float32")))
    f = gc.function([x], ys[-1])
    xv = np.ones((T, 4), "float32")
    return _median_ms(lambda: f(xv), 9) * 1e6 / T


def compile_seconds(T: int) -> float:
    os.environ["GRAPHC_CACHE_DIR"] = tempfile.mkdtemp()  # cold: nothing cached
    x = gc.placeholder("x", (None, T, 64))
    y = gc.placeholder("y", (None, 256))
    layer = nn.LSTM(256, seed=1)
    loss = gc.mean(gc.square(layer(x) - y))
    updates = gc.optim.Adam(1e-3).updates(loss, layer.params)
    t = time.perf_counter()
    gc.function([x, y], loss, updates=updates)
    return time.perf_counter() - t


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    print(f"load average before: {open('/proc/loadavg').read().split()[:3]}")
    rows = []
    for cell, shape in (("lstm", (100, 64, 64, 256)), ("rnn", (100, 32, 32, 128))):
        g, t = graphc_step(cell, *shape), torch_step(cell, *shape)
        gs, ts = [], []
        for _ in range(3):  # alternate blocks so drifting load hits both alike
            gs.append(_median_ms(g, args.repeats))
            ts.append(_median_ms(t, args.repeats))
        gm, tm = statistics.median(gs), statistics.median(ts)
        rows.append((f"{cell} step T={shape[0]} B={shape[1]} {shape[2]}->{shape[3]}", gm, tm, tm / gm))
        if cell == "rnn":
            loop = _median_ms(torch_step(cell, *shape, python_loop=True), args.repeats)
            rows.append(("  rnn step, PyTorch RNNCell in a Python loop", gm, loop, loop / gm))
    for name, gm, tm, ratio in rows:
        print(f"{name:48s} graphc {gm:8.2f} ms   torch {tm:8.2f} ms   speed-up {ratio:5.2f}x")
    print(f"scan loop overhead: {loop_overhead_ns():.1f} ns per step (body: one small elementwise op)")
    for T in (100, 1000):
        print(f"cold compile of the LSTM training step, T={T}: {compile_seconds(T):.2f} s")


if __name__ == "__main__":
    main()
