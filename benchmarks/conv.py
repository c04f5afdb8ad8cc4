"""Benchmarks of graphc's convolutions (issue 5) against NumPy and PyTorch.

    .venv/bin/python benchmarks/conv.py [--quick] [--json PATH]

1. A LeNet-5 training step (batch 64, 1x28x28, conv 6@5x5 pad 2 - pool - conv 16@5x5 - pool -
   400-120-84-10, ReLU, softmax cross-entropy, SGD) compiled by graphc (backend "c") against a
   hand-written NumPy im2col step (what a good NumPy user writes: sliding-window im2col, one
   matmul per layer, col2im by kernel taps) and against PyTorch eager on the CPU.
2. A 3x3 convolution 64 -> 64 channels on 32x32 images, batch 32, padding 1: forward, and
   backward (input and weight gradients), in GFLOP/s next to the float32 gemm ceiling measured in
   the same run (NumPy's 2048^3 sgemm, and graphc's own gemm of the same shape as the conv:
   (64 x 576) @ (576 x 1024) per image).

graphc and NumPy are timed in this process in alternating blocks (a pause and two untimed calls
before each block, so that one contender's spinning thread pool does not slow the next); every
graphc result is checked against its NumPy twin first. PyTorch runs in a child process: on a
2-core machine its OpenMP pool would otherwise contend with graphc's and NumPy's.

``--graphc-blas-threads 1`` holds graphc's OpenBLAS (scipy-openblas32, not NumPy's) to one thread:
on a busy 2-core machine, OpenBLAS-threaded small gemms (LeNet's dense layers) occasionally wait
tens of milliseconds for their second thread (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import graphc as gc  # noqa: E402
from graphc.bench import summarize, time_blocks  # noqa: E402

# -- timing ------------------------------------------------------------------------------------


def timeit_interleaved(fns, args_lists, repeat=21, warmup=3, block=7, settle=0.1) -> list[list[float]]:
    """Seconds of each call of each function, in alternating blocks (graphc.bench's method)."""
    return time_blocks(fns, args_lists, repeat=repeat, warmup=warmup, block=block, settle=settle)


def summary(ts: list[float]) -> dict:
    s = summarize(ts)
    return {"median_s": s["median"], "q1_s": s["q1"], "q3_s": s["q3"], "min_s": s["min"]}


from graphc.bench.lenet import NumpyLeNet, graphc_lenet_step, lenet_data, lenet_params  # noqa: E402,F401


def torch_lenet_seconds(batch, repeat, lr):
    """PyTorch eager's step times (graphc.bench's LeNet twin, same data recipe and method), or None."""
    try:
        import torch
    except ImportError:
        return None
    from graphc.bench.lenet import LeNetStep

    wl = LeNetStep()
    wl.lr = lr
    step = wl._torch("full", compiled=False).fn
    data = [(torch.tensor(x), torch.tensor(t.astype("int64"))) for x, t in lenet_data(batch)]
    return timeit_interleaved([step], [data], repeat)[0]


def torch_conv_seconds(repeat):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    rng = np.random.default_rng(7)
    x = torch.tensor(rng.standard_normal((32, 64, 32, 32), dtype=np.float32), requires_grad=True)
    w = torch.tensor(rng.standard_normal((64, 64, 3, 3), dtype=np.float32) * 0.05, requires_grad=True)
    g = torch.tensor(rng.standard_normal((32, 64, 32, 32), dtype=np.float32))

    def fwd():
        with torch.no_grad():
            F.conv2d(x, w, padding=1)

    def bwd():
        y = F.conv2d(x, w, padding=1)
        torch.autograd.grad(y, [x, w], g)

    t_fwd = timeit_interleaved([fwd], [[()]], repeat)[0]
    t_fb = timeit_interleaved([bwd], [[()]], repeat)[0]
    return {"forward": t_fwd, "forward_backward": t_fb}


def in_child(fn_name: str, *args):
    code = (f"import sys, json; sys.path.insert(0, {ROOT!r}); from benchmarks.conv import {fn_name}; "
            f"print(json.dumps({fn_name}(*{args!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_lenet(batch, repeat, lr=0.01):
    params = lenet_params()
    f, P, compile_s = graphc_lenet_step(params, lr)
    ref = NumpyLeNet(params, lr)
    data = lenet_data(batch)
    for xb, tb in data[:3]:  # correctness gate: a few steps from identical weights
        got, want = float(f(xb, tb)), ref.step(xb, tb)
        np.testing.assert_allclose(got, want, rtol=1e-3, err_msg="LeNet step loss: graphc disagrees with NumPy")
    for k, v in P.items():
        np.testing.assert_allclose(v.get_value(), ref.p[k], rtol=1e-3, atol=1e-5, err_msg=f"LeNet weights {k}")
    tg, tn = timeit_interleaved([f, ref.step], [data, data], repeat)
    macs = batch * (6 * 25 * 28 * 28 + 16 * 150 * 10 * 10 + 400 * 120 + 120 * 84 + 84 * 10)
    # forward, weight gradients, and input gradients of every layer but the first
    flops = 2 * (3 * macs - batch * 6 * 25 * 28 * 28)
    out = {"workload": f"LeNet-5 SGD step, batch {batch}", "graphc": summary(tg), "numpy": summary(tn),
           "speedup_vs_numpy": statistics.median(tn) / statistics.median(tg), "graphc_compile_s": compile_s,
           "flops": flops, "graphc_GFLOPs": flops / statistics.median(tg) / 1e9,
           "target": ">= 3x NumPy im2col, >= 1x PyTorch eager"}
    tt = in_child("torch_lenet_seconds", batch, repeat, lr)
    if tt is not None:
        out["torch"] = summary(tt)
        out["speedup_vs_torch"] = statistics.median(tt) / statistics.median(tg)
    return out


def bench_conv(repeat, n=32, c=64, hw=32):
    rng = np.random.default_rng(7)
    xs = [(rng.standard_normal((n, c, hw, hw), dtype=np.float32),) for _ in range(2)]
    wv = (rng.standard_normal((c, c, 3, 3), dtype=np.float32) * 0.05)
    x = gc.placeholder("x", (None, c, hw, hw))
    g = gc.placeholder("g", (None, c, hw, hw))
    w = gc.shared(wv, name="w")
    y = gc.conv2d(x, w, padding=1)
    f_fwd = gc.function([x], y, backend="c")
    f_bwd = gc.function([x, g], gc.grad(gc.sum(y * g), [x, w]), backend="c")
    gs = [(a, rng.standard_normal((n, c, hw, hw), dtype=np.float32)) for (a,) in xs]
    # correctness against the reference backend (float64 NumPy)
    ref = gc.function([x], y, backend="ref")(xs[0][0])
    np.testing.assert_allclose(f_fwd(*xs[0]), ref, rtol=1e-3, atol=1e-3)
    macs = n * c * c * 9 * hw * hw
    a = rng.standard_normal((2048, 2048), dtype=np.float32)
    am, bm = rng.standard_normal((c, 9 * c), dtype=np.float32), rng.standard_normal((9 * c, hw * hw),
                                                                                   dtype=np.float32)
    A = gc.placeholder("A", am.shape)
    B = gc.placeholder("B", bm.shape)
    f_mm = gc.function([A, B], A @ B, backend="c")
    t_fwd, t_bwd, t_np, t_mm = timeit_interleaved(
        [f_fwd, f_bwd, lambda: a @ a, f_mm], [xs, gs, [()], [(am, bm)]], repeat)
    fwd, bwd = statistics.median(t_fwd), statistics.median(t_bwd)
    out = {"workload": f"conv 3x3 {c}->{c}, {hw}x{hw}, batch {n}, padding 1", "macs": macs,
           "forward": summary(t_fwd), "backward": summary(t_bwd),
           "forward_GFLOPs": 2 * macs / fwd / 1e9, "backward_GFLOPs": 4 * macs / bwd / 1e9,
           "sgemm_2048_GFLOPs": 2 * 2048 ** 3 / statistics.median(t_np) / 1e9,
           "graphc_gemm_same_shape_GFLOPs": 2 * c * 9 * c * hw * hw / statistics.median(t_mm) / 1e9}
    tt = in_child("torch_conv_seconds", repeat)
    if tt is not None:
        out["torch_forward_GFLOPs"] = 2 * macs / statistics.median(tt["forward"]) / 1e9
        out["torch_forward_backward_s"] = statistics.median(tt["forward_backward"])
        # PyTorch's figure includes its forward; graphc's backward alone is compared with the difference
        out["torch_backward_GFLOPs"] = 4 * macs / max(statistics.median(tt["forward_backward"])
                                                      - statistics.median(tt["forward"]), 1e-9) / 1e9
    return out


def set_graphc_blas_threads(n: int) -> None:
    """Set the thread count of the OpenBLAS that graphc's generated code links (scipy-openblas32)."""
    import ctypes

    import scipy_openblas32

    lib = ctypes.CDLL(os.path.join(scipy_openblas32.get_lib_dir(), f"lib{scipy_openblas32.get_library()}.so"))
    lib.scipy_openblas_set_num_threads(int(n))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--graphc-blas-threads", type=int, default=None,
                   help="threads of graphc's OpenBLAS (default: OpenBLAS' own choice)")
    args = p.parse_args(argv)
    repeat = 7 if args.quick else 35
    if args.graphc_blas_threads:
        set_graphc_blas_threads(args.graphc_blas_threads)
    results = {"machine": {"cpus": os.cpu_count(), "numpy": np.__version__,
                           "graphc_blas_threads": args.graphc_blas_threads or "default"},
               "rows": [bench_lenet(64, repeat * 3), bench_conv(max(7, repeat // 2))]}
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
