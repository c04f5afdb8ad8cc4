"""Stabilisation: rewrite naive formulas into forms that neither overflow nor lose precision.

log(softmax(z)) -> log_softmax(z);  log(sigmoid(x)) -> -softplus(-x);
log(1 - sigmoid(x)) -> -softplus(x);  log(1 + x), log(x + 1) -> log1p(x);  log(exp(x)) -> x;
sum(one_hot(t) * log_softmax(z), axis=-1) -> -softmax_cross_entropy(z, t) (one fused stable op).

`grad` applies these before differentiating, so gradients of naive losses are stable too.
"""

from __future__ import annotations

from ..core import Graph, Var
from ..ops import LogSoftmax, log1p, negative, softmax_cross_entropy, softplus
from .rewrite import RuleSet, producer, rewrite_vars, same_type, scalar_value

rules = RuleSet("stabilize")


@rules.on("log")
def log_of_softmax(node):
    inner = producer(node.inputs[0], "softmax")
    return LogSoftmax(inner.op.axis)(inner.inputs[0]) if inner is not None else None


@rules.on("log")
def log_of_sigmoid(node):
    inner = producer(node.inputs[0], "sigmoid")
    return negative(softplus(negative(inner.inputs[0]))) if inner is not None else None


@rules.on("log")
def log_of_one_minus_sigmoid(node):
    sub = producer(node.inputs[0], "subtract")
    if sub is None or scalar_value(sub.inputs[0]) != 1:
        return None
    sig = producer(sub.inputs[1], "sigmoid")
    if sig is None or not same_type(sig.outputs[0], node.outputs[0]):
        return None
    return negative(softplus(sig.inputs[0]))


@rules.on("log")
def log_of_one_plus(node):
    add = producer(node.inputs[0], "add")
    if add is None:
        return None
    for i in (0, 1):
        x = add.inputs[1 - i]
        if scalar_value(add.inputs[i]) == 1 and same_type(x, node.outputs[0]):
            return log1p(x)
    return None


@rules.on("log")
def log_of_exp(node):
    inner = producer(node.inputs[0], "exp")
    return inner.inputs[0] if inner is not None else None


@rules.on("sum")
def cross_entropy(node):
    """sum(one_hot(t, C) * log_softmax(z), axis=last) -> -softmax_cross_entropy(z, t)."""
    x = node.inputs[0]
    if node.op.keepdims or node.op.axes != (x.ndim - 1,):
        return None
    mul = producer(x, "multiply")
    if mul is None:
        return None
    for i in (0, 1):
        hot = mul.inputs[i]
        cast = producer(hot, "cast")
        if cast is not None and producer(cast.inputs[0], "one_hot") is not None:
            hot = cast.inputs[0]  # 0 and 1 are exact in every dtype
        oh, ls = producer(hot, "one_hot"), producer(mul.inputs[1 - i], "log_softmax")
        if oh is None or ls is None or ls.op.axis != x.ndim - 1:
            continue
        z, t = ls.inputs[0], oh.inputs[0]
        if oh.op.depth != z.shape[-1] or oh.outputs[0].shape != z.shape:
            continue
        out = negative(softmax_cross_entropy(z, t))
        return out if same_type(out, node.outputs[0]) else None
    return None


def stabilize_vars(outputs: list[Var]) -> list[Var]:
    """Rewrite the graph under `outputs` into its stable form."""
    return rewrite_vars(outputs, rules)


def run(graph: Graph) -> Graph:
    """Apply the stabilisation rules to every node."""
    return Graph(graph.inputs, stabilize_vars(list(graph.outputs)))
