"""CudaProgram: a Graph compiled to CUDA kernels and cuBLAS calls, run through CuPy.

Construction checks for CuPy and a GPU first (a clear RuntimeError says what is missing), then
schedules and plans memory exactly as the C backend does, emits one CUDA translation unit
(emit.py), compiles it with NVRTC into graphc's on-disk cache (nvrtc.py) and loads it with
``cupy.RawModule`` (device.py). Per input-shape signature (cached) the host binds everything once:
the `D` integers (uploaded once), the workspace (allocated once), the address of every buffer
slot and the launch sequence (grid sizes, kernel arguments, cuBLAS geometry). A call then uploads
NumPy arguments (CuPy arguments are used in place), allocates the outputs, runs the pre-bound
sequence on the current stream and returns CuPy arrays (NumPy with ``to_host=True``).

Shared variables live on the device: each SharedVar gets a device mirror (kept in `MIRRORS`, a
weak registry that core's SharedVar consults through its storage-observer hook) that every CUDA
function using it shares; updates are written there in place. The host copy is
refreshed lazily: ``get_value()`` downloads it when the device copy is newer, and ``set_value()``
marks the device copy stale, to be uploaded before the next CUDA call.

``GRAPHC_CUDA_EMULATE=1`` runs the same program on the CPU instead (emulate.py): slow, for testing
everything above the device layer on machines without a GPU.
"""

from __future__ import annotations

import itertools
import os
import weakref
from collections.abc import Sequence

import numpy as np

from ...core import Constant, Graph, Placeholder, ShapeError, SharedVar, add_storage_observer, matches
from ...passes import optimize
from ..args import cast_arg, convert_arg
from ..cfamily.index import shape_of
from ..cfamily.program import CFamilyProgram, Signature
from .device import NEEDS, available, require_cupy  # noqa: F401 - re-exported
from .emit import TARGET, Copy, CudaEmitter, Gemm, HostCall, HostLoop, Launch, Memset

LLMAX = (1 << 63) - 1


def make_device():
    """The device a new CudaProgram runs on: CuPy's GPU, or the CPU emulator under
    ``GRAPHC_CUDA_EMULATE=1``."""
    if os.environ.get("GRAPHC_CUDA_EMULATE", "0") not in ("", "0"):
        from .emulate import EmulatedDevice

        return EmulatedDevice()
    from .device import CupyDevice

    return CupyDevice()


class DeviceMirror:
    """The device copy of one SharedVar (kept in `MIRRORS`). `device_newer`: a CUDA call changed it
    since the host copy was refreshed; `host_newer`: the host copy may have been written since the
    last upload."""

    __slots__ = ("device", "array", "device_newer", "host_newer")

    def __init__(self, device, host: np.ndarray):
        self.device = device
        self.array = device.asarray(host.copy())
        self.device_newer = False
        self.host_newer = False

    def pull(self, host: np.ndarray) -> None:
        """Refresh the host copy (SharedVar calls this before any host access)."""
        if self.device_newer:
            self.device.download(self.array, host)
            self.device_newer = False

    def host_changed(self) -> None:
        self.host_newer = True
        self.device_newer = False

    def push(self, host: np.ndarray) -> None:
        if self.host_newer:
            self.device.upload(self.array, host)
            self.host_newer = False


class MirrorRegistry:
    """The device mirror of each SharedVar that a CUDA function has used, held weakly (a mirror
    goes with its variable). Registered with core as a storage observer, so that reading a
    shared value on the host downloads a newer device copy first, and writing it marks the
    device copy stale."""

    def __init__(self):
        self._mirrors: weakref.WeakKeyDictionary[SharedVar, DeviceMirror] = weakref.WeakKeyDictionary()

    def get(self, sv: SharedVar) -> DeviceMirror | None:
        """`sv`'s mirror, or None if no CUDA function has used it."""
        return self._mirrors.get(sv)

    def of(self, device, sv: SharedVar) -> DeviceMirror:
        """`sv`'s mirror on `device`, made (uploaded) on first use."""
        m = self._mirrors.get(sv)
        if m is not None and m.device.kind != device.kind:  # moving between the GPU and the emulator
            m.pull(sv.host_array)
            m = None
        if m is None:
            m = DeviceMirror(device, sv.host_array)
            self._mirrors[sv] = m
        return m

    # the storage-observer protocol of graphc.core.SharedVar
    def pull(self, sv: SharedVar) -> None:
        m = self._mirrors.get(sv)
        if m is not None:
            m.pull(sv.host_array)

    def host_changed(self, sv: SharedVar) -> None:
        m = self._mirrors.get(sv)
        if m is not None:
            m.host_changed()


MIRRORS = MirrorRegistry()
add_storage_observer(MIRRORS)


def mirror_of(device, sv: SharedVar) -> DeviceMirror:
    """`sv`'s device mirror on `device` (see `MirrorRegistry.of`)."""
    return MIRRORS.of(device, sv)


class _Signature(Signature):
    __slots__ = ("workspace", "base", "errinfo", "ptrs", "run", "keep")


class CudaProgram(CFamilyProgram):
    """Executes an optimised Graph as CUDA kernels on the current CuPy device."""

    target = TARGET
    backend_name = "CUDA"

    def __init__(self, graph: Graph, n_outputs: int, update_targets: Sequence[SharedVar], debug: bool = False,
                 to_host: bool = False, device=None):
        self.device = device or make_device()
        self.to_host_results = to_host
        super().__init__(graph, n_outputs, update_targets, debug)
        em = self.emitter
        launches = [s for s in em.steps if isinstance(s, Launch)]
        self._functions, self.source_path, self.cache_hit = self.device.load(self.source, launches)
        shared = [r for r in em.buffers if isinstance(r, SharedVar)]
        shared += list(self.plan.in_place.values()) + self.update_targets
        self._shared = list({id(s): s for s in shared}.values())
        self._consts: dict[int, object] = {}

    def make_emitter(self) -> CudaEmitter:
        return CudaEmitter(self.schedule, self.plan)

    def debug_step_program(self, graph: Graph, n_outputs: int) -> CudaProgram:
        return CudaProgram(graph, n_outputs, [], debug=True, device=self.device)

    # -- arguments -----------------------------------------------------------------------------
    def convert_arg(self, p: Placeholder, value, allow_downcast: bool):
        """Function's argument check, accepting device arrays (CuPy, or anything with
        ``__cuda_array_interface__``) without a copy to the host."""
        dev = self.device
        if dev.kind != "cuda" or not dev.is_array(value):
            return convert_arg(p, value, allow_downcast)
        arr = value if isinstance(value, dev.array_type) else dev.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"input {p.name!r} expects {p.dtype}, got an array of {arr.dtype}")
        if arr.dtype.name != p.dtype:
            arr = cast_arg(p, arr, p.dtype, False, allow_downcast)
        if not matches(p.shape, arr.shape):
            raise ShapeError(f"input {p.name!r} expects shape {p.shape}, got {arr.shape}")
        return arr

    # -- buffer addresses (see CFamilyProgram._fill_pointers) ------------------------------------
    def constant_address(self, c: Constant) -> int:
        arr = self._consts.get(id(c))
        if arr is None:  # uploaded once per program; the graph keeps `c` (and so its id) alive
            arr = self._consts[id(c)] = self.device.asarray(np.ascontiguousarray(c.value))
        return self.device.ptr(arr)

    def shared_address(self, sv: SharedVar) -> int:
        return self.device.ptr(mirror_of(self.device, sv).array)

    def scratch_address(self, buffer: tuple, sig: _Signature) -> int:
        _, _key, dtype, count = buffer
        arr = self.device.zeros((count,), dtype)
        sig.keep.append(arr)
        return self.device.ptr(arr)

    # -- binding (once per input-shape signature) ------------------------------------------------
    def _signature(self, key: tuple) -> _Signature:
        sig = self._signatures.get(key)
        if sig is not None:
            self._signatures.move_to_end(key)
            return sig
        dev, em = self.device, self.emitter
        sig = self._bind(key, _Signature())
        dims = sig.dims
        sig.dims = dev.asarray(dims)
        sig.workspace = dev.empty((sig.workspace_bytes + 256,), np.uint8)
        sig.base = (dev.ptr(sig.workspace) + 255) // 256 * 256
        sig.errinfo = dev.zeros((max(1, len(em.errors)),), np.int64)
        sig.keep = []
        sig.ptrs = [0] * len(em.buffers)
        sig.ptrs[0] = dev.ptr(sig.errinfo)
        self._fill_pointers(sig.ptrs, sig, sig.base)
        sig.run = [f for f in (self._bind_step(step, sig.shapes, sig) for step in em.steps) if f is not None]
        self._remember(key, sig)
        return sig

    def _bind_step(self, step, shapes, sig):
        """One step of the launch sequence as a closure over (pointer table, stream)."""
        dev = self.device
        if isinstance(step, Launch):
            blocks = step.blocks(shapes)
            if blocks <= 0:
                return None
            fn = self._functions[step.name]
            grid = min(blocks, dev.max_blocks)
            dims = dev.ptr(sig.dims)
            slots = step.slots
            return lambda ptrs, stream: fn(grid, [dims, *[ptrs[s] for s in slots]])
        if isinstance(step, (Copy, Memset)):
            n = step.nbytes(shapes)
            if n <= 0:
                return None
            if isinstance(step, Memset):
                slot = step.slot
                return lambda ptrs, stream: dev.memset(ptrs[slot], n, stream)
            dst, src = step.dst, step.src
            return lambda ptrs, stream: dev.memcpy(ptrs[dst], ptrs[src], n, stream) if ptrs[dst] != ptrs[src] else None
        if isinstance(step, Gemm):
            return self._bind_gemm(step, shapes, sig)
        if isinstance(step, HostCall):
            return self._bind_host_call(step, shapes)
        if isinstance(step, HostLoop):
            return self._bind_host_loop(step, shapes)
        raise TypeError(f"unknown launch step {step!r}")

    def _bind_host_call(self, step: HostCall, shapes):
        dev, node = self.device, step.node
        ins = [np.empty(shape_of(x, shapes), x.dtype) for x in node.inputs]

        def host_call(ptrs, stream):
            for slot, host in zip(step.ins, ins):
                dev.read(ptrs[slot], host)
            outs = node.op.perform(node, *ins)
            for slot, y, host in zip(step.outs, node.outputs, outs):
                dev.write(ptrs[slot], np.ascontiguousarray(host, dtype=y.dtype))

        return host_call

    def _step_program(self, node) -> CudaProgram:
        """The scan's step graph as its own program on this device (built once per scan node)."""
        progs = self.__dict__.setdefault("_step_programs", {})
        prog = progs.get(id(node))
        if prog is None:
            body = node.op.body
            graph = optimize(Graph(list(body.inputs), list(body.outputs)))
            prog = progs[id(node)] = CudaProgram(graph, len(graph.outputs), [], device=self.device)
        return prog

    def _bind_host_loop(self, step: HostLoop, shapes):
        """A host loop of the step program's pre-bound launches (one signature for every step:
        the step shapes do not change). States stay on the device; each stacked output is written
        at its step's row."""
        dev, node, op = self.device, step.node, step.node.op
        body = self._step_program(node)
        views = [(slot, shape_of(v, shapes), v.dtype) for slot, v in zip(step.ins, node.inputs)]
        out_views = [(slot, shape_of(y, shapes), y.dtype) for slot, y in zip(step.outs, node.outputs)]
        n_seqs, n_states = op.n_seqs, op.n_states
        steps = op._length([shape for _, shape, _ in views[:n_seqs]])
        total = views[0][1][0] if n_seqs else steps
        order = range(total - 1, total - 1 - steps, -1) if op.go_backwards else range(steps)

        def host_loop(ptrs, stream):
            ins = [dev.view(ptrs[slot], shape, dtype) for slot, shape, dtype in views]
            outs = [dev.view(ptrs[slot], shape, dtype) for slot, shape, dtype in out_views]
            seqs, states, rest = ins[:n_seqs], list(ins[n_seqs:n_seqs + n_states]), ins[n_seqs + n_states:]
            last = [None] * len(outs)
            for k_step, t in enumerate(order):
                res = body._call([s[t] for s in seqs] + states + rest)
                for k, r in enumerate(res):
                    if op.keep[k] == "all":
                        outs[k][k_step] = r
                    last[k] = r
                    if op.state_of[k] >= 0:
                        states[op.state_of[k]] = r
            for k, keep in enumerate(op.keep):
                if keep == "last":
                    j = op.state_of[k]
                    value = last[k] if last[k] is not None else (ins[n_seqs + j] if j >= 0 else 0)
                    outs[k][...] = value

        return host_loop

    def _bind_gemm(self, step: Gemm, shapes, sig):
        """Row-major out = op(a) @ op(b) is column-major out^T = op(b)^T @ op(a)^T: cuBLAS gets b
        first, with m and n swapped; batch runs become strided-batched calls."""
        dev = self.device
        n, m, kk, lda, ldb, runs = step.geometry(shapes)
        itemsize = np.dtype(step.dtype).itemsize
        count = int(np.prod([r[0] for r in runs], dtype=np.int64)) if runs else 1
        if n == 0 or m == 0 or count == 0:
            return None
        out = step.out
        if kk == 0:
            if step.beta:
                return None  # C += alpha * (an empty sum)
            nbytes = n * m * count * itemsize
            return lambda ptrs, stream: dev.memset(ptrs[out], nbytes, stream)
        if step.scalars is None:  # host scalars
            alpha = np.array(step.alpha, dtype=step.dtype)
            beta = np.array(step.beta, dtype=step.dtype)
            sig.keep += [alpha, beta]
        else:  # device scalars: [alpha, beta] written by the kernel before this gemm
            alpha = sig.ptrs[step.scalars]
            beta = alpha + np.dtype(step.dtype).itemsize
        op_a, op_b = int(step.trans_a), int(step.trans_b)  # CUBLAS_OP_N = 0, CUBLAS_OP_T = 1
        a, b, dtype = step.a, step.b, step.dtype
        cnt, sa, sb, sc = runs[-1] if runs else (1, 0, 0, 0)
        offsets = []
        for combo in itertools.product(*[range(r[0]) for r in runs[:-1]]):
            offsets.append(tuple(itemsize * sum(i * r[j] for i, r in zip(combo, runs)) for j in (1, 2, 3)))
        offsets = offsets or [(0, 0, 0)]

        def gemm(ptrs, stream):
            for oa, ob, oc in offsets:
                dev.gemm(dtype, op_b, op_a, m, n, kk, alpha, ptrs[b] + ob, ldb, sb, ptrs[a] + oa, lda, sa, beta,
                         ptrs[out] + oc, m, sc, cnt)

        return gemm

    # -- calls ---------------------------------------------------------------------------------
    def __call__(self, args: Sequence) -> list:
        outs = self._debug_call(args) if self.debug else self._call(args)
        return [self.device.to_host(o) for o in outs] if self.to_host_results else outs

    def _call(self, args):
        dev, em = self.device, self.emitter
        with self._lock:
            key = tuple(tuple(a.shape) for a in args)
            sig = self._signature(key)
            self._precheck(args, sig)
            on_device = [dev.asarray(a) for a in args]
            for s in self._shared:
                mirror_of(dev, s).push(s.host_array)
            ptrs = list(sig.ptrs)
            for (slot, _), a in zip(self._input_slots, on_device):
                if slot is not None:
                    ptrs[slot] = dev.ptr(a)
            outs = [dev.empty(shape, dtype) for shape, dtype in sig.out_shapes]
            for o, slots in zip(outs, self._output_slots):
                for slot in slots:
                    ptrs[slot] = dev.ptr(o)
            stream = dev.stream()
            if em.errors:
                dev.memset(ptrs[0], sig.errinfo.nbytes, stream)
            for run in sig.run:
                run(ptrs, stream)
            for t in self.update_targets:
                mirror_of(dev, t).device_newer = True
            if em.errors:
                self._raise_index_errors(sig, ptrs)
        return outs

    def _precheck(self, args, sig) -> None:
        """Index inputs that arrive as NumPy arrays are checked on the host before anything runs,
        so that a bad index changes no state (the C backend's guarantee)."""
        for chk in self.emitter.errors.values():
            if not isinstance(chk.var, Placeholder):
                continue
            a = args[next(i for i, v in enumerate(self.graph.inputs) if v is chk.var)]
            if not isinstance(a, np.ndarray) or a.size == 0:
                continue
            size = chk.size(sig.shapes)
            bad = np.flatnonzero((a < -size) | (a >= size))
            if bad.size:
                raise chk.exc(chk.message.format(int(a.reshape(-1)[bad[0]]), size))

    def _raise_index_errors(self, sig, ptrs) -> None:
        """Indices computed on the device (or passed as device arrays) are checked by the kernels
        that use them: bad ones read as 0 and scatter nothing, and the first is reported here."""
        found = np.zeros(len(self.emitter.errors), np.int64)
        self.device.read(ptrs[0], found)
        for code, chk in self.emitter.errors.items():
            if found[code]:
                pos = LLMAX - int(found[code])
                value = np.zeros(1, chk.var.dtype)
                self.device.read(ptrs[chk.slot] + pos * value.itemsize, value)
                raise chk.exc(chk.message.format(int(value[0]), chk.size(sig.shapes)) +
                                 " (CUDA: the index was computed on the device; the call's other results and "
                                 "updates were still written)")

    # -- debug mode (see CFamilyProgram._debug_call) ---------------------------------------------
    def to_host(self, a) -> np.ndarray:
        dev = self.device
        return dev.to_host(a) if dev.is_array(a) and not isinstance(a, np.ndarray) else np.asarray(a)

    def workspace_bytes_at(self, sig: _Signature, offset: int, n: int) -> np.ndarray:
        start = sig.base - self.device.ptr(sig.workspace) + offset
        return self.to_host(sig.workspace[start:start + n])
