"""Scheduling and fusion: group the nodes of an optimised Graph into the records of
`graphc.lower.plan`, ordered so that every record runs after those it reads.

- **elementwise**: maximal vertical fusion of elementwise nodes (the ops' `elementwise` fact:
  Elemwise, Cast and the broadcasts, which become index arithmetic) sharing an iteration shape. A
  member whose value is needed outside the group becomes an output; the rest stay in registers.
- **reduce**: a sum/max/min, with the elementwise group producing its input fused in front when
  nothing else needs that group's values.
- **matmul**: a gemm record; transposes and, where the Target takes them, the bias and
  accumulate epilogues fold into it (`graphc.lower.epilogues`).
- **op** / **loop**: one record per remaining node; a node with an inner graph is a loop.
- **views** (the ops' `is_view` fact: reshape, expand_dims, ...) are no records at all: their
  output aliases their input's buffer.

A node joins a producer's group only if none of its other inputs depends on that group through a
node outside it, so the kernel graph stays acyclic.
"""
from __future__ import annotations

from ..core import Graph, Node, Var
from ..ops import Matmul, Reduce
from .epilogues import fold_gemm_epilogues
from .plan import (
    ElementwiseKernel,
    GemmKernel,
    Kernel,
    LoopKernel,
    OpKernel,
    ReduceKernel,
    Schedule,
    data_inputs,
    fused_kernel,
)
from .target import DEFAULT_TARGET, Target

#: most nodes one fused kernel holds. gcc's time on one function grows faster than linearly
#: with its length (a 500-op chain as one kernel: 12 s), so long chains are cut into kernels
#: of at most this many nodes; the extra loads and stores between them cost little.
#: ``$GRAPHC_MAX_FUSED`` overrides it (read when a schedule is made).
MAX_FUSED = 64


class _Group:
    __slots__ = ("gid", "kind", "shape", "nodes")

    def __init__(self, gid, kind, shape, node):
        self.gid, self.kind, self.shape, self.nodes = gid, kind, shape, [node]


def schedule(graph: Graph, late: set[int] = frozenset(), target: Target = DEFAULT_TARGET) -> Schedule:
    """Group `graph`'s nodes into kernels and order them.

    Fusion's cycle check prunes its search by node position, which keeps it linear in deep
    graphs; a merge that pulls a later node into an early group can defeat that prune (found by
    the differential fuzzer: a reduction's gradient broadcast back into the group that feeds the
    reduction). Then the kernel graph has a cycle, and fusion runs again with the exact check.

    >>> import graphc as gc
    >>> x = gc.placeholder("x", (None, 8))
    >>> s = schedule(Graph([x], [gc.tanh(x * 2.0 + 1.0).sum(axis=1)]))
    >>> [k.label for k in s.kernels]
    ['reduce[multiply, add, tanh, sum]']
    """
    try:
        return _schedule(graph, late, target, exact=False)
    except _CyclicKernels:
        return _schedule(graph, late, target, exact=True)


class _CyclicKernels(AssertionError):
    """Fusion's pruned cycle check let a cycle through (see `schedule`)."""


def _schedule(graph: Graph, late: set[int], target: Target, exact: bool) -> Schedule:
    max_fused = max_fused_nodes()
    nodes = _value_needed(graph)
    position = {id(n): i for i, n in enumerate(nodes)}
    users = _users(graph, nodes)
    views: dict[int, Var] = {}
    group_of: dict[int, _Group] = {}  # id(node) -> group
    groups: list[_Group] = []

    alias: dict[int, int] = {}  # merged group id -> surviving group id
    ext_inputs: dict[int, list[Var]] = {}  # group id -> Vars its members read from outside it
    by_id: dict[int, _Group] = {}
    first: dict[int, int] = {}  # group id -> position of its first / last member
    last: dict[int, int] = {}

    def find(gid: int) -> int:
        while gid in alias:
            gid = alias[gid]
        return gid

    def producer_group(v: Var):
        while id(v) in views:
            v = views[id(v)]
        g = group_of.get(id(v.owner)) if v.owner is not None else None
        return None if g is None else by_id[find(g.gid)]

    def reaches(starts, targets: set) -> bool:
        """Whether a group in `targets` must run before (or is) one of the groups producing
        `starts`. Iterative (graphs thousands of layers deep must not hit Python's recursion
        limit), and a group whose last member comes before every target's first member
        usually cannot depend on a target, so the search stays local: fusion is linear in the
        graph, not quadratic. Not always (an early group can gain a late member), hence `exact`."""
        floor = -1 if exact else min(first[t] for t in targets)
        stack = [g for g in (producer_group(u) for u in starts) if g is not None]
        seen: set[int] = set()
        while stack:
            g = stack.pop()
            if g.gid in targets:
                return True
            if g.gid in seen or last[g.gid] < floor:
                continue
            seen.add(g.gid)
            for u in ext_inputs[g.gid]:
                pg = producer_group(u)
                if pg is not None and pg.gid != g.gid and pg.gid not in seen:
                    stack.append(pg)
        return False

    def new_group(kind, shape, node):
        g = _Group(len(groups), kind, shape, node)
        groups.append(g)
        by_id[g.gid] = g
        ext_inputs[g.gid] = []
        first[g.gid] = last[g.gid] = position[id(node)]
        return g

    for node in nodes:
        ins = data_inputs(node)
        if node.op.is_view:
            views[id(node.outputs[0])] = node.inputs[0]
            continue
        group = None
        if node.op.elementwise:
            shape = node.outputs[0].shape
            cands = []
            for v in ins:
                if id(v) in views:  # a view is read from memory: its source must be written first
                    continue
                g = producer_group(v)
                if g is not None and g.kind == "elementwise" and g.shape == shape and g not in cands \
                        and len(g.nodes) < max_fused:
                    cands.append(g)
            # merge the node with every producer group of its shape that it can join without a
            # cycle: no chosen group may reach another, or an input of the node, through a kernel
            # outside them
            chosen: list[_Group] = []
            for g in cands:
                trial = chosen + [g]
                if sum(len(c.nodes) for c in trial) >= max_fused:
                    continue
                ids = {c.gid for c in trial}
                starts = [u for u in ins if id(u) in views or producer_group(u) not in trial]
                starts += [u for c in trial for u in ext_inputs[c.gid] if producer_group(u) is not c]
                if not reaches(starts, ids):
                    chosen = trial
            if chosen:
                group = chosen[0]
                for g in chosen[1:]:
                    alias[g.gid] = group.gid
                    group.nodes = sorted(group.nodes + g.nodes, key=lambda n: position[id(n)])
                    ext_inputs[group.gid] += ext_inputs.pop(g.gid)
                    first[group.gid] = min(first[group.gid], first[g.gid])
                    last[group.gid] = max(last[group.gid], last[g.gid])
                    g.nodes = []
                group.nodes.append(node)
                last[group.gid] = position[id(node)]
            else:
                group = new_group("elementwise", shape, node)
        else:
            group = new_group("single", None, node)
        group_of[id(node)] = group
        for u in ins:
            if id(u) in views or producer_group(u) is not group:
                ext_inputs[group.gid].append(u)
    for node in nodes:  # point nodes of merged groups at the surviving group
        if id(node) in group_of:
            group_of[id(node)] = by_id[find(group_of[id(node)].gid)]
    groups = [g for g in groups if g.nodes]

    kernels = _make_kernels(groups, group_of, users, target)
    return Schedule(graph, _order(kernels, views, late), views)


def max_fused_nodes() -> int:
    """The fused-kernel size bound: ``$GRAPHC_MAX_FUSED`` if set (a positive int), else MAX_FUSED.

    >>> max_fused_nodes() >= 1
    True
    """
    import os

    raw = os.environ.get("GRAPHC_MAX_FUSED", "")
    try:
        value = int(raw) if raw else MAX_FUSED
    except ValueError:
        raise ValueError(f"GRAPHC_MAX_FUSED must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"GRAPHC_MAX_FUSED must be a positive integer, got {raw!r}")
    return value


def _value_needed(graph: Graph) -> list[Node]:
    """The nodes whose values the outputs need. A node read only for its shape (the forward loss
    whose size a gradient broadcasts to) is dropped: its sizes come from the bound shapes."""
    needed: set[int] = set()
    stack = [v.owner for v in graph.outputs if v.owner is not None]
    while stack:
        node = stack.pop()
        if id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(v.owner for v in data_inputs(node) if v.owner is not None and id(v.owner) not in needed)
    return [n for n in graph.nodes if id(n) in needed]


def _users(graph: Graph, nodes: list[Node]) -> dict[int, list]:
    """id(var) -> consumers: nodes reading its value, or "out" for a graph output."""
    users: dict[int, list] = {}
    for node in nodes:
        for v in data_inputs(node):
            users.setdefault(id(v), []).append(node)
    for v in graph.outputs:
        users.setdefault(id(v), []).append("out")
    return users


def _make_kernels(groups, group_of, users, target: Target) -> list[Kernel]:
    absorbed: set[int] = set()  # group ids merged into a reduce or matmul kernel
    kernels: dict[int, Kernel] = {}

    def external_users(v: Var, members: set[int]) -> list:
        return [u for u in users.get(id(v), []) if u == "out" or id(u) not in members]

    # reductions swallow the elementwise group producing their input when nothing else needs it
    for g in groups:
        if g.kind != "single" or not isinstance(g.nodes[0].op, Reduce):
            continue
        node = g.nodes[0]
        x = node.inputs[0]
        pg = group_of.get(id(x.owner)) if x.owner is not None else None
        if pg is None or pg.kind != "elementwise" or pg.gid in absorbed:
            continue
        members = {id(n) for n in pg.nodes}
        needed = [o for n in pg.nodes for o in n.outputs if external_users(o, members)]
        if needed == [x] and users.get(id(x)) == [node]:
            absorbed.add(pg.gid)
            g.kind = "reduce"
            g.nodes = pg.nodes + [node]

    for g in groups:
        if g.gid in absorbed:
            continue
        node = g.nodes[-1]
        if g.kind == "elementwise":
            kernels[g.gid] = fused_kernel(ElementwiseKernel, g.nodes, users)
        elif g.kind == "reduce" or isinstance(node.op, Reduce):
            kernels[g.gid] = fused_kernel(ReduceKernel, g.nodes, users)
        elif isinstance(node.op, Matmul):
            a, b = node.inputs
            kernels[g.gid] = GemmKernel([node], list(node.outputs), [a, b], a=a, b=b)
        else:
            record = LoopKernel if node.op.inner_graph else OpKernel
            kernels[g.gid] = record([node], list(node.outputs), data_inputs(node))

    fold_gemm_epilogues(kernels, group_of, users, target)
    return [k for k in kernels.values() if k.nodes]


def _order(kernels: list[Kernel], views: dict[int, Var], late: set[int] = frozenset()) -> list[Kernel]:
    """Topological order of kernels (stable: earlier-first) from their buffer dependencies."""

    def root(v: Var) -> int:
        while id(v) in views:
            v = views[id(v)]
        return id(v)

    writer = {}
    for k in kernels:
        for o in k.outputs:
            writer[root(o)] = k
    indeg = {id(k): 0 for k in kernels}
    edges: dict[int, list[Kernel]] = {id(k): [] for k in kernels}
    for k in kernels:
        srcs = {id(writer[root(v)]) for v in k.inputs if root(v) in writer and writer[root(v)] is not k}
        for s in srcs:
            edges[s].append(k)
            indeg[id(k)] += 1
    position = {id(k): i + (len(kernels) if any(id(o) in late for o in k.outputs) else 0)
                for i, k in enumerate(kernels)}
    ready = sorted((k for k in kernels if indeg[id(k)] == 0), key=lambda k: position[id(k)])
    order = []
    import heapq

    heap = [(position[id(k)], id(k), k) for k in ready]
    heapq.heapify(heap)
    while heap:
        _, _, k = heapq.heappop(heap)
        order.append(k)
        for nxt in edges[id(k)]:
            indeg[id(nxt)] -= 1
            if indeg[id(nxt)] == 0:
                heapq.heappush(heap, (position[id(nxt)], id(nxt), nxt))
    if len(order) != len(kernels):
        raise _CyclicKernels("fusion produced a cyclic kernel graph")
    return order
