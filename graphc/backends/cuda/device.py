"""The device layer under CudaProgram: memory, copies, kernel modules and cuBLAS.

`CupyDevice` is the real one (CuPy on an NVIDIA GPU). `graphc.backends.cuda.emulate.EmulatedDevice`
implements the same small interface on the CPU, so that the whole CUDA backend above this layer
(binding, launch sequence, workspace, shared-variable mirrors, index checks, gemm geometry and the
generated kernels themselves) can be tested on machines without a GPU.

Arrays are the device's own (CuPy arrays; NumPy arrays for the emulator); `ptr(array)` is the
address kernels receive.
"""

from __future__ import annotations

import numpy as np

from .emit import BLOCK

NEEDS = "backend='cuda' needs CuPy (pip install 'graphc[cuda]') and an NVIDIA GPU; found: "


def require_cupy():
    """The cupy module, or a RuntimeError that says what is missing."""
    try:
        import cupy
    except Exception as e:  # ImportError, or a CuPy whose CUDA libraries fail to load
        raise RuntimeError(NEEDS + f"no CuPy ({type(e).__name__}: {e})") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, no device, driver too old
        raise RuntimeError(NEEDS + f"CuPy {cupy.__version__}, but no usable GPU ({type(e).__name__}: {e})") from None
    if count < 1:
        raise RuntimeError(NEEDS + f"CuPy {cupy.__version__}, but no GPU")
    return cupy


def available() -> tuple[bool, str]:
    """(True, description) when the CUDA backend can run here on a GPU, else (False, what is missing)."""
    try:
        cp = require_cupy()
    except RuntimeError as e:
        return False, str(e)
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return True, f"CuPy {cp.__version__} on {name}"


class CupyDevice:
    """CuPy on the current GPU. Everything runs on CuPy's current stream."""

    kind = "cuda"

    def __init__(self):
        cp = require_cupy()
        self.cp = cp
        self.array_type = cp.ndarray
        dev = cp.cuda.Device()
        self.max_blocks = max(1, int(dev.attributes.get("MultiProcessorCount", 108))) * 32
        self._handle = None

    # -- memory ----------------------------------------------------------------------------------
    def is_array(self, a) -> bool:
        return isinstance(a, self.cp.ndarray) or hasattr(a, "__cuda_array_interface__")

    def asarray(self, a):
        """A C-contiguous device array with `a`'s values (no copy when it already is one)."""
        cp = self.cp
        if isinstance(a, cp.ndarray):
            return a if a.flags.c_contiguous else cp.ascontiguousarray(a)
        if hasattr(a, "__cuda_array_interface__"):
            return cp.ascontiguousarray(cp.asarray(a))
        return cp.asarray(np.ascontiguousarray(a))

    def empty(self, shape, dtype):
        return self.cp.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return self.cp.zeros(shape, dtype=dtype)

    @staticmethod
    def ptr(a) -> int:
        return a.data.ptr

    @staticmethod
    def to_host(a) -> np.ndarray:
        return a.get()

    @staticmethod
    def download(a, out: np.ndarray) -> None:
        a.get(out=out)

    @staticmethod
    def upload(a, host: np.ndarray) -> None:
        a.set(host)

    def stream(self) -> int:
        return self.cp.cuda.get_current_stream().ptr

    def memcpy(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        rt = self.cp.cuda.runtime
        rt.memcpyAsync(dst, src, nbytes, rt.memcpyDeviceToDevice, stream)

    def memset(self, ptr: int, nbytes: int, stream: int) -> None:
        self.cp.cuda.runtime.memsetAsync(ptr, 0, nbytes, stream)

    def read(self, ptr: int, out: np.ndarray) -> None:
        """Copy `out.nbytes` bytes at device address `ptr` into `out` (synchronises)."""
        rt = self.cp.cuda.runtime
        self.cp.cuda.get_current_stream().synchronize()
        rt.memcpy(out.ctypes.data, ptr, out.nbytes, rt.memcpyDeviceToHost)

    def view(self, ptr: int, shape: tuple, dtype) -> object:
        """A CuPy array over `shape` elements at device address `ptr` (not owned: the program's
        workspace or an argument keeps the memory alive)."""
        cp = self.cp
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if nbytes == 0:
            return cp.empty(shape, dtype)
        mem = cp.cuda.UnownedMemory(ptr, nbytes, self)
        return cp.ndarray(shape, dtype, cp.cuda.MemoryPointer(mem, 0))

    def write(self, ptr: int, host: np.ndarray) -> None:
        """Copy the contiguous `host` array to device address `ptr` (synchronises)."""
        rt = self.cp.cuda.runtime
        self.cp.cuda.get_current_stream().synchronize()
        rt.memcpy(ptr, host.ctypes.data, host.nbytes, rt.memcpyHostToDevice)

    # -- code --------------------------------------------------------------------------------------
    def target(self) -> str:
        """sm_XX of the current device when NVRTC knows it (a CUBIN), else the newest PTX below it."""
        from . import nvrtc

        cc = int(self.cp.cuda.Device().compute_capability)
        known = nvrtc.supported_archs()
        if not known or cc in known:
            return f"sm_{cc}"
        lower = [a for a in known if a <= cc]
        return f"compute_{max(lower) if lower else min(known)}"

    def load(self, source: str, launches) -> tuple[dict, str, bool]:
        """Compile (through the disk cache) and load `source`; return ({kernel name: launcher},
        path of the saved source, cache hit). A launcher is ``fn(grid, args)``, args the integer
        addresses (D first)."""
        from . import nvrtc

        path, hit = nvrtc.build_module(source, self.target())
        module = self.cp.RawModule(path=str(path))
        out = {}
        for step in launches:
            fn = module.get_function(step.name)
            out[step.name] = _cupy_launcher(fn)
        self._module = module  # keep loaded
        return out, str(path.parent / "source.cu"), hit

    # -- cuBLAS ----------------------------------------------------------------------------------
    def gemm(self, dtype: str, op_a: int, op_b: int, m: int, n: int, k: int, alpha: np.ndarray, A: int, lda: int,
             stride_a: int, B: int, ldb: int, stride_b: int, beta: np.ndarray, C: int, ldc: int, stride_c: int,
             count: int) -> None:
        """Column-major cuBLAS semantics: C = alpha op(A) op(B) + beta C, `count` strided batches
        (strides in elements). alpha and beta are host scalars of `dtype` (NumPy 0-d arrays) or,
        as ints, device addresses (cuBLAS's device pointer mode)."""
        from cupy.cuda import cublas

        h = self.cp.cuda.device.get_cublas_handle()
        on_device = isinstance(alpha, int)
        cublas.setPointerMode(h, cublas.CUBLAS_POINTER_MODE_DEVICE if on_device else cublas.CUBLAS_POINTER_MODE_HOST)
        pa, pb = (alpha, beta) if on_device else (alpha.ctypes.data, beta.ctypes.data)
        try:
            if count == 1:
                fn = cublas.sgemm if dtype == "float32" else cublas.dgemm
                fn(h, op_a, op_b, m, n, k, pa, A, lda, B, ldb, pb, C, ldc)
            else:
                fn = cublas.sgemmStridedBatched if dtype == "float32" else cublas.dgemmStridedBatched
                fn(h, op_a, op_b, m, n, k, pa, A, lda, stride_a, B, ldb, stride_b, pb, C, ldc, stride_c, count)
        finally:
            if on_device:  # CuPy's own calls expect host mode
                cublas.setPointerMode(h, cublas.CUBLAS_POINTER_MODE_HOST)


def _cupy_launcher(fn):
    block = (BLOCK,)

    def launch(grid: int, args: list[int]) -> None:
        fn((grid,), block, tuple(np.uint64(a) for a in args))

    return launch
