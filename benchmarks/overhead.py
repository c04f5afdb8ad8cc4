"""Per-call overhead of a compiled function (issue 14, item 2): a 4x4 matmul, split into the
layers of a call, best of 5 rounds of 20,000 calls each. A repeat call with ready arrays takes
`CProgram.fast_call`; the checking path (first call of a shape, lists, other dtypes, keywords)
is `Function._bind_args` then `CProgram.__call__`.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/overhead.py
"""

from __future__ import annotations

import time

import numpy as np

import graphc as gc


def best_us(fn, n: int = 20000) -> float:
    for _ in range(1000):
        fn()
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter() - t0) / n * 1e6)
    return min(rounds)


def main() -> None:
    a, b = gc.placeholder("a", (None, 4)), gc.placeholder("b", (4, 4))
    f = gc.function([a, b], a @ b, backend="c")
    x = np.ones((4, 4), "float32")
    prog, args = f._program, [x, x]
    f(x, x)
    sig = prog._signature(((4, 4), (4, 4)))
    rows = [("f(x, x): the whole call", lambda: f(x, x)),
            ("repeat-call path (CProgram.fast_call)", lambda: prog.fast_call(args)),
            ("checking path: Function._bind_args", lambda: f._bind_args((x, x), {})),
            ("checking path: CProgram.__call__", lambda: prog(args)),
            ("the native call alone (gc_main)", lambda: prog._main(sig.ptrs_c, sig.dims_c)),
            ("NumPy x @ x", lambda: x @ x)]
    for name, fn in rows:
        print(f"{name:42s} {best_us(fn):7.2f} us")


if __name__ == "__main__":
    main()
