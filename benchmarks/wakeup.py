"""Why `graphc bench` shows less than a steady loop: blocks of calls after a 0.12 s sleep (as the
bench's harness settles before each block) against blocks without one, with and without NumPy's
calls in between. Per block: the median of 14 calls of the cross-entropy fwd+bwd workload.

    .venv/bin/python benchmarks/wakeup.py
    GOMP_SPINCOUNT=30000 .venv/bin/python benchmarks/wakeup.py   # workers spin ~10 us, then sleep

(graphc sets OMP_WAIT_POLICY=PASSIVE unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set.)
"""

from __future__ import annotations

import statistics
import time

from graphc.backends.c.threads import ADAPTIVE
from graphc.bench.workloads import CrossEntropy


def main() -> None:
    work = CrossEntropy()
    data = work.data("full")
    graphc_fn, numpy_fn = work._graphc("full").fn, work._numpy("full").fn
    for _ in range(10):
        graphc_fn(*data[0])
    for sleep, numpy_between in ((0.12, False), (0.0, True), (0.12, True), (0.0, False)):
        medians = []
        for _ in range(4):
            if sleep:
                time.sleep(sleep)
            times = []
            for i in range(14):
                t0 = time.perf_counter()
                graphc_fn(*data[i % 3])
                times.append((time.perf_counter() - t0) * 1e6)
            medians.append(f"{statistics.median(times):.0f}")
            if numpy_between:
                for i in range(12):
                    numpy_fn(*data[i % 3])
        print(f"sleep {sleep:.2f} s, NumPy between blocks {numpy_between!s:5}: block medians {medians} us "
              f"({ADAPTIVE.current} threads)")


if __name__ == "__main__":
    main()
