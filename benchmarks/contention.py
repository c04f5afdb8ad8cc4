"""Training steps on a quiet machine and beside one busy core (issue 14, item 1).

    .venv/bin/python benchmarks/contention.py [--seconds 3]

For each step (the MLP 784-512-512-10 Adam step at batch 128, and a GAN discriminator step,
MLP 2-128-128-1 at batch 256 with Adam), the mean and p90 of the call time over `--seconds` of
calls, first alone, then with a ``python -c "while True: pass"`` child that this script starts
and stops. Compare ``GRAPHC_ADAPTIVE_THREADS=0`` (thread counts fixed) with the default.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

import graphc as gc
from graphc.nn import Dense, Sequential, losses


def build(sizes: tuple, batch: int):
    layers = [Dense(s, activation="relu", seed=i) for i, s in enumerate(sizes[1:-1])] + [Dense(sizes[-1], seed=9)]
    model = Sequential(layers, input_shape=(sizes[0],))
    x, t = gc.placeholder("x", (None, sizes[0])), gc.placeholder("t", (None,), "int32")
    out = model(x)
    loss = losses.categorical_crossentropy(out, t) if sizes[-1] > 1 else gc.mean(gc.softplus(-out))
    f = gc.function([x, t], loss, updates=gc.optim.Adam(1e-3).updates(loss, model.params))
    rng = np.random.default_rng(0)
    xv = rng.normal(size=(batch, sizes[0])).astype("float32")
    tv = rng.integers(0, max(sizes[-1], 1), batch).astype("int32")
    return lambda: f(xv, tv)


def mean_p90_ms(fn, seconds: float) -> tuple[float, float]:
    fn()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.mean(times)) * 1e3, float(np.percentile(times, 90)) * 1e3


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args(argv)
    print(f"load average {os.getloadavg()}, GRAPHC_ADAPTIVE_THREADS={os.environ.get('GRAPHC_ADAPTIVE_THREADS', '1')}")
    steps = {"MLP 784-512-512-10 Adam, batch 128": build((784, 512, 512, 10), 128),
             "GAN D 2-128-128-1 Adam, batch 256": build((2, 128, 128, 1), 256)}
    for name, fn in steps.items():
        quiet = mean_p90_ms(fn, args.seconds)
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.5)
            busy = mean_p90_ms(fn, args.seconds)
        finally:
            hog.kill()
            hog.wait()
        time.sleep(0.5)
        print(f"{name:36s} quiet mean {quiet[0]:.2f} ms (p90 {quiet[1]:.2f})   one busy core mean {busy[0]:.2f} ms "
              f"(p90 {busy[1]:.2f})   ratio {busy[0] / quiet[0]:.2f}")


if __name__ == "__main__":
    main()
