"""CProgram: a Graph compiled to one C entry point, called once per function call.

Per input-shape signature (cached) Python binds every call-time dimension, lays out the
workspace and fills the integer table `D` and the pointer table `B`; a call then only writes the
input and output addresses into `B` and makes one cffi call.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence

import numpy as np

from ...core import Constant, Graph, Placeholder, SharedVar
from ...passes.fuse import schedule
from ...passes.memory import plan_memory
from .build import build_library
from .emit import CEmitter

CDEF = "int gc_main(void **B, const int64_t *D);"


class _Signature:
    """Everything fixed for one tuple of input shapes."""

    __slots__ = ("ptrs", "dims", "out_shapes", "workspace", "ptrs_c", "dims_c", "workspace_bytes")


class CProgram:
    """Executes an optimised Graph as generated C."""

    def __init__(self, graph: Graph, n_outputs: int, update_targets: Sequence[SharedVar]):
        self.graph = graph
        self.n_outputs = n_outputs
        late = {id(v) for v in graph.outputs[n_outputs:]}
        self.schedule = schedule(graph, late=late)
        self.plan = plan_memory(self.schedule, n_outputs, list(update_targets))
        self.emitter = CEmitter(self.schedule, self.plan)
        for i in range(n_outputs):
            self.emitter.output_slot(i)
        self.source = self.emitter.source
        built = build_library(self.source, CDEF)
        self.library = built
        self._ffi, self._main = built.ffi, built.lib.gc_main
        self.source_path = str(built.source_path)
        self._input_slots = [(self.emitter._slot.get(id(v)), v) for v in graph.inputs]
        self._signatures: dict[tuple, _Signature] = {}
        self._lock = threading.Lock()
        self._keep = []  # arrays whose addresses sit in pointer tables
        if os.environ.get("GRAPHC_DEBUG", "0") not in ("", "0"):
            print(f"[graphc] {self.schedule}", file=sys.stderr)

    @property
    def memory_bytes(self) -> dict[tuple, int]:
        """Workspace bytes per input-shape signature seen so far."""
        return {k: s.workspace_bytes for k, s in self._signatures.items()}

    def _signature(self, shapes_key: tuple) -> _Signature:
        sig = self._signatures.get(shapes_key)
        if sig is not None:
            return sig
        shapes = self.graph.bind_shapes(shapes_key)
        em, plan = self.emitter, self.plan
        sig = _Signature()
        sig.dims = np.array([int(fn(shapes)) for fn in em.params] or [0], dtype=np.int64)
        offsets, total = plan.layout(shapes)
        sig.workspace_bytes = total
        sig.workspace = np.empty(total + 64, np.uint8)
        base = (sig.workspace.ctypes.data + 63) // 64 * 64
        sig.ptrs = np.zeros(max(len(em.buffers), 1), np.uint64)
        for slot, r in enumerate(em.buffers):
            if isinstance(r, tuple):  # caller's output array, filled per call
                continue
            if isinstance(r, Constant):
                arr = np.ascontiguousarray(r.value)
                self._keep.append(arr)
                sig.ptrs[slot] = arr.ctypes.data
            elif isinstance(r, SharedVar):
                sig.ptrs[slot] = r.storage.ctypes.data
            elif id(r) in plan.in_place:
                sig.ptrs[slot] = plan.in_place[id(r)].storage.ctypes.data
            elif isinstance(r, Placeholder) or id(r) in plan.output_backed:
                continue
            else:
                sig.ptrs[slot] = base + offsets[id(r)]
        sig.out_shapes = [(shapes.get(id(v), v.shape), v.dtype) for v in self.graph.outputs[: self.n_outputs]]
        sig.ptrs_c = self._ffi.cast("void **", sig.ptrs.ctypes.data)
        sig.dims_c = self._ffi.cast("int64_t *", sig.dims.ctypes.data)
        self._signatures[shapes_key] = sig
        return sig

    def __call__(self, args: Sequence[np.ndarray]) -> list[np.ndarray]:
        args = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in args]
        with self._lock:
            sig = self._signature(tuple(a.shape for a in args))
            ptrs = sig.ptrs
            for (slot, _), a in zip(self._input_slots, args):
                if slot is not None:
                    ptrs[slot] = a.ctypes.data
            outs = [np.empty(s, d) for s, d in sig.out_shapes]
            em, plan = self.emitter, self.plan
            for i, o in enumerate(outs):
                ptrs[em._slot[("output", i)]] = o.ctypes.data
                root = plan.root(self.graph.outputs[i])
                if id(root) in plan.output_backed and plan.output_backed[id(root)] == i and id(root) in em._slot:
                    ptrs[em._slot[id(root)]] = o.ctypes.data
            rc = self._main(sig.ptrs_c, sig.dims_c)
        if rc:
            message = self.emitter.errors.get(rc, f"generated kernel failed with code {rc}")
            raise IndexError(message) if "index" in message else RuntimeError(message)
        return outs

