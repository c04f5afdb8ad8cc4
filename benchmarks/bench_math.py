"""Benchmark kernels/gc_math.h on a fused elementwise chain (not a test).

    y = tanh(0.7 x + 0.1) * sigmoid(x) + 0.5 x^2 - 0.25 exp(-x^2)      over 4M float32

(a) one C loop, `#pragma omp parallel for simd`, using gc_math.h (also timed on one thread),
(b) the same C loop calling libm expf/tanhf (not vectorisable without -ffast-math),
(c) the same chain in NumPy (one temporary per operation),
and, as a floor, a C loop y = 2x that only moves the same memory.
Prints the median (and the min) time of repeated runs of each and the ratios.

    .venv/bin/python benchmarks/bench_math.py [--n N] [--repeat R]

`--trig` times a fused sin/cos loop instead, y = sin(x) + 0.5 cos(x) over 1M float32 and 1M
float64 with |x| < 100 (ordinary arguments: what the exact large-argument reduction costs
there), against NumPy.  `--kernels DIR` (repeatable) builds the loop once per header directory
and times all of them in one process, round-robin, so that two versions of gc_math.h are
compared under the same load:

    .venv/bin/python benchmarks/bench_math.py --trig --kernels OLD_DIR --kernels kernels
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import cffi
import numpy as np

KERNELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "kernels")
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared"]

SOURCE = r"""
#include <math.h>
#include <omp.h>
#include "gc_math.h"

#define CHAIN(EXP, TANH, SIGMOID) \
    float v = x[i]; \
    y[i] = TANH(0.7f * v + 0.1f) * SIGMOID(v) + 0.5f * v * v - 0.25f * EXP(-(v * v));

static inline float libm_sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

void chain_gc(const float *restrict x, float *restrict y, long n, int nthreads) {
    #pragma omp parallel for simd num_threads(nthreads) schedule(static)
    for (long i = 0; i < n; i++) { CHAIN(gc_expf, gc_tanhf, gc_sigmoidf) }
}

void chain_libm(const float *restrict x, float *restrict y, long n, int nthreads) {
    #pragma omp parallel for simd num_threads(nthreads) schedule(static)
    for (long i = 0; i < n; i++) { CHAIN(expf, tanhf, libm_sigmoidf) }
}

/* the memory traffic alone (read x, write y): the floor for any elementwise loop */
void scale(const float *restrict x, float *restrict y, long n, int nthreads) {
    #pragma omp parallel for simd num_threads(nthreads) schedule(static)
    for (long i = 0; i < n; i++) y[i] = 2.0f * x[i];
}

int max_threads(void) { return omp_get_max_threads(); }
"""

CDEF = """
void chain_gc(const float *x, float *y, long n, int nthreads);
void chain_libm(const float *x, float *y, long n, int nthreads);
void scale(const float *x, float *y, long n, int nthreads);
int max_threads(void);
"""


def build(tmp: str):
    src = os.path.join(tmp, "bench_math.c")
    so = os.path.join(tmp, "bench_math.so")
    with open(src, "w") as f:
        f.write(SOURCE)
    cmd = ["gcc", *CFLAGS, "-I", KERNELS, src, "-o", so, "-lm", "-fopt-info-vec-optimized"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"gcc failed:\n{proc.stderr}")
    vec_lines = sorted({line.split(":")[1] for line in proc.stderr.splitlines() if "loop vectorized" in line})
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    return ffi, ffi.dlopen(so), vec_lines


def chain_numpy(x: np.ndarray) -> np.ndarray:
    return np.tanh(0.7 * x + 0.1) * (1 / (1 + np.exp(-x))) + 0.5 * x * x - 0.25 * np.exp(-(x * x))


def run_times(fns: dict, repeat: int) -> dict:
    """Wall times of each callable, `repeat` runs each.  The callables are run round-robin, so a
    burst of load from other processes on the machine hits all of them alike."""
    for fn in fns.values():
        fn()  # warm up (page faults, OpenMP thread pool)
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: np.array(ts) for name, ts in times.items()}


TRIG_SOURCE = r"""
#include "gc_math.h"
void trigf(const float *restrict x, float *restrict y, long n) {
    #pragma omp simd
    for (long i = 0; i < n; i++) y[i] = gc_sinf(x[i]) + 0.5f * gc_cosf(x[i]);
}
void trig(const double *restrict x, double *restrict y, long n) {
    #pragma omp simd
    for (long i = 0; i < n; i++) y[i] = gc_sin(x[i]) + 0.5 * gc_cos(x[i]);
}
"""


def build_trig(tmp: str, kernels: str, tag: int):
    """The sin/cos loop (one thread) against the gc_math.h in `kernels`; (ffi, lib, vectorised?)."""
    src = os.path.join(tmp, f"trig{tag}.c")
    so = os.path.join(tmp, f"trig{tag}.so")
    with open(src, "w") as f:
        f.write(TRIG_SOURCE)
    cmd = ["gcc", *CFLAGS, "-std=c11", "-fno-math-errno", "-I", kernels, src, "-o", so, "-lm",
           "-fopt-info-vec-optimized"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"gcc failed:\n{proc.stderr}")
    ffi = cffi.FFI()
    ffi.cdef("void trigf(const float *x, float *y, long n); void trig(const double *x, double *y, long n);")
    vec = {int(line.split(":")[1]) for line in proc.stderr.splitlines() if "loop vectorized" in line}
    return ffi, ffi.dlopen(so), vec


def main_trig(args) -> None:
    dirs = args.kernels or [KERNELS]
    n = args.n if args.n_given else 1_000_000
    rng = np.random.default_rng(0)
    xs = {"float32": rng.uniform(-100, 100, n).astype(np.float32), "float64": rng.uniform(-100, 100, n)}
    fns, errs, keep = {}, {}, []  # keep: the output arrays the C pointers refer to
    with tempfile.TemporaryDirectory() as tmp:
        libs = [build_trig(tmp, d, i) for i, d in enumerate(dirs)]
        for dt, x in xs.items():
            fn, ct = ("trigf", "float *") if dt == "float32" else ("trig", "double *")
            ref = np.sin(x.astype(np.longdouble)) + 0.5 * np.cos(x.astype(np.longdouble))
            fns[("numpy", dt)] = lambda x=x: np.sin(x) + 0.5 * np.cos(x)
            for i, (ffi, lib, _) in enumerate(libs):
                y = np.empty_like(x)
                keep.append(y)
                px, py = ffi.cast(ct, x.ctypes.data), ffi.cast(ct, y.ctypes.data)
                f = getattr(lib, fn)
                fns[(i, dt)] = lambda f=f, px=px, py=py: f(px, py, n)
                fns[(i, dt)]()
                errs[(i, dt)] = float(np.max(np.abs(y - ref)))
        runs = run_times(fns, args.repeat)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"y = sin(x) + 0.5 cos(x), n = {n}, |x| < 100, {args.repeat} runs each, 1 thread, "
          f"gcc {' '.join(CFLAGS)} -std=c11 -fno-math-errno")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)")
    print(f"  {'':44s} {'median':>10s} {'x NumPy':>8s} {'min':>10s}   max |err|")
    for dt in xs:
        med_np = float(np.median(runs[("numpy", dt)]))
        print(f"  {'NumPy ' + dt:44s} {med_np * 1e3:7.3f} ms {1.0:7.2f}x "
              f"{float(np.min(runs[('numpy', dt)])) * 1e3:7.3f} ms")
        for i, d in enumerate(dirs):
            med = float(np.median(runs[(i, dt)]))
            vec = "vectorised" if libs[i][2] else "NOT vectorised"
            label = f"C {dt} {os.path.basename(os.path.normpath(d))} ({vec})"
            print(f"  {label:44s} {med * 1e3:7.3f} ms {med_np / med:7.2f}x "
                  f"{float(np.min(runs[(i, dt)])) * 1e3:7.3f} ms   {errs[(i, dt)]:.1e}")
        for i, d in enumerate(dirs[1:], 1):  # time against the first header: median, min
            name, first = os.path.basename(os.path.normpath(d)), os.path.basename(os.path.normpath(dirs[0]))
            ratio_med = float(np.median(runs[(i, dt)])) / float(np.median(runs[(0, dt)]))
            ratio_min = float(np.min(runs[(i, dt)])) / float(np.min(runs[(0, dt)]))
            print(f"    {name} / {first}: {ratio_med:.2f}x time by median, {ratio_min:.2f}x by min")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--trig", action="store_true", help="time the sin/cos loop instead of the chain")
    ap.add_argument("--kernels", action="append", help="header directory for --trig (repeatable)")
    args = ap.parse_args()
    if shutil.which("gcc") is None:
        sys.exit("gcc not found")
    args.n_given = args.n is not None
    if args.trig:
        main_trig(args)
        return
    if args.kernels:
        sys.exit("--kernels goes with --trig")
    if args.n is None:
        args.n = 4 * 1024 * 1024

    rng = np.random.default_rng(0)
    x = (rng.standard_normal(args.n) * 3).astype(np.float32)
    y = np.empty_like(x)

    with tempfile.TemporaryDirectory() as tmp:
        ffi, lib, vec_lines = build(tmp)
        px = ffi.cast("const float *", x.ctypes.data)
        py = ffi.cast("float *", y.ctypes.data)
        nt = lib.max_threads()

        ref = chain_numpy(x.astype(np.float64))
        lib.chain_gc(px, py, args.n, nt)
        err_gc = float(np.max(np.abs(y - ref)))
        lib.chain_libm(px, py, args.n, nt)
        err_libm = float(np.max(np.abs(y - ref)))
        err_np = float(np.max(np.abs(chain_numpy(x) - ref)))

        runs = run_times({
            "np": lambda: chain_numpy(x),
            "gc": lambda: lib.chain_gc(px, py, args.n, nt),
            "gc1": lambda: lib.chain_gc(px, py, args.n, 1),
            "libm": lambda: lib.chain_libm(px, py, args.n, nt),
            "libm1": lambda: lib.chain_libm(px, py, args.n, 1),
            "copy": lambda: lib.scale(px, py, args.n, nt),
            "copy1": lambda: lib.scale(px, py, args.n, 1),
        }, args.repeat)
    med = {k: float(np.median(v)) for k, v in runs.items()}
    best = {k: float(np.min(v)) for k, v in runs.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    print(f"n = {args.n} float32, {args.repeat} runs each, {nt} OpenMP threads, gcc {' '.join(CFLAGS)}")
    print(f"{os.cpu_count()} CPUs, 1-minute load average at the end: {load:.2f} (other processes skew timings)")
    print(f"vectorized loops (source lines): {', '.join(vec_lines) or 'none'}")
    print(f"max |error| vs float64 NumPy: gc_math {err_gc:.2e}, libm {err_libm:.2e}, NumPy float32 {err_np:.2e}")
    rows = [
        ("np", "NumPy float32 (1 thread)"),
        ("gc", f"C + gc_math.h ({nt} threads)"),
        ("gc1", "C + gc_math.h (1 thread)"),
        ("libm", f"C + libm expf/tanhf ({nt} threads)"),
        ("libm1", "C + libm expf/tanhf (1 thread)"),
        ("copy", f"C y = 2x, memory floor ({nt} threads)"),
        ("copy1", "C y = 2x, memory floor (1 thread)"),
    ]
    print(f"  {'':36s} {'median':>9s} {'x NumPy':>8s}   {'min':>9s} {'x NumPy':>8s}")
    for key, label in rows:
        print(f"  {label:36s} {med[key] * 1e3:6.2f} ms {med['np'] / med[key]:7.2f}x"
              f"   {best[key] * 1e3:6.2f} ms {best['np'] / best[key]:7.2f}x")
    print(f"(a) gc_math / NumPy     = {med['np'] / med['gc']:.2f}x median, {best['np'] / best['gc']:.2f}x min"
          f"   (1 thread: {med['np'] / med['gc1']:.2f}x median, {best['np'] / best['gc1']:.2f}x min)")
    print(f"(b) gc_math / libm loop = {med['libm'] / med['gc']:.2f}x median, {best['libm'] / best['gc']:.2f}x min"
          f"   (libm loop / NumPy = {med['np'] / med['libm']:.2f}x median)")


if __name__ == "__main__":
    main()
