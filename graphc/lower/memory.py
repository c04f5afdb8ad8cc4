"""The buffer plan: where every value of a Schedule lives.

- Views alias their source; an elementwise kernel may write an output over an input of the same
  shape that dies there (in place).
- A function output lives directly in the array returned to the caller.
- An update is written straight into its shared variable when nothing reads the old value after
  the kernel that produces the new one; otherwise it is copied in at the end (Theano semantics:
  every update is computed from the values before the call).
- Everything else lives in one workspace. Sizes depend on call-time dimensions, so offsets are
  computed per input-shape signature (`layout`), by a liveness-based first-fit that reuses the
  memory of dead buffers.
- The outputs of an op with ``packed_outputs`` (the allreduce of all gradients) form one *pack*:
  consecutive, gap-free workspace memory, so that one library call covers them all. Output i
  takes over input i's buffer when that input dies there (its producer, a gemm say, then writes
  straight into the pack: no copy); otherwise the kernel copies the input in.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from ..core import Constant, Placeholder, SharedVar, Var
from .plan import ElementwiseKernel, GemmKernel, Kernel, Schedule

#: the default block alignment (a CPU cache line); a Target states its own
ALIGN = 64


@dataclass(eq=False)
class MemoryPlan:
    schedule: Schedule
    n_outputs: int
    update_targets: list[SharedVar]
    #: id(var) -> the Var that owns its storage
    roots: dict[int, Var] = field(default_factory=dict)
    #: root ids stored in the caller's output arrays: id(root) -> output index
    output_backed: dict[int, int] = field(default_factory=dict)
    #: root ids stored in a shared variable's storage (in-place updates): id(root) -> SharedVar
    in_place: dict[int, SharedVar] = field(default_factory=dict)
    #: copies done before the first kernel: (destination, source). A destination is an output
    #: index (int) or a workspace snapshot Var. Outputs of inputs/shared/constants are copied
    #: here, before any in-place update can change them.
    pre_copies: list[tuple[int | Var, Var]] = field(default_factory=list)
    #: copies done after the last kernel: (destination, source), destination an output index or a
    #: SharedVar (updates that could not be written in place).
    post_copies: list[tuple[int | SharedVar, Var]] = field(default_factory=list)
    #: workspace roots and their live ranges [first kernel, last kernel]
    temps: list[Var] = field(default_factory=list)
    live: dict[int, tuple[int, int]] = field(default_factory=dict)
    reuse: bool = True
    #: groups of workspace roots laid out back to back, in order (see `packed_outputs`)
    packs: list[list[Var]] = field(default_factory=list)
    #: byte alignment of every workspace block (the Target's)
    alignment: int = ALIGN

    def root(self, v: Var) -> Var:
        return self.roots.get(id(v), v)

    def kind(self, v: Var) -> str:
        r = self.root(v)
        if isinstance(r, Placeholder):
            return "input"
        if isinstance(r, SharedVar):
            return "shared"
        if isinstance(r, Constant):
            return "const"
        if id(r) in self.output_backed:
            return "output"
        if id(r) in self.in_place:
            return "update"
        return "temp"

    def layout(self, shapes: dict[int, tuple]) -> tuple[dict[int, int], int]:
        """Workspace offsets of the temps for one set of call-time shapes, and the total size."""
        sizes = {id(r): _nbytes(r, shapes) for r in self.temps}
        # a pack is placed as one block (its members' total size and joint lifetime)
        in_pack = {id(m) for p in self.packs for m in p}
        blocks = [r for r in self.temps if id(r) not in in_pack]
        live = dict(self.live)
        for p in self.packs:
            block = Var(p[0].type, name="pack")
            sizes[id(block)] = sum(sizes[id(m)] for m in p)
            live[id(block)] = (min(self.live[id(m)][0] for m in p), max(self.live[id(m)][1] for m in p))
            blocks.append(block)
        order = sorted(blocks, key=lambda r: -sizes[id(r)])
        placed = _Placed(self.alignment)
        offsets: dict[int, int] = {}
        for r in order:
            first, last = live[id(r)] if self.reuse else (0, 1 << 62)
            size = sizes[id(r)]
            offset = placed.first_fit(first, last, size)
            offsets[id(r)] = offset
            placed.add(offset, offset + size, first, last)
        for p, block in zip(self.packs, blocks[len(blocks) - len(self.packs):]):
            at = offsets.pop(id(block))
            for m in p:
                offsets[id(m)] = at
                at += sizes[id(m)]
        total = placed.end
        return offsets, _align(total, self.alignment)


class _Placed:
    """The blocks placed so far, by offset, and the first-fit search among those whose lifetime
    overlaps a new block's: the lowest aligned offset below which no such block reaches, or the
    first gap between them that is large enough. A deep network's gradient has ~10^4 temps, most
    alive together; a Python scan per block was quadratic (minutes at 2,000 layers), so beyond a
    few hundred blocks the scan is done on arrays."""

    SMALL = 256

    def __init__(self, align: int = ALIGN):
        self.align = align
        self.rows: list[tuple[int, int, int, int]] = []  # (offset, end, first, last), sorted
        self.end = 0
        self._arrays = None  # offset, aligned end, first, last as int64 arrays (row order)

    def first_fit(self, first: int, last: int, size: int) -> int:
        if len(self.rows) <= self.SMALL:
            offset = 0
            for o, e, f, la in self.rows:
                if la < first or f > last:  # lifetimes do not overlap
                    continue
                if offset + size <= o:
                    break
                offset = max(offset, _align(e, self.align))
            return offset
        o, e, f, la = self._arrays
        hit = (la >= first) & (f <= last)
        o, e = o[hit], e[hit]
        if not len(o):
            return 0
        # before the j-th overlapping block the candidate offset is the largest aligned end so far
        before = np.maximum.accumulate(np.concatenate(([0], e[:-1])))
        fits = np.flatnonzero(before + size <= o)
        return int(before[fits[0]]) if len(fits) else max(int(e.max()), 0)

    def add(self, offset: int, end: int, first: int, last: int) -> None:
        row = (offset, end, first, last)
        at = bisect.bisect_right(self.rows, row)
        self.rows.insert(at, row)
        self.end = max(self.end, end)
        if len(self.rows) == self.SMALL + 1:
            self._arrays = tuple(np.array(c, np.int64) for c in zip(*self.rows))
            ends = (self._arrays[1] + self.align - 1) // self.align * self.align
            self._arrays = (self._arrays[0], ends, *self._arrays[2:])
        elif self._arrays is not None:
            vals = (offset, _align(end, self.align), first, last)
            self._arrays = tuple(np.insert(a, at, v) for a, v in zip(self._arrays, vals))


def _align(n: int, align: int = ALIGN) -> int:
    return (n + align - 1) // align * align


def _nbytes(v: Var, shapes) -> int:
    shape = shapes[id(v)] if id(v) in shapes else v.shape
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(v.dtype).itemsize


def plan_memory(schedule: Schedule, n_outputs: int, update_targets: list[SharedVar],
                reuse: bool = True, alignment: int = ALIGN) -> MemoryPlan:
    """Decide every value's storage for `schedule` (see the module docstring). With
    ``reuse=False`` (debug mode) every value keeps its own memory until the call ends, so it can
    be inspected afterwards: no in-place work and no shared workspace regions."""
    plan = MemoryPlan(schedule, n_outputs, list(update_targets), reuse=reuse, alignment=alignment)
    kernels = schedule.kernels
    outputs = list(schedule.graph.outputs)

    def root(v):
        while id(v) in schedule.views:
            v = schedule.views[id(v)]
        return plan.roots.get(id(v), v)

    # root id -> indices of the kernels reading it, built once (one scan per query made planning
    # quadratic: 40 s for a 300-layer MLP); kept current when an in-place output joins a root
    readers: dict[int, list[int]] = {}
    for i, k in enumerate(kernels):
        for v in k.inputs:
            readers.setdefault(id(root(v)), []).append(i)

    def reads_of(r_id):
        return readers.get(r_id, [])

    # in-place elementwise outputs over inputs that die in the same kernel (not for update values:
    # they should land in their shared variable's storage instead)
    update_values = {id(v) for v in outputs[n_outputs:]}
    output_roots = {id(root(g)) for g in outputs}  # kept current, like `readers`
    for i, k in enumerate(kernels):
        if not isinstance(k, ElementwiseKernel) or not reuse:
            continue
        taken = set()
        for o in k.outputs:
            if id(o) in update_values:
                continue
            for u in k.inputs:
                ru = root(u)
                if isinstance(ru, (Placeholder, SharedVar, Constant)) or id(ru) in taken:
                    continue
                if u.shape != o.shape or u.dtype != o.dtype:
                    continue
                if u.shape != _iteration_shape(k) or id(ru) in output_roots:
                    continue
                if max(reads_of(id(ru)), default=-1) != i:
                    continue
                taken.add(id(ru))
                plan.roots[id(o)] = ru
                readers.setdefault(id(ru), []).extend(readers.pop(id(o), []))
                if id(o) in output_roots:
                    output_roots.add(id(ru))
                break
    def join(o, r):  # `o` now lives in root `r`: its readers are r's readers too
        plan.roots[id(o)] = r
        readers.setdefault(id(r), []).extend(readers.pop(id(o), []))

    packed = _plan_packs(plan, kernels, outputs, root, reads_of, join)
    for v in _all_vars(schedule):
        r = root(v)
        if r is not v:
            plan.roots[id(v)] = r

    # function outputs live in the caller's arrays (one array per root)
    for idx, o in enumerate(outputs[:n_outputs]):
        r = plan.root(o)
        if isinstance(r, (Placeholder, SharedVar, Constant)):
            plan.pre_copies.append((idx, o))
        elif id(r) in plan.output_backed or id(r) in packed:
            plan.post_copies.append((idx, o))
        else:
            plan.output_backed[id(r)] = idx

    # updates: in place when nothing reads the old value after the producing kernel
    writers = {}
    for i, k in enumerate(kernels):
        for o in k.outputs:
            writers.setdefault(id(plan.root(o)), i)
    for target, value in zip(update_targets, outputs[n_outputs:]):
        r = plan.root(value)
        if r is target:
            continue
        if isinstance(r, (Placeholder, SharedVar, Constant)):
            # snapshot the source first: another update may overwrite it (a <- b, b <- a)
            snap = Var(target.type, name=f"{target.name}_next")
            plan.pre_copies.append((snap, value))
            plan.post_copies.append((target, snap))
            plan.temps.append(snap)
            plan.live[id(snap)] = (-1, len(kernels))
            continue
        ok = (not isinstance(r, (Placeholder, SharedVar, Constant)) and id(r) not in plan.output_backed
              and id(r) not in plan.in_place and id(r) not in packed and id(r) in writers and r.shape == target.shape)
        if ok:
            first = writers[id(r)]
            for j in reads_of(id(target)):
                if j > first or (j == first and not _reads_elementwise_same_shape(kernels[j], target, plan)):
                    ok = False
                    break
        if ok and reuse:
            plan.in_place[id(r)] = target
        else:
            plan.post_copies.append((target, value))

    # the workspace: every other root written by a kernel
    seen = set()
    n = len(kernels)
    for k in kernels:
        for o in k.outputs:
            r = plan.root(o)
            if id(r) in seen or plan.kind(r) != "temp":
                continue
            seen.add(id(r))
            plan.temps.append(r)
    copied = {id(plan.root(v)) for _, v in plan.post_copies}
    for r in plan.temps:
        if id(r) in plan.live:  # snapshots
            continue
        first = writers[id(r)]
        last = max(reads_of(id(r)), default=first)
        if id(r) in copied:
            last = n
        plan.live[id(r)] = (first, last)
    return plan


def _plan_packs(plan: MemoryPlan, kernels: list[Kernel], outputs: list[Var], root, reads_of, join) -> set[int]:
    """Form the pack of each ``packed_outputs`` kernel; returns the ids of every pack member.
    Output i reuses input i's buffer when that is a workspace temp read for the last time here,
    by no graph output, and not yet in a pack; otherwise the output gets its own buffer."""
    members: set[int] = set()
    for i, k in enumerate(kernels):
        node = k.nodes[0] if len(k.nodes) == 1 else None
        if node is None or not getattr(node.op, "packed_outputs", False):
            continue
        pack = []
        for x, y in zip(node.inputs, node.outputs):
            rx = root(x)
            own = (plan.reuse and rx.owner is not None and id(rx) not in members and rx.type == y.type
                   and not isinstance(rx, (Placeholder, SharedVar, Constant))
                   and not any(root(g) is rx for g in outputs) and max(reads_of(id(rx)), default=-1) == i)
            if own:
                join(y, rx)
            r = rx if own else y
            members.add(id(r))
            pack.append(r)
        plan.packs.append(pack)
    return members


def _iteration_shape(k: Kernel):
    return k.nodes[-1].outputs[0].shape


def _reads_elementwise_same_shape(k: Kernel, target: SharedVar, plan: MemoryPlan) -> bool:
    if isinstance(k, GemmKernel) and k.acc is target:
        return True  # the gemm reads C = target and writes it back (beta = 1): safe in place
    if not isinstance(k, ElementwiseKernel) or _iteration_shape(k) != target.shape:
        return False
    return all(v.shape == target.shape for v in k.inputs if plan.root(v) is target)


def _all_vars(schedule: Schedule):
    for k in schedule.kernels:
        yield from k.inputs
        yield from k.outputs
    yield from schedule.graph.outputs
