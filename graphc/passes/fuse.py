"""Scheduling and fusion: group the nodes of an optimised Graph into kernels.

The result, a `Schedule`, is what every compiled backend (C, CUDA) emits code for:

- **elementwise** kernels: maximal vertical fusion of elementwise nodes (Elemwise, Cast and the
  broadcasts, which become index arithmetic) that share an iteration shape. A member whose value
  is needed outside the group becomes one of the kernel's outputs; the rest stay in registers.
- **reduce** kernels: a sum/max/min, with the elementwise group that produces its input fused in
  front when nothing else needs that group's values.
- **matmul** kernels: a gemm call. Transposes of the operands become BLAS transpose flags, and a
  following bias add becomes the gemm's initial C (beta = 1): the bias epilogue.
- **op** kernels: one per remaining node (softmax, take, random, ...).
- **views** (reshape, expand_dims, squeeze, stop_gradient) are no kernels at all: their output
  aliases their input's buffer.

A node joins a producer's group only if none of its other inputs depends on that group through a
node outside it, so the kernel graph stays acyclic; kernels are then ordered topologically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core import Graph, Node, Var
from ..ops import Elemwise, Matmul, Reduce, Transpose

#: most nodes one fused kernel holds. gcc's time on one function grows faster than linearly
#: with its length (a 500-op chain as one kernel: 12 s), so long chains are cut into kernels
#: of at most this many nodes; the extra loads and stores between them cost little.
#: ``$GRAPHC_MAX_FUSED`` overrides it (read when a schedule is made).
MAX_FUSED = 64


def data_inputs(node: Node) -> list[Var]:
    """The inputs whose *values* a node reads (shape-only inputs, like the second input of
    broadcast_like, are left out: their sizes come from the bound call-time shapes)."""
    n = node.op.value_inputs
    return list(node.inputs if n is None else node.inputs[:n])


@dataclass(eq=False)
class Kernel:
    """One unit of generated code.

    kind: "elementwise" | "reduce" | "matmul" | "op". `nodes` are the graph nodes it computes,
    in order; `outputs` the Vars it writes to buffers; `inputs` the Vars it reads from buffers.
    For matmul kernels `info` holds the transpose flags and the bias Var.
    """

    kind: str
    nodes: list[Node]
    outputs: list[Var] = field(default_factory=list)
    inputs: list[Var] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind}[{', '.join(n.op.name for n in self.nodes)}]"


@dataclass(eq=False)
class Schedule:
    graph: Graph
    kernels: list[Kernel]
    #: id(view output) -> the Var whose buffer it aliases
    views: dict[int, Var]

    def __str__(self) -> str:
        lines = [f"schedule: {len(self.kernels)} kernels"]
        for i, k in enumerate(self.kernels):
            lines.append(f"  k{i}: {k.label}")
        return "\n".join(lines)


class _Group:
    __slots__ = ("gid", "kind", "shape", "nodes")

    def __init__(self, gid, kind, shape, node):
        self.gid, self.kind, self.shape, self.nodes = gid, kind, shape, [node]


def schedule(graph: Graph, late: set[int] = frozenset()) -> Schedule:
    """Group `graph`'s nodes into kernels and order them.

    >>> import graphc as gc
    >>> x = gc.placeholder("x", (None, 8))
    >>> s = schedule(Graph([x], [gc.tanh(x * 2.0 + 1.0).sum(axis=1)]))
    >>> [k.label for k in s.kernels]
    ['reduce[multiply, add, tanh, sum]']
    """
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
        limit), and a group whose last member comes before every target's first member cannot
        depend on a target, so the search stays local: fusion is linear in the graph, not
        quadratic."""
        floor = min(first[t] for t in targets)
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

    kernels = _make_kernels(groups, group_of, users, views, graph)
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


def _make_kernels(groups, group_of, users, views, graph) -> list[Kernel]:
    absorbed: set[int] = set()  # group ids merged into a reduce or matmul kernel
    by_gid = {g.gid: g for g in groups}
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
        if g.kind == "elementwise" or g.kind == "reduce":
            kernels[g.gid] = _fused_kernel("elementwise" if g.kind == "elementwise" else "reduce", g.nodes, users)
        elif isinstance(node.op, Reduce):
            kernels[g.gid] = _fused_kernel("reduce", g.nodes, users)
        elif isinstance(node.op, Matmul):
            kernels[g.gid] = Kernel("matmul", [node], list(node.outputs), list(node.inputs))
        else:
            kernels[g.gid] = Kernel("op", [node], list(node.outputs), data_inputs(node))

    _fold_matmul_transposes(kernels, group_of, users, views)
    _fold_bias_epilogues(kernels, group_of, users, by_gid)
    _fold_accumulate_epilogues(kernels, group_of, users)
    return [k for k in kernels.values() if k.nodes]


def _fused_kernel(kind, nodes, users) -> Kernel:
    members = {id(n) for n in nodes}
    produced = {id(o) for n in nodes for o in n.outputs}
    inputs: dict[int, Var] = {}
    outputs: list[Var] = []
    for n in nodes:
        for v in data_inputs(n):
            if id(v) not in produced:
                inputs.setdefault(id(v), v)
    last = nodes[-1]
    for n in nodes:
        for o in n.outputs:
            ext = [u for u in users.get(id(o), []) if u == "out" or id(u) not in members]
            if ext or (kind == "reduce" and n is last):
                outputs.append(o)
    return Kernel(kind, list(nodes), outputs, list(inputs.values()))


def _is_swap_last(node: Node | None) -> bool:
    if node is None or not isinstance(node.op, Transpose):
        return False
    p = node.op.perm
    n = len(p)
    return n >= 2 and p[:-2] == tuple(range(n - 2)) and p[-2:] == (n - 1, n - 2)


def _fold_matmul_transposes(kernels, group_of, users, views):
    """matmul(transpose(a), b) reads `a` with a BLAS transpose flag instead of a copied transpose."""
    for k in kernels.values():
        if k.kind != "matmul":
            continue
        node = k.nodes[0]
        trans = []
        operands = []
        for v in node.inputs:
            src = v.owner if v.owner is not None and _is_swap_last(v.owner) else None
            if src is not None:
                operands.append(src.inputs[0])
                trans.append(True)
                users[id(v)] = [u for u in users.get(id(v), []) if u is not node]
                users.setdefault(id(src.inputs[0]), []).append(node)
            else:
                operands.append(v)
                trans.append(False)
        k.inputs = operands
        k.info.update(trans_a=trans[0], trans_b=trans[1], a=operands[0], b=operands[1], bias=None)
    # transposes nobody reads any more disappear
    for k in kernels.values():
        if k.kind == "op" and isinstance(k.nodes[0].op, Transpose) and not users.get(id(k.outputs[0])):
            k.nodes = []


def _fold_bias_epilogues(kernels, group_of, users, by_gid):
    """matmul(a, b) + bias (a row vector) -> one kernel: C = bias rows, then gemm with beta = 1."""
    for k in kernels.values():
        if k.kind != "matmul" or k.info.get("bias") is not None:
            continue
        mm = k.outputs[0]
        if mm.ndim != 2:
            continue
        us = users.get(id(mm), [])
        if len(us) != 1 or us[0] == "out":
            continue
        add = us[0]
        if not (isinstance(add.op, Elemwise) and add.op.scalar == "add") or add.outputs[0].shape != mm.shape:
            continue
        bias = add.inputs[1] if add.inputs[0] is mm else add.inputs[0]
        if bias is mm or bias.dtype != mm.dtype or bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
            continue
        if bias.ndim and bias.shape[-1] != mm.shape[-1]:
            continue
        ek = kernels.get(by_gid_of(add, group_of))
        if ek is None or ek.kind not in ("elementwise", "reduce") or add not in ek.nodes:
            continue
        if ek.nodes[0] is not add:
            continue
        # the add leaves the elementwise kernel; its output is now written by the matmul kernel
        ek.nodes.remove(add)
        ek.inputs = [v for v in ek.inputs if v is not mm and v is not bias] + [add.outputs[0]]
        _recompute_io(ek, users)
        k.nodes.append(add)
        k.outputs = [add.outputs[0]]
        k.inputs = k.inputs + [bias]
        k.info["bias"] = bias


def _fold_accumulate_epilogues(kernels, group_of, users):
    """W - c * (a @ b) and W + c * (a @ b) (an SGD-style update of a weight by a gradient
    product) -> one gemm with C = W, alpha = -c or c and beta = 1: no gradient buffer and no
    separate pass over W."""
    for k in kernels.values():
        if k.kind != "matmul" or k.info.get("bias") is not None or k.outputs[0].ndim != 2 or k.info.get("acc"):
            continue
        mm = k.outputs[0]
        us = users.get(id(mm), [])
        if len(us) != 1 or us[0] == "out":
            continue
        scale, node = 1.0, us[0]
        if isinstance(node.op, Elemwise) and node.op.scalar == "multiply":
            c = node.inputs[0] if node.inputs[1] is mm else node.inputs[1]
            nus = users.get(id(node.outputs[0]), [])
            if c.ndim != 0 or c.dtype != mm.dtype or len(nus) != 1 or nus[0] == "out" \
                    or node.outputs[0].type != mm.type:
                continue
            # a constant scale is a literal; any other scalar (a shared learning rate) is read
            # at call time
            value = _scalar_constant(c)
            scale, scaled, node = (value if value is not None else c), node, nus[0]
        else:
            scaled = None
        if not (isinstance(node.op, Elemwise) and node.op.scalar in ("add", "subtract")):
            continue
        term = scaled.outputs[0] if scaled is not None else mm
        w = node.inputs[0] if node.inputs[1] is term else node.inputs[1]
        if w is term or w.type != mm.type or node.outputs[0].type != mm.type:
            continue
        negate = False
        if node.op.scalar == "subtract":
            if node.inputs[1] is not term:
                continue  # c*(a@b) - W is not an accumulation into W
            negate = True
        ek_id = by_gid_of(node, group_of)
        ek = kernels.get(ek_id)
        absorbed = [n for n in (scaled, node) if n is not None]
        if ek is None or ek.kind != "elementwise" or any(n not in ek.nodes for n in absorbed):
            continue
        rest = [n for n in ek.nodes if n not in absorbed]
        if any(v in (term, node.outputs[0]) for n in rest for v in n.inputs):
            continue
        ek.nodes = rest
        _recompute_io(ek, users)
        if not ek.nodes:
            ek.outputs, ek.inputs = [], []
        k.nodes.extend(absorbed)
        k.outputs = [node.outputs[0]]
        k.inputs = k.inputs + [w] + ([scale] if isinstance(scale, Var) else [])
        k.info.update(acc=w, alpha=scale, negate=negate)


def _scalar_constant(v: Var) -> float | None:
    from ..core import Constant

    if isinstance(v, Constant) and v.ndim == 0 and v.dtype.startswith("float"):
        return float(v.value)
    return None


def by_gid_of(node, group_of):
    g = group_of.get(id(node))
    return g.gid if g is not None else None


def _recompute_io(k: Kernel, users) -> None:
    if not k.nodes:
        return
    fresh = _fused_kernel(k.kind, k.nodes, users)
    k.inputs, k.outputs = fresh.inputs, fresh.outputs


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
        raise AssertionError("fusion produced a cyclic kernel graph")
    return order
