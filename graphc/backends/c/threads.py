"""Thread counts that follow the cores really free: graphc's OpenMP and OpenBLAS together.

A parallel region (and each threaded OpenBLAS call) waits at its barrier for its slowest thread.
When another process keeps a core busy, the thread that shares that core is descheduled for a
whole time slice, and a step of many small regions becomes many times slower (issue 14: a GAN
discriminator step 1.0 ms alone, 19x that beside two busy processes). So before a call, the C
backend sets both thread counts to the cores that other processes left idle over the last
sampling interval (from ``/proc/stat``, minus this process's own CPU time), never above the
configured maximum (``OMP_NUM_THREADS``, else the usable cores). The estimate is refreshed at
most every `INTERVAL` seconds, so a call pays a clock read.

``GRAPHC_ADAPTIVE_THREADS=0`` turns this off (the thread counts then stay as configured).
Outside Linux, or if a library cannot be found, it does nothing.

>>> threads = AdaptiveThreads(maximum=2, enabled=False)
>>> threads.update()   # disabled: keeps the maximum
2
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time

INTERVAL = 0.05  # seconds between two estimates of the free cores


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _configured_maximum() -> int:
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return _usable_cores()


def _cpu_busy_and_total() -> tuple[float, float] | None:
    """Busy and total jiffies of the whole machine (``/proc/stat``'s first line), or None."""
    try:
        with open("/proc/stat", "rb") as fh:
            fields = fh.readline().split()[1:]
    except OSError:
        return None
    values = [float(v) for v in fields[:8]]
    if len(values) < 5:
        return None
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _set_omp(n: int) -> None:
    lib = _library("gomp")
    if lib is not None:
        lib.omp_set_num_threads(ctypes.c_int(n))


def _set_blas(n: int) -> None:
    lib = _openblas()
    if lib is not None:
        lib.scipy_openblas_set_num_threads(ctypes.c_int(n))


_LIBS: dict[str, object] = {}


def _library(name: str):
    if name not in _LIBS:
        try:
            path = ctypes.util.find_library(name)
            _LIBS[name] = ctypes.CDLL(path or f"lib{name}.so.1")
        except OSError:
            _LIBS[name] = None
    return _LIBS[name]


def keep_runtimes_loaded() -> None:
    """Hold libgomp and OpenBLAS open for the life of the process.

    A generated library brings libgomp in as its dependency; when the last compiled function
    is freed (or at interpreter exit) cffi dlcloses it, and if nothing else holds libgomp, its
    code is unmapped under a worker thread still spinning in it: a segfault. ctypes never closes
    what it opened.

    >>> keep_runtimes_loaded()
    """
    _library("gomp")
    _openblas()


def _openblas():
    if "openblas" not in _LIBS:
        try:
            import scipy_openblas32

            path = os.path.join(scipy_openblas32.get_lib_dir(), f"lib{scipy_openblas32.get_library()}.so")
            _LIBS["openblas"] = ctypes.CDLL(path)
        except (ImportError, OSError, AttributeError):
            _LIBS["openblas"] = None
    return _LIBS["openblas"]


class AdaptiveThreads:
    """The thread count for the next call: the configured maximum, less the cores that other
    processes kept busy over the last interval (at least one)."""

    def __init__(self, maximum: int | None = None, enabled: bool | None = None):
        self.maximum = maximum or _configured_maximum()
        if enabled is None:
            enabled = os.environ.get("GRAPHC_ADAPTIVE_THREADS", "1") not in ("0", "") and self.maximum > 1
        self.enabled = enabled and os.path.exists("/proc/stat")
        self.current = self.maximum
        self._lock = threading.Lock()
        self._applied = threading.local()  # the OpenMP thread count set in each calling thread
        self._next = 0.0
        self._last = None  # (monotonic time, machine busy jiffies, total jiffies, own cpu seconds)

    def update(self) -> int:
        """Re-estimate if the interval has passed; apply a changed count; return the count."""
        if not self.enabled:
            return self.current
        if getattr(self._applied, "n", self.maximum) != self.current:  # OpenMP's count is per thread
            _set_omp(self.current)
            self._applied.n = self.current
        now = time.monotonic()
        if now < self._next:
            return self.current
        with self._lock:
            if now < self._next:
                return self.current
            self._next = now + INTERVAL
            sample = _cpu_busy_and_total()
            if sample is None:
                return self.current
            own = time.process_time()
            if self._last is not None:
                _, busy0, total0, own0 = self._last
                d_total = sample[1] - total0
                if d_total > 0:
                    cores = _usable_cores()
                    clk = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
                    wall = d_total / clk / max(os.cpu_count() or 1, 1)  # seconds of the interval
                    others = (sample[0] - busy0) / clk - (own - own0)  # busy core-seconds not ours
                    busy_cores = max(0.0, others / wall) if wall > 0 else 0.0
                    n = max(1, min(self.maximum, int(cores - busy_cores + 0.5)))
                    if n != self.current:
                        self.current = n
                        _set_omp(n)
                        self._applied.n = n
                        _set_blas(n)
            self._last = (now, sample[0], sample[1], own)
        return self.current


#: one estimate for the whole process: every compiled function shares the cores
ADAPTIVE = AdaptiveThreads()
