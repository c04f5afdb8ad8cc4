"""Folding work into gemm records: transposes become flags, and, where the Target allows it, a
following bias add or an SGD-style accumulation becomes the gemm's initial C (beta = 1).

Each fold moves nodes out of an elementwise record into the gemm record, so the element loop
that would have re-read C disappears.
"""

from __future__ import annotations

from ..core import Constant, Node, Var
from ..ops import Elemwise, Transpose
from .plan import ElementwiseKernel, GemmKernel, Kernel, OpKernel, ReduceKernel, refresh_io
from .target import Target


def fold_gemm_epilogues(kernels: dict[int, Kernel], group_of: dict, users: dict, target: Target) -> None:
    """Fold transposes (always) and the epilogues `target` takes into the gemm records."""
    _fold_transposes(kernels, users)
    if target.folds("bias"):
        _fold_bias(kernels, group_of, users)
    if target.folds("accumulate"):
        _fold_accumulate(kernels, group_of, users, target)


def _is_swap_last(node: Node | None) -> bool:
    if node is None or not isinstance(node.op, Transpose):
        return False
    p = node.op.perm
    n = len(p)
    return n >= 2 and p[:-2] == tuple(range(n - 2)) and p[-2:] == (n - 1, n - 2)


def _gemms(kernels: dict[int, Kernel]):
    return [k for k in kernels.values() if isinstance(k, GemmKernel)]


def _fold_transposes(kernels, users) -> None:
    """matmul(transpose(a), b) reads `a` with a transpose flag instead of a copied transpose."""
    for k in _gemms(kernels):
        node = k.nodes[0]
        trans, operands = [], []
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
        k.a, k.b = operands
        k.trans_a, k.trans_b = trans
    # transposes nobody reads any more disappear
    for k in kernels.values():
        if isinstance(k, OpKernel) and isinstance(k.nodes[0].op, Transpose) and not users.get(id(k.outputs[0])):
            k.nodes = []


def _sole_user(v: Var, users) -> Node | None:
    us = users.get(id(v), [])
    return us[0] if len(us) == 1 and us[0] != "out" else None


def _is_scalar_op(node: Node | None, *names: str) -> bool:
    return node is not None and isinstance(node.op, Elemwise) and node.op.scalar in names


def _fold_bias(kernels, group_of, users) -> None:
    """matmul(a, b) + bias (a row vector) -> one record: C = bias rows, then gemm with beta = 1."""
    for k in _gemms(kernels):
        mm = k.outputs[0]
        add = _sole_user(mm, users)
        if mm.ndim != 2 or not _is_scalar_op(add, "add") or add.outputs[0].shape != mm.shape:
            continue
        bias = add.inputs[1] if add.inputs[0] is mm else add.inputs[0]
        if bias is mm or bias.dtype != mm.dtype or bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
            continue
        if bias.ndim and bias.shape[-1] != mm.shape[-1]:
            continue
        ek = _record_of(add, kernels, group_of)
        if not isinstance(ek, (ElementwiseKernel, ReduceKernel)) or not ek.nodes or ek.nodes[0] is not add:
            continue
        # the add leaves the elementwise record; its output is now written by the gemm
        ek.nodes.remove(add)
        ek.inputs = [v for v in ek.inputs if v is not mm and v is not bias] + [add.outputs[0]]
        refresh_io(ek, users)
        k.nodes.append(add)
        k.outputs = [add.outputs[0]]
        k.inputs = k.inputs + [bias]
        k.bias = bias


def _fold_accumulate(kernels, group_of, users, target: Target) -> None:
    """W - c * (a @ b) and W + c * (a @ b) (an SGD-style update of a weight by a gradient
    product) -> one gemm with C = W, alpha = -c or c and beta = 1: no gradient buffer and no
    separate pass over W."""
    for k in _gemms(kernels):
        mm = k.outputs[0]
        if k.bias is not None or k.acc is not None or mm.ndim != 2:
            continue
        scale, scaled, node = 1.0, None, _sole_user(mm, users)
        if _is_scalar_op(node, "multiply"):
            c = node.inputs[0] if node.inputs[1] is mm else node.inputs[1]
            nxt = _sole_user(node.outputs[0], users)
            if c.ndim != 0 or c.dtype != mm.dtype or nxt is None or node.outputs[0].type != mm.type:
                continue
            # a constant scale is a literal; any other scalar (a shared learning rate) is read
            # at call time, where the target can take one
            value = _scalar_constant(c)
            if value is None and not target.runtime_alpha:
                continue
            scale, scaled, node = (value if value is not None else c), node, nxt
        if not _is_scalar_op(node, "add", "subtract"):
            continue
        term = scaled.outputs[0] if scaled is not None else mm
        w = node.inputs[0] if node.inputs[1] is term else node.inputs[1]
        if w is term or w.type != mm.type or node.outputs[0].type != mm.type:
            continue
        if node.op.scalar == "subtract" and node.inputs[1] is not term:
            continue  # c*(a@b) - W is not an accumulation into W
        ek = _record_of(node, kernels, group_of)
        absorbed = [n for n in (scaled, node) if n is not None]
        if not isinstance(ek, ElementwiseKernel) or any(n not in ek.nodes for n in absorbed):
            continue
        rest = [n for n in ek.nodes if n not in absorbed]
        if any(v in (term, node.outputs[0]) for n in rest for v in n.inputs):
            continue
        ek.nodes = rest
        refresh_io(ek, users)
        if not ek.nodes:
            ek.outputs, ek.inputs = [], []
        k.nodes.extend(absorbed)
        k.outputs = [node.outputs[0]]
        k.inputs = k.inputs + [w] + ([scale] if isinstance(scale, Var) else [])
        k.acc, k.alpha, k.negate = w, scale, node.op.scalar == "subtract"


def _scalar_constant(v: Var) -> float | None:
    if isinstance(v, Constant) and v.ndim == 0 and v.dtype.startswith("float"):
        return float(v.value)
    return None


def _record_of(node: Node, kernels, group_of) -> Kernel | None:
    g = group_of.get(id(node))
    return kernels.get(g.gid) if g is not None else None
