"""Reliability figures (issue 15): compile time of long elementwise chains with their gradient,
deep MLPs, and workspace memory held after many distinct batch sizes.

    python benchmarks/reliability.py chain 1000     # n elementwise ops + gradient, cold cache
    python benchmarks/reliability.py mixed 1000     # the same with a random activation per layer
    python benchmarks/reliability.py mlp 600        # n-layer MLP + SGD updates
    python benchmarks/reliability.py memory 200     # n batch sizes of a 256-wide MLP
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc

import numpy as np


def main(kind: str, n: int) -> None:
    import os

    os.environ["GRAPHC_CACHE_DIR"] = tempfile.mkdtemp()  # cold: every library is compiled
    import graphc as gc

    x = gc.placeholder("x", (None, 4), "float32")
    t0 = time.perf_counter()
    if kind == "chain":
        h = x
        for _ in range(n // 3):
            h = gc.tanh(h * 0.9 + 0.1)
        f = gc.function([x], [h.sum(), gc.grad(h.sum(), x)])
        f(np.ones((3, 4), "float32"))
        print(f"chain {n} ops + gradient: compile and first call {time.perf_counter() - t0:.1f} s")
    elif kind == "mixed":  # tanh, sigmoid or softplus at random: few kernels repeat
        rng = np.random.default_rng(0)
        acts = [gc.tanh, gc.sigmoid, gc.softplus]
        h = x
        for _ in range(n // 3):
            h = acts[rng.integers(3)](h * 0.9 + 0.1)
        f = gc.function([x], [h.sum(), gc.grad(h.sum(), x)])
        f(np.ones((3, 4), "float32"))
        print(f"mixed {n} ops + gradient: compile and first call {time.perf_counter() - t0:.1f} s")
    elif kind == "mlp":
        ws = [gc.shared(np.eye(4, dtype="float32") * 0.5) for _ in range(n)]
        h = x
        for w in ws:
            h = gc.tanh(h @ w)
        grads = gc.grad(h.sum(), ws)
        f = gc.function([x], h.sum(), updates=[(w, w - 0.01 * g) for w, g in zip(ws, grads)])
        f(np.ones((3, 4), "float32"))
        print(f"mlp {n} layers + gradient: compile and first call {time.perf_counter() - t0:.1f} s")
    elif kind == "memory":
        x = gc.placeholder("x", (None, 256), "float32")
        w = gc.shared(np.full((256, 256), 0.01, "float32"))
        f = gc.function([x], gc.tanh(gc.tanh(x @ w) @ w).sum(axis=1))
        tracemalloc.start()
        for b in range(n, 0, -1):
            f(np.ones((b, 256), "float32"))
        held = tracemalloc.get_traced_memory()[0]
        print(f"memory after {n} batch sizes: {held / 1e6:.1f} MB traced; largest call's workspace "
              f"{f.memory_bytes / 1e6:.2f} MB")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
