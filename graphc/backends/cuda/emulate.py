"""Run the CUDA backend's generated code on the CPU: a test device for machines without a GPU.

``GRAPHC_CUDA_EMULATE=1`` makes ``backend='cuda'`` use `EmulatedDevice` instead of CuPy. The
generated CUDA source is compiled unchanged as C++ by g++, after a prelude that supplies what
CUDA would: ``threadIdx``/``blockIdx`` (thread-local), ``__syncthreads`` (a barrier over the 256
threads of a block, which run as real POSIX threads), warp shuffles (through a block-wide
exchange: graphc calls them only where the whole block takes part), atomics (a mutex),
``__umulhi``, ``__int_as_float``. A pool of 256 worker threads (one runtime library per process)
runs each block; blocks run one after another, and the grid is kept to a few blocks so the
grid-stride loops are exercised. cuBLAS is emulated in NumPy with cuBLAS's column-major
argument semantics (op flags, leading dimensions, batch strides), so the host-side gemm geometry
is checked too. Device memory is NumPy arrays; addresses are their data pointers.

What this cannot check: CuPy's own glue (RawModule loading, argument packing, streams), real
cuBLAS, NVRTC's code generation and device math (CPU libm stands in for CUDA's), and memory races
that only real warps would expose. It is slow (an OS thread per CUDA thread): for tests only.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from ...core.errors import CompileError
from .emit import BLOCK

CXX = os.environ.get("CXX", "g++")
MAX_BLOCKS = 3  # few blocks, so grid-stride loops take more than one turn

# The runtime: one shared library per process (a pool of BLOCK worker threads, the block barrier,
# the shuffle exchange), loaded RTLD_GLOBAL so that every kernel library uses the same pool.
RUNTIME = r"""/* graphc CUDA emulation runtime (graphc/backends/cuda/emulate.py) */
#include <stdint.h>
#include <pthread.h>

struct dim3 { unsigned x, y, z; };
extern "C" {
__thread dim3 threadIdx, blockIdx;
dim3 blockDim = {BLOCK_, 1, 1}, gridDim = {1, 1, 1};
uint64_t gc_emu_lanes[BLOCK_];
pthread_mutex_t gc_emu_atomic = PTHREAD_MUTEX_INITIALIZER;

/* the barrier over the live threads of the block; threads that leave the kernel drop out */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER, go = PTHREAD_COND_INITIALIZER, done = PTHREAD_COND_INITIALIZER;
static int count, waiting, running;
static unsigned long gen, job;
static void (*job_fn)(const uint64_t *);
static const uint64_t *job_args;
static unsigned job_block;

void gc_emu_sync(void) {
  pthread_mutex_lock(&mu);
  unsigned long g = gen;
  if (++waiting == count) { waiting = 0; gen++; pthread_cond_broadcast(&cv); }
  else while (g == gen) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
}

static void leave(void) {
  pthread_mutex_lock(&mu);
  count--;
  if (waiting > 0 && waiting == count) { waiting = 0; gen++; pthread_cond_broadcast(&cv); }
  if (--running == 0) pthread_cond_signal(&done);
  pthread_mutex_unlock(&mu);
}

static void *worker(void *p) {
  threadIdx.x = (unsigned)(uintptr_t)p; threadIdx.y = threadIdx.z = 0;
  unsigned long seen = 0;
  for (;;) {
    pthread_mutex_lock(&mu);
    while (job == seen) pthread_cond_wait(&go, &mu);
    seen = job;
    void (*fn)(const uint64_t *) = job_fn;
    const uint64_t *args = job_args;
    blockIdx.x = job_block; blockIdx.y = blockIdx.z = 0;
    pthread_mutex_unlock(&mu);
    fn(args);
    leave();
  }
  return 0;
}

static pthread_mutex_t launch_mu = PTHREAD_MUTEX_INITIALIZER;
static int started;

int gc_emu_launch(unsigned grid, void (*fn)(const uint64_t *), const uint64_t *args) {
  pthread_mutex_lock(&launch_mu);
  if (!started) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 18);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (unsigned t = 0; t < BLOCK_; t++) {
      pthread_t th;
      if (pthread_create(&th, &attr, worker, (void *)(uintptr_t)t) != 0) { pthread_mutex_unlock(&launch_mu); return 1; }
    }
    pthread_attr_destroy(&attr);
    started = 1;
  }
  gridDim.x = grid;
  for (unsigned b = 0; b < grid; b++) {
    pthread_mutex_lock(&mu);
    count = BLOCK_; waiting = 0; running = BLOCK_;
    job_fn = fn; job_args = args; job_block = b; job++;
    pthread_cond_broadcast(&go);
    while (running) pthread_cond_wait(&done, &mu);
    pthread_mutex_unlock(&mu);
  }
  pthread_mutex_unlock(&launch_mu);
  return 0;
}
}
""".replace("BLOCK_", str(BLOCK))

PRELUDE = r"""/* graphc CUDA emulation prelude (graphc/backends/cuda/emulate.py) */
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <pthread.h>

struct dim3 { unsigned x, y, z; };
extern "C" {
extern __thread dim3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
extern uint64_t gc_emu_lanes[BLOCK_];
extern pthread_mutex_t gc_emu_atomic;
void gc_emu_sync(void);
int gc_emu_launch(unsigned grid, void (*fn)(const uint64_t *), const uint64_t *args);
}

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static

static inline void __syncthreads() { gc_emu_sync(); }

/* shuffles: every thread of the block calls them together (graphc's reductions guarantee it) */
template <class T> static T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width) {
  (void)mask;
  const unsigned t = threadIdx.x, lane = t & 31u;
  unsigned src = lane ^ (unsigned)lane_mask;
  if (src / (unsigned)width != lane / (unsigned)width) src = lane;
  uint64_t bits = 0;
  memcpy(&bits, &v, sizeof(T));
  gc_emu_sync(); /* the previous exchange has been read */
  gc_emu_lanes[t] = bits;
  gc_emu_sync();
  const uint64_t got = gc_emu_lanes[(t & ~31u) | src];
  T out;
  memcpy(&out, &got, sizeof(T));
  return out;
}

template <class T> static T atomicAdd(T *p, T v) {
  pthread_mutex_lock(&gc_emu_atomic); T old = *p; *p = old + v; pthread_mutex_unlock(&gc_emu_atomic); return old;
}
template <class T> static T atomicMax(T *p, T v) {
  pthread_mutex_lock(&gc_emu_atomic); T old = *p; if (v > old) *p = v; pthread_mutex_unlock(&gc_emu_atomic);
  return old;
}
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
""".replace("BLOCK_", str(BLOCK))


def emulation_source(source: str, launches) -> str:
    """The C++ translation unit: prelude, the generated CUDA unchanged, one launcher per kernel."""
    parts = [PRELUDE, source]
    for step in launches:
        args = ", ".join(["(const long long *)a[0]"] + [f"({t})a[{i + 1}]" for i, t in enumerate(step.types)])
        parts.append(f"static void gc_emu_body_{step.name}(const uint64_t *a) {{ {step.name}({args}); }}\n"
                     f'extern "C" int emu_{step.name}(unsigned grid, const uint64_t *a) '
                     f"{{ return gc_emu_launch(grid, gc_emu_body_{step.name}, a); }}\n")
    return "\n".join(parts)


_BUILT: dict[str, ctypes.CDLL] = {}
_BUILD_LOCK = threading.Lock()


@functools.cache
def kernels_dir() -> str:
    from ..cache import kernels_dir as kd

    return str(kd())


def _compile(source: str, mode: int = ctypes.DEFAULT_MODE) -> ctypes.CDLL:
    tmp = Path(tempfile.mkdtemp(prefix="graphc-emu-"))
    src, so = tmp / "emu.cpp", tmp / "emu.so"
    src.write_text(source)
    cmd = [CXX, "-std=c++17", "-O1", "-fPIC", "-shared", "-pthread", "-w", f"-I{kernels_dir()}", str(src),
           "-o", str(so)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(f"{CXX} failed to compile the CUDA emulation unit:\n{proc.stderr[-4000:]}\n"
                           f"  source saved at {src}", source_path=str(src), log=proc.stderr)
    try:
        return ctypes.CDLL(str(so), mode=mode)
    finally:  # a loaded library stays mapped after its file is gone
        shutil.rmtree(tmp, ignore_errors=True)


def build(source: str) -> ctypes.CDLL:
    """Compile an emulation unit with g++ (memoised in this process), after the shared runtime."""
    key = hashlib.sha256(source.encode()).hexdigest()
    with _BUILD_LOCK:
        if "runtime" not in _BUILT:
            _BUILT["runtime"] = _compile(RUNTIME, ctypes.RTLD_GLOBAL)
        lib = _BUILT.get(key)
        if lib is None:
            lib = _BUILT[key] = _compile(source)
        return lib


class EmulatedDevice:
    """The device interface of `graphc.backends.cuda.device.CupyDevice`, on the CPU."""

    kind = "emulated"
    array_type = np.ndarray
    max_blocks = MAX_BLOCKS

    def is_array(self, a) -> bool:
        return isinstance(a, np.ndarray)

    def asarray(self, a):
        return np.ascontiguousarray(a)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    @staticmethod
    def ptr(a) -> int:
        return a.ctypes.data

    @staticmethod
    def to_host(a) -> np.ndarray:
        return np.array(a, copy=True)

    @staticmethod
    def download(a, out: np.ndarray) -> None:
        out[...] = a

    @staticmethod
    def upload(a, host: np.ndarray) -> None:
        a[...] = host

    def stream(self) -> int:
        return 0

    def memcpy(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        ctypes.memmove(dst, src, nbytes)

    def memset(self, ptr: int, nbytes: int, stream: int) -> None:
        ctypes.memset(ptr, 0, nbytes)

    def read(self, ptr: int, out: np.ndarray) -> None:
        ctypes.memmove(out.ctypes.data, ptr, out.nbytes)

    def view(self, ptr: int, shape: tuple, dtype) -> np.ndarray:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if nbytes == 0:
            return np.empty(shape, dtype)
        return np.frombuffer((ctypes.c_char * nbytes).from_address(ptr), dtype).reshape(shape)

    def write(self, ptr: int, host: np.ndarray) -> None:
        ctypes.memmove(ptr, host.ctypes.data, host.nbytes)

    def load(self, source: str, launches) -> tuple[dict, str, bool]:
        lib = build(emulation_source(source, launches))
        out = {}
        for step in launches:
            fn = getattr(lib, f"emu_{step.name}")
            fn.argtypes = [ctypes.c_uint, ctypes.POINTER(ctypes.c_uint64)]
            out[step.name] = _launcher(fn, step.name)
        self._lib = lib
        return out, "<emulated>", False

    def gemm(self, dtype, op_a, op_b, m, n, k, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c,
             count) -> None:
        """cuBLAS's column-major gemm, checking its argument rules."""
        isz = np.dtype(dtype).itemsize
        if isinstance(alpha, int):  # device pointer mode
            alpha, beta = (np.frombuffer((ctypes.c_char * isz).from_address(p), dtype=dtype)[0] for p in (alpha, beta))
        alpha, beta = np.asarray(alpha), np.asarray(beta)
        ra, ca = (m, k) if op_a == 0 else (k, m)  # the stored (column-major) shape of A
        rb, cb = (k, n) if op_b == 0 else (n, k)
        for what, ld, rows in (("lda", lda, ra), ("ldb", ldb, rb), ("ldc", ldc, m)):
            if ld < max(1, rows):
                raise AssertionError(f"cuBLAS would reject {what}={ld} < {rows}")
        for q in range(count):
            a = _colmajor(A + q * stride_a * isz, ra, ca, lda, dtype)
            b = _colmajor(B + q * stride_b * isz, rb, cb, ldb, dtype)
            c = _colmajor(C + q * stride_c * isz, m, n, ldc, dtype)
            oa = a if op_a == 0 else a.T
            ob = b if op_b == 0 else b.T
            prod = alpha.astype(np.float64) * (oa.astype(np.float64) @ ob.astype(np.float64))
            if float(beta) != 0.0:
                prod = prod + float(beta) * c
            c[...] = prod.astype(dtype)


def _colmajor(ptr: int, rows: int, cols: int, ld: int, dtype) -> np.ndarray:
    dt = np.dtype(dtype)
    extent = (cols - 1) * ld + rows if rows and cols else 0
    buf = (ctypes.c_char * (extent * dt.itemsize)).from_address(ptr)
    flat = np.frombuffer(buf, dtype=dt)
    return np.lib.stride_tricks.as_strided(flat, (rows, cols), (dt.itemsize, ld * dt.itemsize))


def _launcher(fn, name: str):
    def launch(grid: int, args: list[int]) -> None:
        arr = (ctypes.c_uint64 * len(args))(*args)
        if fn(grid, arr) != 0:
            raise RuntimeError(f"emulated launch of {name} failed (pthread_create)")

    return launch
