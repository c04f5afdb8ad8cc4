"""Compile CUDA C++ to PTX or CUBIN, with no GPU needed, and cache the result on disk.

Compilers, in order of preference (``GRAPHC_CUDA_COMPILER=nvrtc|nvcc`` picks one):

1. NVRTC through ctypes: ``libnvrtc.so`` from the ``nvidia-cuda-nvrtc`` wheel (the test extra pins
   it), else the CUDA toolkit's (``$CUDA_PATH``, ``/usr/local/cuda``) or the loader's search path;
2. CuPy's own NVRTC wrapper (``cupy.cuda.nvrtc``), when CuPy is installed: it needs no GPU either;
3. ``nvcc --ptx`` / ``--cubin`` from PATH.

`compile_cuda` raises `CompileError` with the compiler's log and the path of the saved source. The
generated source includes ``gc_cuda.cuh``: NVRTC receives it as an in-memory header, nvcc through
``-I``. `build_module` puts the binary in graphc's compile cache (``$GRAPHC_CACHE_DIR``, the same
directory, locking and atomic install as the C backend; ``graphc cache clear`` removes it too).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import CompileError

HEADER_NAME = "gc_cuda.cuh"
#: the oldest architecture CUDA 13 still compiles for; what compile-only checks target
DEFAULT_ARCH = "compute_75"
BASE_OPTIONS = ("-std=c++17",)

STATS = {"compiles": 0, "hits": 0}


@functools.cache
def header_text() -> str:
    from ..cache import kernels_dir

    return (kernels_dir() / HEADER_NAME).read_text()


@dataclass(frozen=True)
class Compiler:
    """One way to compile: `kind` is "nvrtc" (ctypes), "cupy-nvrtc" or "nvcc"; `version` a string
    for cache keys and messages; `where` the library or executable."""

    kind: str
    version: str
    where: str

    def __str__(self) -> str:
        return f"{self.kind} {self.version} ({self.where})"


# ---------------------------------------------------------------------------------------------
# finding a compiler


def _nvrtc_candidates() -> list[str]:
    out = []
    for entry in sys.path:  # the nvidia-cuda-nvrtc wheel: site-packages/nvidia/cu13/lib (cuda_nvrtc/lib before 13)
        for pattern in ("nvidia/cu*/lib/libnvrtc.so*", "nvidia/cuda_nvrtc/lib/libnvrtc.so*"):
            out += sorted(glob.glob(os.path.join(entry, pattern)), reverse=True)
    for root in filter(None, [os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"]):
        out += sorted(glob.glob(os.path.join(root, "lib64", "libnvrtc.so*")), reverse=True)
    found = ctypes.util.find_library("nvrtc")
    if found:
        out.append(found)
    # the builtins and .alt variants are not the API library
    return [p for p in dict.fromkeys(out) if "builtins" not in os.path.basename(p) and ".alt." not in p]


@functools.cache
def _load_nvrtc():
    """(ctypes library, path) of the first libnvrtc that loads, or (None, reasons)."""
    errors = []
    for path in _nvrtc_candidates():
        try:
            # NVRTC dlopens libnvrtc-builtins by name at compile time; the wheel's directory is not
            # on the loader's path, so load it first (a loaded soname satisfies the later dlopen)
            for builtins in sorted(glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so*"))):
                if ".alt." not in builtins:
                    ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
            lib = ctypes.CDLL(path)
            lib.nvrtcVersion  # noqa: B018 - the API library, not some other file
        except (OSError, AttributeError) as e:
            errors.append(f"{path}: {e}")
            continue
        _declare(lib)
        return lib, path
    return None, "; ".join(errors) or "no libnvrtc.so found"


def _declare(lib) -> None:
    P = ctypes.c_void_p
    lib.nvrtcVersion.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
    lib.nvrtcCreateProgram.argtypes = [ctypes.POINTER(P), ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                       ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p)]
    lib.nvrtcCompileProgram.argtypes = [P, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(P)]
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
    for name in ("nvrtcGetProgramLogSize", "nvrtcGetPTXSize", "nvrtcGetCUBINSize"):
        getattr(lib, name).argtypes = [P, ctypes.POINTER(ctypes.c_size_t)]
    for name in ("nvrtcGetProgramLog", "nvrtcGetPTX", "nvrtcGetCUBIN"):
        getattr(lib, name).argtypes = [P, ctypes.c_char_p]


def _cupy_nvrtc():
    try:
        from cupy.cuda import nvrtc  # noqa: PLC0415 - optional
    except Exception:  # ImportError, or a CuPy that fails to load its CUDA libraries
        return None
    return nvrtc


@functools.cache
def find_compiler(prefer: str | None = None) -> Compiler | None:
    """The compiler `compile_cuda` uses, or None when there is none (see the module docstring)."""
    prefer = prefer or os.environ.get("GRAPHC_CUDA_COMPILER") or None
    order = ["nvrtc", "cupy-nvrtc", "nvcc"]
    if prefer:
        order = [k for k in order if k.endswith(prefer)]
    for kind in order:
        if kind == "nvrtc":
            lib, where = _load_nvrtc()
            if lib is None:
                continue
            major, minor = ctypes.c_int(), ctypes.c_int()
            if lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) != 0:
                continue
            return Compiler("nvrtc", f"{major.value}.{minor.value}", where)
        if kind == "cupy-nvrtc":
            mod = _cupy_nvrtc()
            if mod is None:
                continue
            try:
                major, minor = mod.getVersion()
            except Exception:
                continue
            return Compiler("cupy-nvrtc", f"{major}.{minor}", "cupy.cuda.nvrtc")
        if kind == "nvcc":
            nvcc = shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)), None)
            if nvcc is None:
                continue
            try:
                out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            line = next((ln for ln in out.splitlines() if "release" in ln), out.strip().splitlines()[-1:] or ["?"])
            return Compiler("nvcc", str(line).strip(), nvcc)
    return None


def supported_archs() -> list[int]:
    """The real architectures (75, 80, ...) the NVRTC in use can build CUBINs for; [] when unknown
    (nvcc: assume it knows the device)."""
    compiler = find_compiler()
    if compiler is None or compiler.kind == "nvcc":
        return []
    try:
        if compiler.kind == "cupy-nvrtc":
            return sorted(int(a) for a in _cupy_nvrtc().getSupportedArchs())
        lib, _ = _load_nvrtc()
        n = ctypes.c_int()
        if lib.nvrtcGetNumSupportedArchs(ctypes.byref(n)) != 0:
            return []
        archs = (ctypes.c_int * n.value)()
        if lib.nvrtcGetSupportedArchs(archs) != 0:
            return []
        return sorted(archs)
    except Exception:
        return []


def unavailable_reason() -> str:
    """Why `find_compiler()` found nothing (for skip messages and errors)."""
    forced = os.environ.get("GRAPHC_CUDA_COMPILER")
    if forced:
        return f"no CUDA compiler of the kind GRAPHC_CUDA_COMPILER={forced!r} asks for (nvrtc, cupy-nvrtc or nvcc)"
    _, why = _load_nvrtc()
    return (f"no CUDA compiler: NVRTC did not load ({why}); CuPy is not installed; nvcc is not on PATH. "
            "Install the pinned NVRTC wheel: pip install 'graphc[test]' (nvidia-cuda-nvrtc)")


# ---------------------------------------------------------------------------------------------
# compiling


def compile_cuda(source: str, arch: str = DEFAULT_ARCH, *, options: tuple[str, ...] = (),
                 compiler: Compiler | None = None, name: str = "graphc.cu") -> bytes:
    """Compile `source` for `arch` ("compute_XX": PTX; "sm_XX": CUBIN) and return the binary.

    Raises CompileError with the compiler's log. Needs no GPU.
    """
    compiler = compiler or find_compiler()
    if compiler is None:
        raise CompileError(unavailable_reason())
    opts = (*BASE_OPTIONS, f"--gpu-architecture={arch}", *options)
    STATS["compiles"] += 1
    if compiler.kind == "nvrtc":
        return _compile_nvrtc(source, opts, name, arch.startswith("sm_"))
    if compiler.kind == "cupy-nvrtc":
        return _compile_cupy(source, opts, name, arch.startswith("sm_"))
    return _compile_nvcc(compiler.where, source, arch, options, name)


class _NvrtcFailed(Exception):
    def __init__(self, log: str):
        super().__init__(log)
        self.log = log


def _compile_nvrtc(source: str, opts, name: str, cubin: bool) -> bytes:
    lib, _ = _load_nvrtc()
    prog = ctypes.c_void_p()

    def check(rc, what):
        if rc != 0:
            raise CompileError(f"NVRTC {what} failed: {lib.nvrtcGetErrorString(rc).decode()}")

    headers = (ctypes.c_char_p * 1)(header_text().encode())
    names = (ctypes.c_char_p * 1)(HEADER_NAME.encode())
    check(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 1, headers, names),
          "nvrtcCreateProgram")
    try:
        argv = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        rc = lib.nvrtcCompileProgram(prog, len(opts), argv)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value + 1)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace")
        if rc != 0:
            raise _NvrtcFailed(log or lib.nvrtcGetErrorString(rc).decode())
        get_size, get = ((lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN) if cubin else
                         (lib.nvrtcGetPTXSize, lib.nvrtcGetPTX))
        check(get_size(prog, ctypes.byref(size)), "get size")
        out = ctypes.create_string_buffer(size.value)
        check(get(prog, out), "get binary")
        return out.raw[: size.value]
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _compile_cupy(source: str, opts, name: str, cubin: bool) -> bytes:
    nvrtc = _cupy_nvrtc()
    prog = nvrtc.createProgram(source, name, [header_text().encode()], [HEADER_NAME.encode()])
    try:
        try:
            nvrtc.compileProgram(prog, list(opts))
        except nvrtc.NVRTCError:
            raise _NvrtcFailed(nvrtc.getProgramLog(prog)) from None
        out = nvrtc.getCUBIN(prog) if cubin else nvrtc.getPTX(prog)
        return out if isinstance(out, bytes) else out.encode()
    finally:
        nvrtc.destroyProgram(prog)


def _compile_nvcc(nvcc: str, source: str, arch: str, options, name: str) -> bytes:
    from ..cache import kernels_dir

    with tempfile.TemporaryDirectory(prefix="graphc-nvcc-") as tmp:
        src = Path(tmp) / name
        src.write_text(source)
        out = Path(tmp) / "out.bin"
        kind = "--cubin" if arch.startswith("sm_") else "--ptx"
        real = arch.replace("compute_", "sm_") if kind == "--cubin" else arch
        cmd = [nvcc, kind, "-std=c++17", f"-arch={arch}" if kind == "--ptx" else f"-arch={real}",
               f"-I{kernels_dir()}", *options, str(src), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
        if proc.returncode != 0:
            raise _NvrtcFailed(proc.stderr + proc.stdout)
        return out.read_bytes()


def first_error_lines(log: str, n: int = 12) -> str:
    lines = [ln for ln in log.splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if "error" in ln), 0)
    shown = lines[start:start + n]
    if len(lines) > start + n:
        shown.append(f"... ({len(lines) - start - n} more lines)")
    return "\n".join("    " + ln for ln in shown) or "    (the compiler printed nothing)"


def check_compiles(source: str, arch: str = DEFAULT_ARCH, *, compiler: Compiler | None = None) -> bytes:
    """`compile_cuda` without the cache; on failure a CompileError quoting the first errors (the
    source is saved in a temporary file named in the message)."""
    try:
        return compile_cuda(source, arch, compiler=compiler)
    except _NvrtcFailed as e:
        fd, path = tempfile.mkstemp(prefix="graphc-failed-", suffix=".cu")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        compiler = compiler or find_compiler()
        raise CompileError(f"{compiler} failed to compile generated CUDA code:\n{first_error_lines(e.log)}\n"
                           f"  source saved at {path}", source_path=path, log=e.log) from None


# ---------------------------------------------------------------------------------------------
# the on-disk cache (shared with the C backend's: same directory, locks and atomic install)


def cache_key(source: str, arch: str, compiler: Compiler, options: tuple[str, ...] = ()) -> str:
    from ...version import __version__

    h = hashlib.sha256()
    parts = [("cuda-source", source), ("header", header_text()), ("compiler", f"{compiler.kind} {compiler.version}"),
             ("arch", arch), ("options", "\0".join(BASE_OPTIONS + tuple(options))), ("graphc", __version__)]
    for part, value in parts:
        data = value.encode()
        h.update(f"{part}:{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()


def build_module(source: str, arch: str, *, options: tuple[str, ...] = ()) -> tuple[Path, bool]:
    """Compile `source` for `arch` through the cache; return (path of the binary, cache hit)."""
    from ..cache import cache_dir, check_cache_dir, discard, entry_dir, key_lock, save_failed, sha256_file

    compiler = find_compiler()
    if compiler is None:
        raise CompileError(unavailable_reason())
    key = cache_key(source, arch, compiler, options)
    root = cache_dir()
    check_cache_dir(root, create=True)
    entry = entry_dir(root, key)
    binary = "module.cubin" if arch.startswith("sm_") else "module.ptx"

    def valid() -> bool:
        try:
            meta = json.loads((entry / "meta.json").read_text())
            return meta.get("key") == key and sha256_file(entry / binary) == meta.get("binary_sha256")
        except (OSError, ValueError):
            return False

    if valid():
        STATS["hits"] += 1
        return entry / binary, True
    with key_lock(root, key):
        if valid():
            STATS["hits"] += 1
            return entry / binary, True
        if entry.exists():
            discard(root, entry)
        try:
            data = compile_cuda(source, arch, options=options, compiler=compiler)
        except _NvrtcFailed as e:
            failed = save_failed(root, key, source, e.log)
            raise CompileError(f"{compiler} failed to compile generated CUDA code:\n{first_error_lines(e.log)}\n"
                               f"  source saved at {failed}\n  options: {shlex.join(BASE_OPTIONS + options)} "
                               f"--gpu-architecture={arch}", source_path=failed, log=e.log) from None
        tmp = Path(tempfile.mkdtemp(prefix=f"tmp-{key}-", dir=root))
        try:
            (tmp / binary).write_bytes(data)
            (tmp / "source.cu").write_text(source)
            meta = {"key": key, "binary_sha256": sha256_file(tmp / binary), "compiler": str(compiler),
                    "arch": arch, "options": list(BASE_OPTIONS + options), "created": time.time()}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            os.rename(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return entry / binary, False
