"""The process-wide worker pool behind graphc's threaded gemm (``kernels/gc_pool.c``).

Every generated library holds a weak reference to ``gc_pool_run``. This module builds the pool
once into the compile cache, like any generated library, and loads it with ``RTLD_GLOBAL``
before the first generated library is loaded, so that all of them share one pool (one set of
worker threads) instead of each bringing its own. Without it (not Linux, a failed build,
``GRAPHC_POOL=0``) the weak reference stays null and a gemm runs on the calling thread.

Why a pool of its own and not OpenMP: see ``kernels/gc_pool.h``.

>>> load_pool() is None or load_pool().name == "lib.so"
True
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import warnings
from pathlib import Path

from ...core.errors import CompileError
from ..cache import kernels_dir

CDEF = """void gc_pool_run(int nthreads, int64_t chunks, void *task, void *ctx);
void gc_pool_stats(int64_t out[3]);"""

_LOCK = threading.RLock()  # re-entered by the pool's own build, which includes gc_pool.h
_STATE: dict[str, object] = {}  # "path": the loaded pool's path, or None once it cannot be had


def enabled() -> bool:
    """Whether this process may use the pool: Linux, and ``GRAPHC_POOL`` is not ``0``.

    >>> isinstance(enabled(), bool)
    True
    """
    return sys.platform.startswith("linux") and os.environ.get("GRAPHC_POOL", "1").strip() != "0"


def is_loaded() -> bool:
    """Whether this process has loaded the pool (it is loaded with the first gemm's library).

    >>> isinstance(is_loaded(), bool)
    True
    """
    return _STATE.get("path") is not None


def load_pool() -> Path | None:
    """Build (once per cache) and load the pool; return its library's path, or None without it.

    Called before a generated library that calls the gemm is loaded; cheap after the first call.
    A second thread calling meanwhile waits for the first (a library it loaded before the pool
    would keep a null gc_pool_run).
    """
    if "path" not in _STATE:
        with _LOCK:
            if _STATE.get("building"):  # the pool's own library: it does not use itself
                return None
            if "path" not in _STATE:
                _STATE["building"] = True
                try:
                    _STATE["path"] = _build_and_load()
                finally:
                    _STATE["building"] = False
    return _STATE["path"]  # type: ignore[return-value]


def _build_and_load() -> Path | None:
    if not enabled():
        return None
    from .build import build_library  # build imports this module

    try:
        built = build_library((kernels_dir() / "gc_pool.c").read_text(), CDEF, extra_cflags=("-pthread",),
                              record_stats=False)
        # promotes the already loaded library to the global scope; never closed (its workers
        # run its code for the life of the process)
        _STATE["handle"] = ctypes.CDLL(str(built.path), mode=os.RTLD_GLOBAL | os.RTLD_NOW)
    except (CompileError, OSError) as e:
        warnings.warn(f"graphc: the worker pool could not be built ({e}); gemms below 2^24 multiply-adds "
                      "run on one thread", RuntimeWarning, stacklevel=3)
        return None
    _STATE["built"] = built
    return built.path


def stats() -> dict[str, int] | None:
    """The pool's counters in this process, or None where there is no pool: ``workers`` started,
    ``jobs`` run through it (gemms that went threaded), ``worker_chunks`` (chunks of those jobs
    the workers ran; the caller ran the rest).

    >>> s = stats()
    >>> s is None or sorted(s) == ["jobs", "worker_chunks", "workers"]
    True
    """
    if load_pool() is None:
        return None
    built = _STATE["built"]
    out = built.ffi.new("int64_t[3]")
    built.lib.gc_pool_stats(out)
    return {"workers": int(out[0]), "jobs": int(out[1]), "worker_chunks": int(out[2])}
