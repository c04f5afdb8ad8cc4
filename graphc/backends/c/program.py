"""CProgram: a Graph compiled to one C entry point, called once per function call.

Per input-shape signature (cached) Python binds every call-time dimension, lays out the
workspace and fills the integer table `D` and the pointer table `B`; a call then only writes the
input and output addresses into `B` and makes one cffi call.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from ...core import Constant, Graph, Placeholder, ShapeError, SharedVar
from ...lower import plan_memory, schedule
from ..debugcheck import check_kernels
from .build import build_library
from .emit import TARGET, CEmitter
from .threads import ADAPTIVE

CDEF = "int gc_main(void **B, const int64_t *D);"

# Generated kernels use OpenMP while gemm runs on OpenBLAS's own threads. With OpenMP's default
# (workers spin after each parallel region) the two pools fight over the cores: a 784-512-512-10
# training step measured 68 ms instead of 3 ms on 2 cores. Idle OpenMP workers must sleep. Set
# before libgomp is loaded (with the first generated library); a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class _Signature:
    """Everything fixed for one tuple of input shapes."""

    __slots__ = ("ptrs", "dims", "out_shapes", "ptrs_c", "dims_c", "workspace_bytes", "shapes",
                 "offsets", "last_outputs", "generation", "gemm_error")


#: input-shape signatures kept per program (least recently used dropped first). A signature is
#: small (pointer and size tables) and cheap to rebuild; the workspace is not per signature.
MAX_SIGNATURES = 64


class CProgram:
    """Executes an optimised Graph as generated C."""

    def __init__(self, graph: Graph, n_outputs: int, update_targets: Sequence[SharedVar], debug: bool = False):
        self.graph = graph
        self.n_outputs = n_outputs
        self.debug = debug
        late = {id(v) for v in graph.outputs[n_outputs:]}
        self.schedule = schedule(graph, late=late, target=TARGET)
        self.plan = plan_memory(self.schedule, n_outputs, list(update_targets), reuse=not debug,
                                alignment=TARGET.alignment)
        self.emitter = CEmitter(self.schedule, self.plan)
        for i in range(n_outputs):
            self.emitter.output_slot(i)
        self.source = self.emitter.source
        self.profiling = os.environ.get("GRAPHC_PROFILE", "0") not in ("", "0")
        if self.profiling:
            built = build_library(self.source, CDEF + "\ndouble *gc_profile(void);", extra_cflags=("-DGC_PROFILE",))
        else:
            built = build_library(self.source, CDEF)
        self.library = built
        self._ffi, self._main = built.ffi, built.lib.gc_main
        self.source_path = str(built.source_path)
        self._input_slots = [(self.emitter._slot.get(id(v)), v) for v in graph.inputs]
        self._signatures: OrderedDict[tuple, _Signature] = OrderedDict()
        # One workspace for every signature, grown to the largest seen (never one per batch size:
        # 1000 batch sizes would otherwise hold 1000 workspaces). `_generation` counts regrowths;
        # a signature whose pointer table was filled for an older buffer is refreshed on use.
        self._workspace = np.empty(0, np.uint8)
        self._generation = 0
        # Serialises calls: the workspace, pointer tables and error info are shared by all calls.
        self._lock = threading.Lock()
        self._keep: dict[int, np.ndarray] = {}  # arrays whose addresses sit in pointer tables
        self._errinfo = np.zeros(4, np.int64)
        if os.environ.get("GRAPHC_DEBUG", "0") not in ("", "0"):
            print(f"[graphc] {self.schedule}", file=sys.stderr)

    @property
    def memory_bytes(self) -> dict[tuple, int]:
        """Workspace bytes each input-shape signature still cached needs (all share one buffer)."""
        return {k: s.workspace_bytes for k, s in self._signatures.items()}

    @property
    def held_bytes(self) -> int:
        """Bytes of workspace held now: one buffer, the size the largest call so far needed."""
        return max(self._workspace.nbytes - 64, 0)

    def _signature(self, shapes_key: tuple) -> _Signature:
        sig = self._signatures.get(shapes_key)
        if sig is not None:
            self._signatures.move_to_end(shapes_key)
            if sig.generation != self._generation:
                self._point_at_workspace(sig)
            return sig
        shapes = self.graph.bind_shapes(shapes_key)
        em, plan = self.emitter, self.plan
        sig = _Signature()
        sig.last_outputs = None
        sig.dims = np.array([int(fn(shapes)) for fn in em.params] or [0], dtype=np.int64)
        offsets, total = plan.layout(shapes)
        sig.workspace_bytes = total
        sig.gemm_error = em.check_blas_sizes(shapes)
        if total + 64 > self._workspace.nbytes:
            self._workspace = np.empty(total + 64, np.uint8)
            self._generation += 1
        sig.shapes, sig.offsets = shapes, offsets
        for target, value in zip(plan.update_targets, self.graph.outputs[self.n_outputs:]):
            got = shapes.get(id(value), value.shape)
            if tuple(got) != target.shape:
                raise ShapeError(f"update of {target.name!r}: new value has shape {tuple(got)}, the variable has "
                                 f"{target.shape}")
        sig.ptrs = np.zeros(max(len(em.buffers), 1), np.uint64)
        sig.ptrs[0] = self._errinfo.ctypes.data
        for slot, r in enumerate(em.buffers):
            if isinstance(r, tuple):  # caller's output arrays (filled per call), error info
                continue
            if isinstance(r, Constant):
                arr = self._keep.setdefault(id(r), np.ascontiguousarray(r.value))
                sig.ptrs[slot] = arr.ctypes.data
            elif isinstance(r, SharedVar):
                sig.ptrs[slot] = r.storage.ctypes.data
            elif id(r) in plan.in_place:
                sig.ptrs[slot] = plan.in_place[id(r)].storage.ctypes.data
            elif isinstance(r, Placeholder) or id(r) in plan.output_backed:
                continue
        self._point_at_workspace(sig)
        sig.out_shapes = [(shapes.get(id(v), v.shape), v.dtype) for v in self.graph.outputs[: self.n_outputs]]
        sig.ptrs_c = self._ffi.cast("void **", sig.ptrs.ctypes.data)
        sig.dims_c = self._ffi.cast("int64_t *", sig.dims.ctypes.data)
        self._signatures[shapes_key] = sig
        while len(self._signatures) > MAX_SIGNATURES:
            self._signatures.popitem(last=False)
        return sig

    @property
    def _base(self) -> int:
        """Offset of the 64-byte aligned start inside the workspace array."""
        addr = self._workspace.ctypes.data
        return (addr + 63) // 64 * 64 - addr

    def _point_at_workspace(self, sig: _Signature) -> None:
        """Fill `sig`'s pointer-table entries for workspace slices from the current buffer."""
        start = self._workspace.ctypes.data + self._base
        plan = self.plan
        for slot, r in enumerate(self.emitter.buffers):
            if isinstance(r, (tuple, Constant, SharedVar, Placeholder)) or id(r) in plan.in_place \
                    or id(r) in plan.output_backed:
                continue
            sig.ptrs[slot] = start + sig.offsets[id(r)]
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
            outs = self._output_arrays(sig)
            for o, slots in zip(outs, self._output_slots):
                p = address(o)
                for slot in slots:
                    ptrs[slot] = p
            ADAPTIVE.update()  # thread counts follow the cores other processes leave free
            rc = self._main(ptrs, sig.dims_c)
        if rc:
            kind, fmt = self.emitter.errors.get(rc, (RuntimeError, f"generated kernel failed with code {rc}"))
            raise kind(fmt.format(*self._errinfo.tolist()))
        return outs

    @functools.cached_property
    def _address(self):
        """``address(array)``: cffi's from_buffer without its Python wrapper (a char[] cdata)."""
        backend, char_array = self._ffi._backend, self._ffi.typeof("char[]")
        return lambda a: backend.from_buffer(char_array, a, False)

    @functools.cached_property
    def _output_slots(self) -> list[list[int]]:
        """Per function output: the pointer-table slots its array fills (the output's own, and
        the slot of the value it backs when the plan computes that value in the output)."""
        em, plan = self.emitter, self.plan
        slots = []
        for i in range(self.n_outputs):
            mine = [em._slot[("output", i)]]
            root = plan.root(self.graph.outputs[i])
            if plan.output_backed.get(id(root)) == i and id(root) in em._slot:
                mine.append(em._slot[id(root)])
            slots.append(mine)
        return slots

    def profile(self) -> list[tuple[str, float]]:
        """(kernel label, seconds spent so far) per kernel; needs GRAPHC_PROFILE=1 at compile time."""
        if not self.profiling:
            raise RuntimeError("compile with GRAPHC_PROFILE=1 set to time each kernel")
        times = self.library.lib.gc_profile()
        return [(f"k{i}: {k.label}", times[i]) for i, k in enumerate(self.schedule.kernels)]

    def _output_arrays(self, sig) -> list[np.ndarray]:
        """Fresh output arrays, except that an array from the previous call which nobody holds any
        more (only this list refers to it) is reused: no allocation and no page faults."""
        prev = sig.last_outputs
        outs, old = [], None
        for i, (shape, dtype) in enumerate(sig.out_shapes):
            old = prev[i] if prev is not None else None
            # references: `prev` (the list) and getrefcount's own argument
            outs.append(old if old is not None and sys.getrefcount(old) == 2 else np.empty(shape, dtype))
        sig.last_outputs = None
        del prev, old
        sig.last_outputs = list(outs)
        return outs

    def _debug_call(self, args):
        """Run the reference backend first (on the same pre-call state), then C; compare every
        kernel's outputs in schedule order and raise on the first that differs."""
        from ..ref import RefProgram

        ref = RefProgram(self.graph, len(self.graph.outputs), [])
        expected = ref.evaluate(args)
        outs = self._call(args)
        sig = self._signatures[tuple(a.shape for a in args)]
        check_kernels(self.schedule, expected, lambda v: self._value_after_call(v, sig, outs), "C", self.source_path,
                      compile_step=lambda graph, n: CProgram(graph, n, [], debug=True))
        return outs

    def _value_after_call(self, v, sig, outs):
        plan = self.plan
        r = plan.root(v)
        shape = sig.shapes.get(id(v), v.shape)
        if id(r) in plan.output_backed:
            return outs[plan.output_backed[id(r)]].reshape(shape)
        if id(r) in sig.offsets:
            n = int(np.prod(shape, dtype=np.int64)) * np.dtype(v.dtype).itemsize
            start = self._base + sig.offsets[id(r)]
            return self._workspace[start:start + n].view(v.dtype).reshape(shape)
        return None

