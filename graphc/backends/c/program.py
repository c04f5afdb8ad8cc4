"""CProgram: a Graph compiled to one C entry point, called once per function call.

Per input-shape signature (cached) Python binds every call-time dimension, lays out the
workspace and fills the integer table `D` and the pointer table `B`; a call then only writes the
input and output addresses into `B` and makes one cffi call. A repeat call with ready arrays
(`fast_call`, generated Python) does only that, after a few identity checks; anything else
takes the checking path through `Function._bind_args` and `CProgram.__call__`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np

from ...core import Constant, Graph, SharedVar, matches
from ..cfamily.program import CFamilyProgram, Signature
from .build import build_library
from .emit import TARGET, CEmitter
from .threads import ADAPTIVE

CDEF = "int gc_main(void **B, const int64_t *D);"

# Generated kernels use OpenMP while gemm runs on OpenBLAS's own threads. With OpenMP's default
# (workers spin after each parallel region) the two pools fight over the cores: a 784-512-512-10
# training step measured 68 ms instead of 3 ms on 2 cores. Idle OpenMP workers must sleep. Set
# before libgomp is loaded (with the first generated library); a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class _Signature(Signature):
    """Everything fixed for one tuple of input shapes, with the C call's tables."""

    __slots__ = ("ptrs", "ptrs_c", "dims_c", "generation", "gemm_error", "outputs", "out_dims")


class CProgram(CFamilyProgram):
    """Executes an optimised Graph as generated C."""

    target = TARGET
    backend_name = "C"

    def __init__(self, graph: Graph, n_outputs: int, update_targets: Sequence[SharedVar], debug: bool = False):
        super().__init__(graph, n_outputs, update_targets, debug)
        self.profiling = os.environ.get("GRAPHC_PROFILE", "0") not in ("", "0")
        if self.profiling:
            built = build_library(self.source, CDEF + "\ndouble *gc_profile(void);", extra_cflags=("-DGC_PROFILE",))
        else:
            built = build_library(self.source, CDEF)
        self.library = built
        self._ffi, self._main = built.ffi, built.lib.gc_main
        self.source_path = str(built.source_path)
        # The signatures `fast_call` may use: pointer tables for the current workspace, shapes
        # that match the inputs' static shapes, no gemm size error. Filled by `_signature`.
        self._fast: dict[tuple, _Signature] = {}
        # per graph input: (NumPy dtype, pointer-table slot or None when no kernel reads it)
        self._fast_inputs = [(np.dtype(v.dtype), slot) for slot, v in self._input_slots]
        # One workspace for every signature, grown to the largest seen (never one per batch size:
        # 1000 batch sizes would otherwise hold 1000 workspaces). `_generation` counts regrowths;
        # a signature whose pointer table was filled for an older buffer is refreshed on use.
        self._workspace = np.empty(0, np.uint8)
        self._generation = 0
        self._keep: dict[int, np.ndarray] = {}  # arrays whose addresses sit in pointer tables
        self._errinfo = np.zeros(4, np.int64)
        # debug mode compares every call with the reference backend: no path around that
        self.fast_call = None if debug else _fast_caller(self)

    def make_emitter(self) -> CEmitter:
        return CEmitter(self.schedule, self.plan)

    @property
    def held_bytes(self) -> int:
        """Bytes of workspace held now: one buffer, the size the largest call so far needed."""
        return max(self._workspace.nbytes - 64, 0)

    # -- buffer addresses (see CFamilyProgram._fill_pointers) ------------------------------------
    def constant_address(self, c: Constant) -> int:
        return self._keep.setdefault(id(c), np.ascontiguousarray(c.value)).ctypes.data

    def shared_address(self, sv: SharedVar) -> int:
        return sv.storage.ctypes.data

    def _signature(self, shapes_key: tuple) -> _Signature:
        sig = self._signatures.get(shapes_key)
        if sig is not None:
            self._signatures.move_to_end(shapes_key)
            if sig.generation != self._generation:
                self._point_at_workspace(sig, workspace_only=True)
                self._offer_fast(shapes_key, sig)
            return sig
        sig = self._bind(shapes_key, _Signature())
        sig.gemm_error = self.emitter.check_blas_sizes(sig.shapes)
        if sig.workspace_bytes + 64 > self._workspace.nbytes:
            self._workspace = np.empty(sig.workspace_bytes + 64, np.uint8)
            self._generation += 1
            self._fast.clear()  # every cached pointer table points at the old buffer
        sig.ptrs = np.zeros(max(len(self.emitter.buffers), 1), np.uint64)
        sig.ptrs[0] = self._errinfo.ctypes.data
        self._point_at_workspace(sig)
        # what the fast path needs per output: (shape, NumPy dtype, pointer-table slots)
        sig.outputs = [(shape, np.dtype(dtype), slots)
                       for (shape, dtype), slots in zip(sig.out_shapes, self._output_slots)]
        sig.out_dims = tuple(shape for shape, _, _ in sig.outputs)
        sig.ptrs_c = self._ffi.cast("void **", sig.ptrs.ctypes.data)
        sig.dims_c = self._ffi.cast("int64_t *", sig.dims.ctypes.data)
        for key in self._remember(shapes_key, sig):
            self._fast.pop(key, None)
        self._offer_fast(shapes_key, sig)
        return sig

    def _offer_fast(self, shapes_key: tuple, sig: _Signature) -> None:
        """Let `fast_call` use `sig` when it is current and its shapes are ones Function would
        accept (then a hit in `_fast` proves the shapes valid without checking them again)."""
        if sig.gemm_error is None and sig.generation == self._generation and all(
                matches(v.shape, s) for v, s in zip(self.graph.inputs, shapes_key)):
            self._fast[shapes_key] = sig

    @property
    def _base(self) -> int:
        """Offset of the 64-byte aligned start inside the workspace array."""
        addr = self._workspace.ctypes.data
        return (addr + 63) // 64 * 64 - addr

    def _point_at_workspace(self, sig: _Signature, workspace_only: bool = False) -> None:
        """Fill `sig`'s pointer table from the current workspace buffer (only its workspace
        entries when the buffer was regrown)."""
        self._fill_pointers(sig.ptrs, sig, self._workspace.ctypes.data + self._base, workspace_only)
        sig.generation = self._generation

    def __call__(self, args: Sequence[np.ndarray]) -> list[np.ndarray]:
        args = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in args]
        if self.debug:
            return self._debug_call(args)
        return self._call(args)

    def _call(self, args):
        with self._lock:
            sig = self._signature(tuple([a.shape for a in args]))
            if sig.gemm_error is not None:
                raise sig.gemm_error
            # cffi's from_buffer is the cheap way to an array's address (ndarray.ctypes builds
            # a Python object per access): this runs for every argument of every call
            ptrs, address = sig.ptrs_c, self._address
            for (slot, _), a in zip(self._input_slots, args):
                if slot is not None:
                    ptrs[slot] = address(a)
            outs = [np.empty(shape, dtype) for shape, dtype, _ in sig.outputs]  # the caller owns them
            for o, slots in zip(outs, self._output_slots):
                p = address(o)
                for slot in slots:
                    ptrs[slot] = p
            ADAPTIVE.update()  # thread counts follow the cores other processes leave free
            rc = self._main(ptrs, sig.dims_c)
        if rc:
            self._raise_kernel_error(rc)
        return outs

    def _raise_kernel_error(self, rc: int):
        """Raise the error that the generated code's return code `rc` stands for."""
        err = self.emitter.errors.get(rc)
        if err is None:
            raise RuntimeError(f"generated kernel failed with code {rc}")
        raise err.exc(err.message.format(*self._errinfo.tolist()))

    @functools.cached_property
    def _address(self):
        """``address(array)``: cffi's from_buffer without its Python wrapper (a char[] cdata)."""
        backend, char_array = self._ffi._backend, self._ffi.typeof("char[]")
        return lambda a: backend.from_buffer(char_array, a, False)

    def profile(self) -> list[tuple[str, float]]:
        """(kernel label, seconds spent so far) per kernel; needs GRAPHC_PROFILE=1 at compile time."""
        if not self.profiling:
            raise RuntimeError("compile with GRAPHC_PROFILE=1 set to time each kernel")
        times = self.library.lib.gc_profile()
        return [(f"k{i}: {k.label}", times[i]) for i, k in enumerate(self.schedule.kernels)]

    def workspace_bytes_at(self, sig: _Signature, offset: int, n: int) -> np.ndarray:
        start = self._base + offset
        return self._workspace[start:start + n]


def _fast_caller(prog: CProgram):
    """`prog.fast_call(args)`: run with `args` as given by the caller if each is a C-contiguous
    ndarray of its input's dtype and the tuple of their shapes is a signature already seen and
    checked; else return None, and the caller takes the checking path (`Function._bind_args`,
    then `CProgram.__call__`), which converts the argument or names what is wrong with it.

    Generated Python, unrolled over this program's inputs and outputs with its slots as
    literals (as `dataclasses` generates `__init__`): a loop over argument specs costs 0.6 us of
    the 2.5 us a 4x4 matmul call took (issue 14 item 2). `prog.fast_call_source` shows it.

    >>> import numpy as np, graphc as gc
    >>> x = gc.placeholder("x", (2,))
    >>> prog = gc.function([x], x * 2.0, backend="c")._program
    >>> prog.fast_call([np.ones(2, "float32")]) is None  # a signature not seen yet
    True
    >>> prog([np.ones(2, "float32")])[0].tolist(); prog.fast_call([np.ones(2, "float32")])[0].tolist()
    [2.0, 2.0]
    [2.0, 2.0]
    """
    names = [f"a{i}" for i in range(len(prog._fast_inputs))]
    env = {"fast": prog._fast, "lock": prog._lock, "main": prog._main, "ndarray": np.ndarray, "empty": np.empty,
           "from_buffer": prog._ffi._backend.from_buffer, "char_array": prog._ffi.typeof("char[]"),
           "raise_kernel_error": prog._raise_kernel_error, "adaptive": ADAPTIVE}
    env.update((f"dt{i}", dtype) for i, (dtype, _) in enumerate(prog._fast_inputs))
    env.update((f"odt{i}", np.dtype(v.dtype)) for i, v in enumerate(prog.graph.outputs[: prog.n_outputs]))
    # `is` for dtypes: NumPy's built-in dtypes are singletons; an equal one that is not (byte
    # order, metadata) just takes the checking path, as does a subclass of ndarray
    checks = " or ".join(f"type({a}) is not ndarray or {a}.dtype is not dt{i}" for i, a in enumerate(names))
    lines = ["def fast_call(args):",
             "    try:",
             f"        ({''.join(a + ', ' for a in names)}) = args",
             "    except ValueError:  # a wrong argument count",
             "        return None"]
    if checks:
        lines += [f"    if {checks}:", "        return None"]
    lines += ["    with lock:  # the signature table and its pointer tables are shared by all calls",
              "        # a hit proves the shapes valid (CProgram._offer_fast)",
              f"        sig = fast.get(({''.join(a + '.shape, ' for a in names)}))",
              "        if sig is None:",
              "            return None",
              "        ptrs = sig.ptrs_c",
              "        try:  # from_buffer raises for an array that is not C-contiguous"]
    for a, (_, slot) in zip(names, prog._fast_inputs):
        if slot is not None:
            lines.append(f"            ptrs[{slot}] = from_buffer(char_array, {a}, False)")
    lines += ["            pass", "        except (ValueError, BufferError):", "            return None"]
    outs = [f"o{i}" for i in range(prog.n_outputs)]
    if outs:
        lines.append(f"        ({''.join(f's{i}, ' for i in range(len(outs)))}) = sig.out_dims")
    for i, slots in enumerate(prog._output_slots):
        lines += [f"        o{i} = empty(s{i}, odt{i})", f"        p = from_buffer(char_array, o{i}, False)"]
        lines += [f"        ptrs[{slot}] = p" for slot in slots]
    lines += ["        adaptive.update()  # thread counts follow the cores other processes leave free",
              "        rc = main(ptrs, sig.dims_c)",
              "    if rc:",
              "        raise_kernel_error(rc)",
              f"    return [{', '.join(outs)}]"]
    prog.fast_call_source = "\n".join(lines) + "\n"
    exec(compile(prog.fast_call_source, f"<graphc fast_call of {prog.source_path}>", "exec"), env)
    return env["fast_call"]
