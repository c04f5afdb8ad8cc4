"""Scan rewrites on the outer graph: prune the outputs nobody reads, and keep only the final
value of outputs that are read only at their last step (no T-long buffer).

- An output that is neither read nor fed back as a state leaves the step graph.
- An output (state or not) read only as ``ys[-1, ...]`` is produced as its final value: the loop
  keeps it in two step-sized buffers, and the readers index that value instead.

Loop-invariant work needs no rewrite: `gc.scan` closes the step graph over every outer Var it
uses, so anything that does not depend on the step's inputs (``W.T``, a scaled weight) is an
input of the scan node, computed once before the loop.
"""

from __future__ import annotations

from ..core import Graph, Node, Var, clone_replace
from ..ops import Scan, ScanBody, Subtensor


def _last_step_reader(node) -> bool:
    return isinstance(node.op, Subtensor) and node.op.idx and node.op.idx[0] == -1


def run(graph: Graph) -> Graph:
    """Rewrite every scan of `graph` (see the module docstring); unchanged graphs come back as is.

    >>> import numpy as np, graphc as gc
    >>> x = gc.placeholder("x", (None, 2))
    >>> last = gc.scan(lambda xt, h: h + xt, sequences=x, outputs_info=gc.constant(np.zeros(2, "f4")))[-1]
    >>> [n.op.keep for n in run(Graph([x], [last])).nodes if n.op.name == "scan"]
    [('last',)]
    """
    readers: dict[int, list] = {}
    for node in graph.nodes:
        for v in node.inputs:
            readers.setdefault(id(v), []).append(node)
    outputs = {id(v) for v in graph.outputs}
    replace: dict[Var, Var] = {}
    for node in graph.nodes:
        if isinstance(node.op, Scan):
            replace.update(_rewrite(node, readers, outputs))
    if not replace:
        return graph
    return Graph(graph.inputs, clone_replace(list(graph.outputs), replace))


def _rewrite(node: Node, readers: dict, outputs: set) -> dict[Var, Var]:
    op: Scan = node.op
    keep, drop = list(op.keep), []
    for k, y in enumerate(node.outputs):
        users = readers.get(id(y), [])
        if id(y) in outputs:
            continue
        if not users and op.state_of[k] < 0:
            drop.append(k)
        elif users and keep[k] == "all" and all(_last_step_reader(u) for u in users):
            keep[k] = "last"
    if not drop and tuple(keep) == op.keep:
        return {}
    kept = [k for k in range(op.nout) if k not in drop]
    body = ScanBody(op.body.inputs, [op.body.outputs[k] for k in kept])
    new_op = Scan(body, op.n_seqs, op.n_states, op.n_nonseqs, tuple(op.state_of[k] for k in kept),
                  tuple(keep[k] for k in kept), op.n_steps, op.go_backwards, op.counters)
    new = new_op(*node.inputs)
    new = [new] if new_op.nout == 1 else list(new)
    replace: dict[Var, Var] = {}
    for new_k, k in enumerate(kept):
        old = node.outputs[k]
        if keep[k] == op.keep[k]:  # unchanged (stacked, or already kept at its final value)
            replace[old] = new[new_k]
            continue
        for u in readers.get(id(old), []):
            rest = u.op.idx[1:]
            value = new[new_k]
            if any(e != ("slice", None, None, None) for e in rest):
                value = Subtensor(rest)(value)
            replace[u.outputs[0]] = value
    return replace
