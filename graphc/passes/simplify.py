"""Algebraic simplification: identities that remove work without changing any value.

x*1, 1*x, x/1, x+0, 0+x, x-0 -> x;  0-x -> -x;  --x -> x;  x**1 -> x, x**2 -> square(x),
x**0.5 -> sqrt(x);  transpose(transpose(x)) -> one transpose (or x);  reshape(reshape(x)) ->
one reshape (or x);  squeeze/expand_dims pairs;  lossless cast round trips;  stop_gradient -> x
(gradients are already built when a function is compiled);  multiplication by a broadcast ones
tensor -> x;  squeeze(sum(x, keepdims=True)) -> sum(x);  size queries moved to the inputs.
A rule only fires when the result has exactly the type of the node it replaces.
"""

from __future__ import annotations

from ..core import Var
from ..ops import Reduce, Reshape, Transpose, dim, negative, sqrt, square
from .rewrite import RuleSet, graph_pass, producer, same_type, scalar_value

rules = RuleSet("simplify")


def _identity_operand(node, identity: float, positions=(0, 1)) -> Var | None:
    out = node.outputs[0]
    for i in positions:
        other = node.inputs[1 - i]
        if scalar_value(node.inputs[i]) == identity and same_type(other, out):
            return other
    return None


@rules.on("multiply")
def mul_by_one(node):
    return _identity_operand(node, 1)


@rules.on("divide")
def div_by_one(node):
    return _identity_operand(node, 1, positions=(1,))


@rules.on("add")
def add_zero(node):
    return _identity_operand(node, 0)


@rules.on("subtract")
def sub_zero(node):
    x, y = node.inputs
    if scalar_value(x) == 0 and same_type(y, node.outputs[0]):
        return negative(y)
    return _identity_operand(node, 0, positions=(1,))


@rules.on("negative")
def double_negation(node):
    inner = producer(node.inputs[0], "negative")
    return inner.inputs[0] if inner is not None else None


@rules.on("power")
def small_powers(node):
    x, p = node.inputs
    e = scalar_value(p)
    if e is None or not same_type(x, node.outputs[0]):
        return None
    if e == 1:
        return x
    if e == 2:
        return square(x)
    if e == 0.5 and x.dtype.startswith("float"):
        return sqrt(x)
    return None


@rules.on("transpose")
def transpose_of_transpose(node):
    inner = producer(node.inputs[0], "transpose")
    if inner is None:
        return None
    perm = tuple(inner.op.perm[p] for p in node.op.perm)
    x = inner.inputs[0]
    return x if perm == tuple(range(len(perm))) else Transpose(perm)(x)


@rules.on("reshape")
def reshape_of_reshape(node):
    x = node.inputs[0]
    out = node.outputs[0]
    inner = producer(x, "reshape", "reshape_like")
    if inner is not None:
        x = inner.inputs[0]
        if same_type(x, out) and None not in x.shape:
            return x
        # reshape to what the pair produced: its static shape, keeping what inference knew
        target = tuple(-1 if d is None else d for d in out.shape) if out.shape.count(None) <= 1 else node.op.shape
        new = Reshape(target)(x)
        return new if new.shape == out.shape else None
    if same_type(x, out) and None not in x.shape:
        return x
    return None


@rules.on("squeeze")
def squeeze_of_expand(node):
    inner = producer(node.inputs[0], "expand_dims")
    if inner is not None and inner.op.axes == node.op.axes:
        return inner.inputs[0]
    return None


@rules.on("expand_dims")
def expand_of_squeeze(node):
    inner = producer(node.inputs[0], "squeeze")
    if inner is not None and inner.op.axes == node.op.axes and same_type(inner.inputs[0], node.outputs[0]):
        return inner.inputs[0]
    return None


_WIDENING = {("float32", "float64"), ("int32", "int64"), ("int32", "float64"), ("bool", "int32"),
             ("bool", "int64"), ("bool", "float32"), ("bool", "float64")}


@rules.on("cast")
def cast_round_trip(node):
    inner = producer(node.inputs[0], "cast")
    if inner is not None:
        x = inner.inputs[0]
        if x.dtype == node.op.dtype and (x.dtype, inner.op.dtype) in _WIDENING:
            return x
    return None


@rules.on("stop_gradient")
def drop_stop_gradient(node):
    return node.inputs[0]


@rules.on("broadcast_to", "broadcast_like", "reshape_like")
def no_op_shape(node):
    x = node.inputs[0]
    if same_type(x, node.outputs[0]) and None not in x.shape:
        return x
    return None


@rules.on("broadcast_like")
def like_cross_entropy_labels(node):
    """broadcast_like(x, softmax_cross_entropy(z, t)) -> broadcast_like(x, t): the losses have the
    labels' shape. The mean loss's gradient is shaped like this, and reading the labels' shape
    instead of the losses' frees the gradient from the loss node (the "pair" pass can then
    compute both in one kernel)."""
    x, like = node.inputs
    sce = producer(like, "softmax_cross_entropy")
    if sce is not None and sce.inputs[1].shape == like.shape:
        return node.op(x, sce.inputs[1])
    return None


@rules.on("squeeze")
def squeeze_of_keepdims_reduction(node):
    red = producer(node.inputs[0], "sum", "max", "min")
    if red is not None and red.op.keepdims and red.op.axes == node.op.axes:
        return Reduce(red.op.kind, red.op.axes, False)(red.inputs[0])
    return None


@rules.on("dim")
def lift_dim(node):
    """dim(f(x), k) -> dim(x, k') when f maps axis k' of an input to axis k of its output, so that
    all size queries end at the inputs and CSE merges them."""
    axis = node.op.axis
    owner = node.inputs[0].owner
    if owner is None:
        return None
    op, ins, out = owner.op, owner.inputs, owner.outputs[0]
    source = None
    if op.keeps_shape:  # elementwise ops, cast, softmax, ...: output axis k is axis k of the inputs
        source = next(((u, axis) for u in ins if u.ndim == out.ndim and u.shape[axis] != 1), None)
    elif op.name == "transpose":
        source = (ins[0], op.perm[axis])
    elif isinstance(op, Reduce) and not op.keepdims:
        kept = [a for a in range(ins[0].ndim) if a not in op.axes]
        source = (ins[0], kept[axis])
    elif op.name == "matmul" and axis >= out.ndim - 2:
        a, b = ins
        source = (a, a.ndim - 2) if axis == out.ndim - 2 else (b, b.ndim - 1)
    elif op.name == "softmax_cross_entropy" or (op.name == "one_hot" and axis < out.ndim - 1):
        source = (ins[0], axis)
    return None if source is None else dim(*source)


run = graph_pass(rules)
