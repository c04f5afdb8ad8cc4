"""Ops computed together: the softmax cross-entropy of a batch and its gradient with respect to
the same logits become one two-output op (`SoftmaxCrossEntropyWithGrad`), so that a training
step reads the logits and takes the exponentials once, not twice.

Not a local rule: it replaces two nodes at once. It pairs them only when the gradient's
cotangent does not depend on the loss (a loss weighted by its own value keeps both nodes).
"""

from __future__ import annotations

from ..core import Graph, Var, apply, clone_replace, toposort
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
        return Graph(graph.inputs, clone_replace(graph.outputs, {fwd.outputs[0]: loss, grad.outputs[0]: dz}))
    return graph


def _depends(v: Var, target: Var) -> bool:
    """Whether `v` is `target` or computed from it (through any input, shape-only ones too)."""
    return any(o is target for n in toposort([v]) for o in n.outputs)
