"""Recurrent benchmarks (issue 11): a thin wrapper around `graphc bench`'s recurrent workloads,
plus the cold compile time of the LSTM step at two sequence lengths (which `graphc bench` does
not measure).

    .venv/bin/python benchmarks/rnn.py [--full] [--json PATH]

runs ``graphc bench --only lstm_step,rnn_step,scan_overhead --quick`` (``--full``: full mode):
the LSTM training step T=100, batch 64, 64 -> 256 (forward, BPTT, Adam), the tanh RNN step T=100,
batch 32, 32 -> 128 (PyTorch's nn.RNN, and RNNCell in a Python loop), and the loop overhead of a
scan whose body is one small elementwise op; every contender passes the NumPy gate first. Then
the cold compile time of the LSTM step at T=100 and T=1000 (no unrolling: it should not grow).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from graphc.cli import main as cli_main

COMPILE_CHILD = """
import time
import graphc as gc
x = gc.placeholder("x", (None, {T}, 64))
y = gc.placeholder("y", (None, 256))
layer = gc.nn.LSTM(256, seed=1)
loss = gc.mean(gc.square(layer(x) - y))
updates = gc.optim.Adam(1e-3).updates(loss, layer.params)
t = time.perf_counter()
gc.function([x, y], loss, updates=updates)
print(time.perf_counter() - t)
"""


def compile_seconds(T: int) -> float:
    """Cold compile time of the LSTM training step with T steps, in a fresh process and cache."""
    with tempfile.TemporaryDirectory() as cache:
        r = subprocess.run([sys.executable, "-c", COMPILE_CHILD.format(T=T)], capture_output=True, text=True,
                           env=dict(os.environ, GRAPHC_CACHE_DIR=cache), check=True)
    return float(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="graphc bench's full mode instead of --quick")
    p.add_argument("--json", metavar="PATH", help="passed on to graphc bench --json")
    args = p.parse_args(argv)
    bench_args = ["bench", "--only", "lstm_step,rnn_step,scan_overhead"] + ([] if args.full else ["--quick"])
    if args.json:
        bench_args += ["--json", args.json]
    rc = cli_main(bench_args)
    for T in (100, 1000):
        print(f"cold compile of the LSTM training step, T={T}: {compile_seconds(T):.2f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
