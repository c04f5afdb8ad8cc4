"""Common-subexpression elimination.

Nodes are hash-consed when built, so equal subexpressions are already one node. What is left to
merge are large constants (compared by identity when built) that hold equal values, and nodes
that become equal once those constants are merged; rebuilding through `apply` merges them.
"""

from __future__ import annotations

import hashlib

from ..core import Constant, Graph, Var, apply, toposort


def run(graph: Graph) -> Graph:
    """Merge equal constants and, through hash-consing, the nodes that then coincide."""
    by_value: dict[tuple, Var] = {}
    memo: dict[int, Var] = {}

    def canon(v: Var) -> Var:
        if id(v) in memo:
            return memo[id(v)]
        if isinstance(v, Constant) and v.name is None:
            key = (v.dtype, v.shape, hashlib.sha1(v.value.tobytes()).hexdigest())
            return by_value.setdefault(key, v)
        return v

    for node in toposort(graph.outputs):
        inputs = [canon(v) for v in node.inputs]
        new = node if all(a is b for a, b in zip(inputs, node.inputs)) else apply(node.op, inputs)
        for old, o in zip(node.outputs, new.outputs):
            memo[id(old)] = o
    return Graph(graph.inputs, [canon(v) for v in graph.outputs])
