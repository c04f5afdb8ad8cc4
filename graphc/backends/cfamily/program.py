"""The Program both C-family backends are: from an optimised Graph to kernels that a call runs.

`CFamilyProgram` does what C and CUDA do alike: schedule for the backend's Target, plan memory,
emit, and per input-shape signature (an LRU of `MAX_SIGNATURES`) bind the shapes, check that
every update keeps its variable's shape, fill the integer table `D`, lay out the workspace and
fill the pointer table from the buffer slots; in debug mode it runs the reference backend first
and names the first kernel whose values differ. A backend adds where its buffers live (host
arrays, device memory) and how a call runs (one cffi call, a launch sequence).
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
from ...lower import Target, plan_memory, schedule
from ..debugcheck import check_kernels

#: input-shape signatures kept per program (least recently used dropped first)
MAX_SIGNATURES = 64


class Signature:
    """What is fixed for one tuple of input shapes: the bound `shapes`, the integer table `dims`
    (host copy), the workspace `offsets` and size, and each output's (shape, dtype)."""

    __slots__ = ("shapes", "dims", "offsets", "workspace_bytes", "out_shapes")


class CFamilyProgram:
    """Base of CProgram and CudaProgram. A subclass sets `target` and `backend_name`, defines
    `make_emitter`, the buffer addresses (`constant_address`, `shared_address`,
    `scratch_address`) and `_call`; `to_host` and `workspace_bytes_at` serve debug mode.

    >>> import numpy as np, graphc as gc
    >>> x = gc.placeholder("x", (None, 2))
    >>> f = gc.function([x], x * 2.0, backend="c")
    >>> f(np.ones((3, 2), "float32")).shape, list(f._program.memory_bytes)
    ((3, 2), [((3, 2),)])
    """

    target: Target
    backend_name: str

    def __init__(self, graph: Graph, n_outputs: int, update_targets: Sequence[SharedVar], debug: bool = False):
        self.graph = graph
        self.n_outputs = n_outputs
        self.update_targets = list(update_targets)
        self.debug = debug
        late = {id(v) for v in graph.outputs[n_outputs:]}
        self.schedule = schedule(graph, late=late, target=self.target)
        self.plan = plan_memory(self.schedule, n_outputs, self.update_targets, reuse=not debug,
                                alignment=self.target.alignment)
        self.emitter = self.make_emitter()
        for i in range(n_outputs):
            self.emitter.output_slot(i)
        self.source = self.emitter.source
        self._input_slots = [(self.emitter.program_slot(v), v) for v in graph.inputs]
        self._signatures: OrderedDict[tuple, Signature] = OrderedDict()
        # Serialises calls: the workspace, pointer tables and error details are shared by all calls.
        self._lock = threading.Lock()
        if os.environ.get("GRAPHC_DEBUG", "0") not in ("", "0"):
            print(f"[graphc] {self.schedule}", file=sys.stderr)

    def make_emitter(self):
        raise NotImplementedError

    @property
    def memory_bytes(self) -> dict[tuple, int]:
        """Workspace bytes each input-shape signature still cached needs."""
        return {k: s.workspace_bytes for k, s in self._signatures.items()}

    # -- binding (once per input-shape signature) ------------------------------------------------
    def _bind(self, key: tuple, sig: Signature) -> Signature:
        """Fill the backend-neutral part of `sig` for input shapes `key`; raise ShapeError when an
        update would change its variable's shape."""
        shapes = self.graph.bind_shapes(key)
        for target, value in zip(self.plan.update_targets, self.graph.outputs[self.n_outputs:]):
            got = shapes.get(id(value), value.shape)
            if tuple(got) != target.shape:
                raise ShapeError(f"update of {target.name!r}: new value has shape {tuple(got)}, the variable has "
                                 f"{target.shape}")
        sig.shapes = shapes
        sig.dims = np.array([int(fn(shapes)) for fn in self.emitter.params] or [0], dtype=np.int64)
        sig.offsets, sig.workspace_bytes = self.plan.layout(shapes)
        sig.out_shapes = [(tuple(shapes.get(id(v), v.shape)), v.dtype) for v in self.graph.outputs[: self.n_outputs]]
        return sig

    def _remember(self, key: tuple, sig: Signature) -> list[tuple]:
        """Cache `sig`; returns the keys dropped to keep `MAX_SIGNATURES`."""
        self._signatures[key] = sig
        dropped = []
        while len(self._signatures) > MAX_SIGNATURES:
            dropped.append(self._signatures.popitem(last=False)[0])
        return dropped

    @functools.cached_property
    def _slot_kinds(self) -> list[tuple[int, str, object]]:
        """(slot, kind, object) for every buffer slot whose address is fixed per signature: kind
        "constant" (a Constant), "shared" (a SharedVar, also for a value computed in place in the
        variable it updates), "scratch" (the emitter's own device memory) or "workspace" (a temp).
        Inputs, outputs and the error details are per call or per program, and not listed."""
        plan, kinds = self.plan, []
        for slot, r in enumerate(self.emitter.buffers):
            if isinstance(r, tuple):
                if r[0] == "scratch":
                    kinds.append((slot, "scratch", r))
            elif isinstance(r, Constant):
                kinds.append((slot, "constant", r))
            elif isinstance(r, SharedVar):
                kinds.append((slot, "shared", r))
            elif id(r) in plan.in_place:
                kinds.append((slot, "shared", plan.in_place[id(r)]))
            elif not (isinstance(r, Placeholder) or id(r) in plan.output_backed):
                kinds.append((slot, "workspace", r))
        return kinds

    def _fill_pointers(self, ptrs, sig: Signature, workspace_start: int, workspace_only: bool = False) -> None:
        """Write the address of every fixed buffer of `sig` into `ptrs` (workspace temps at their
        offsets from `workspace_start`)."""
        for slot, kind, r in self._slot_kinds:
            if kind == "workspace":
                ptrs[slot] = workspace_start + sig.offsets[id(r)]
            elif workspace_only:
                continue
            elif kind == "constant":
                ptrs[slot] = self.constant_address(r)
            elif kind == "shared":
                ptrs[slot] = self.shared_address(r)
            else:
                ptrs[slot] = self.scratch_address(r, sig)

    def scratch_address(self, buffer: tuple, sig: Signature) -> int:
        raise TypeError(f"the {self.backend_name} backend has no scratch buffers ({buffer!r})")

    @functools.cached_property
    def _output_slots(self) -> list[list[int]]:
        """Per function output: the pointer-table slots its array fills (the output's own, and
        the slot of the value it backs when the plan computes that value in the output)."""
        em, plan = self.emitter, self.plan
        slots = []
        for i in range(self.n_outputs):
            mine = [em.output_slot(i)]
            root = plan.root(self.graph.outputs[i])
            slot = em.program_slot(root)
            if plan.output_backed.get(id(root)) == i and slot is not None:
                mine.append(slot)
            slots.append(mine)
        return slots

    # -- debug mode ----------------------------------------------------------------------------
    def _debug_call(self, args):
        """Run the reference backend first (on the same pre-call state), then this backend; compare
        every kernel's outputs in schedule order and raise on the first that differs."""
        from ..ref import RefProgram

        host_args = [self.to_host(a) for a in args]
        expected = RefProgram(self.graph, len(self.graph.outputs), []).evaluate(host_args)
        outs = self._call(args)
        sig = self._signatures[tuple(tuple(a.shape) for a in args)]
        check_kernels(self.schedule, expected, lambda v: self._value_after_call(v, sig, outs), self.backend_name,
                      self.source_path, compile_step=self.debug_step_program)
        return outs

    def debug_step_program(self, graph: Graph, n_outputs: int):
        """A loop's step graph compiled alone by this backend in debug mode (see check_kernels)."""
        return type(self)(graph, n_outputs, [], debug=True)

    def _value_after_call(self, v, sig: Signature, outs) -> np.ndarray | None:
        """Var v's value after the call, as a host array, or None when the memory plan reused its buffer."""
        plan = self.plan
        r = plan.root(v)
        shape = tuple(sig.shapes.get(id(v), v.shape))
        if id(r) in plan.output_backed:
            return self.to_host(outs[plan.output_backed[id(r)]]).reshape(shape)
        if id(r) in sig.offsets:
            n = int(np.prod(shape, dtype=np.int64)) * np.dtype(v.dtype).itemsize
            return self.workspace_bytes_at(sig, sig.offsets[id(r)], n).view(v.dtype).reshape(shape)
        return None

    def to_host(self, a) -> np.ndarray:
        return np.asarray(a)

    def workspace_bytes_at(self, sig: Signature, offset: int, n: int) -> np.ndarray:
        raise NotImplementedError
