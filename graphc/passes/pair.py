"""Ops computed together: the softmax cross-entropy of a batch and its gradient with respect to
the same logits become one two-output op (`SoftmaxCrossEntropyWithGrad`), so that a training
step reads the logits and takes the exponentials once, not twice.

Not a local rule: it replaces two nodes at once. It pairs them only when the gradient's
cotangent does not depend on the loss (a loss weighted by its own value keeps both nodes).
"""

from __future__ import annotations

from ..core import Graph, Var, apply, toposort
from ..ops import SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad, SoftmaxCrossEntropyWithGrad


def run(graph: Graph) -> Graph:
    """Fuse each softmax cross-entropy with its gradient on the same logits and labels.

    >>> import graphc as gc
    >>> z = gc.placeholder("z", (None, 5)); t = gc.placeholder("t", (None,), "int32")
    >>> g = gc.placeholder("g", (None,))
    >>> loss = gc.softmax_cross_entropy(z, t)
    >>> dz = gc.vjp(loss, z, g)
    >>> [n.op.name for n in run(Graph([z, t, g], [loss, dz])).nodes]
    ['softmax_cross_entropy_with_grad']
    """
    while True:  # one pair at a time: each fused node's inputs are the graph's own
        paired = _pair_one(graph)
        if paired is graph:
            return graph
        graph = paired


def _pair_one(graph: Graph) -> Graph:
    """`graph` with its first fusable loss/gradient pair fused, or `graph` itself if none is."""
    nodes = toposort(graph.outputs)
    forward = {(id(n.inputs[0]), id(n.inputs[1])): n for n in nodes if isinstance(n.op, SoftmaxCrossEntropy)}
    for grad in nodes:
        if not isinstance(grad.op, SoftmaxCrossEntropyGrad):
            continue
        fwd = forward.get((id(grad.inputs[1]), id(grad.inputs[2])))
        if fwd is None or _depends(grad.inputs[0], fwd.outputs[0]):
            continue
        loss, dz = apply(SoftmaxCrossEntropyWithGrad(), list(grad.inputs)).outputs
        memo = {id(fwd.outputs[0]): loss, id(grad.outputs[0]): dz}
        return Graph(graph.inputs, _substitute(graph.outputs, memo))
    return graph


def _depends(v: Var, target: Var) -> bool:
    """Whether `v` is `target` or computed from it (through any input, shape-only ones too)."""
    return any(o is target for n in toposort([v]) for o in n.outputs)


def _substitute(outputs, memo: dict[int, Var]) -> list[Var]:
    """`outputs` rebuilt with each Var whose id is in `memo` replaced by its value there."""
    for node in toposort(outputs):
        if all(id(o) in memo for o in node.outputs):
            continue
        inputs = [memo.get(id(v), v) for v in node.inputs]
        if any(a is not b for a, b in zip(inputs, node.inputs)):
            for old, new in zip(node.outputs, apply(node.op, inputs).outputs):
                memo[id(old)] = new
    return [memo.get(id(v), v) for v in outputs]
