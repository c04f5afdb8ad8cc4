"""What the machine can do and what else it is doing: memory and gemm ceilings, the CPU and
software versions, and how much CPU other processes took during a run."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from importlib import metadata

import numpy as np

from .harness import Mode, median_seconds


def measure_ceilings(mode: Mode) -> dict:
    """Memory bandwidth (np.copyto of 8M float32, read + write bytes) and float32 gemm (2048^3)."""
    rng = np.random.default_rng(5)
    n = 8 * 1024 * 1024 if mode.size == "full" else 1024 * 1024
    src = [(rng.standard_normal(n).astype("float32"),) for _ in range(2)]
    dst = np.empty(n, "float32")
    reps = 21 if mode.name == "full" else 9
    tc, = median_seconds([lambda a: np.copyto(dst, a)], [src], repeat=reps, warmup=2, block=reps, settle=0)
    k = 2048 if mode.size == "full" else 512
    a = [(rng.standard_normal((k, k)).astype("float32"), rng.standard_normal((k, k)).astype("float32"))]
    tg, = median_seconds([np.matmul], [a], repeat=max(3, reps // 3), warmup=1, block=reps, settle=0)
    return {"copy_GBps": 2 * 4 * n / tc / 1e9, "sgemm_GFLOPs": 2 * k**3 / tg / 1e9}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """The machine and software versions (without importing PyTorch or JAX into this process)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        gcc = subprocess.run([os.environ.get("CC", "gcc"), "-dumpfullversion"], capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        gcc = None
    import graphc

    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "os": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "graphc": graphc.__version__, "gcc": gcc, "torch": _version("torch"), "jax": _version("jax"),
            "jaxlib": _version("jaxlib"), "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "load_start": _loadavg()}


def _loadavg() -> float | None:
    """The 1-minute load average: other processes on a 2-core machine spoil every timing."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def cpu_snapshot() -> dict | None:
    """Machine-wide busy and steal CPU seconds (/proc/stat) and this process's own CPU seconds
    (its finished children included): two snapshots tell how much CPU other processes took."""
    try:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = vals
    t = os.times()
    return {"busy": (user + nice + system + irq + softirq) / hz, "steal": steal / hz,
            "own": t.user + t.system + t.children_user + t.children_system, "wall": time.monotonic()}


def others_load(a: dict | None, b: dict | None, cores: int) -> dict:
    """The share of the machine's CPU that other processes, and the hypervisor (steal), took
    between snapshots `a` and `b`."""
    if not a or not b or b["wall"] <= a["wall"]:
        return {}
    cap = (b["wall"] - a["wall"]) * cores
    return {"others_cpu_fraction": max(0.0, (b["busy"] - a["busy"]) - (b["own"] - a["own"])) / cap,
            "steal_fraction": (b["steal"] - a["steal"]) / cap}
