"""Constant folding: a node whose inputs are all constants becomes a constant.

Folding runs the op's NumPy reference once at compile time. Random draws are never folded, and
results larger than FOLD_LIMIT_BYTES are left to run time (a broadcast of a scalar to a big
shape is cheaper to compute than to embed).
"""

from __future__ import annotations

import numpy as np

from ..core import Constant, Graph, constant
from .rewrite import RuleSet, graph_pass

FOLD_LIMIT_BYTES = 1 << 16

rules = RuleSet("fold")


@rules.on("*")
def fold_constants(node):
    if not node.op.foldable or not all(isinstance(v, Constant) for v in node.inputs):
        return None
    out_type = node.outputs[0].type
    if None in out_type.shape or np.dtype(out_type.dtype).itemsize * int(np.prod(out_type.shape)) > FOLD_LIMIT_BYTES:
        return None
    with np.errstate(all="ignore"):
        values = node.op.perform(node, *(v.value for v in node.inputs))
    return constant(np.asarray(values[0], dtype=out_type.dtype))


run_rules = graph_pass(rules)


def run(graph: Graph) -> Graph:
    """Replace every all-constant subexpression by its value."""
    return run_rules(graph)
