"""Kernel templates written once for C and CUDA (the hooks they call: see the package doc).

Local names must not be those the loop hooks bind (t, r, q, i, j, i0, i1, ...).
Each template takes ``(em, name, node, index, label)``: the emitter, the kernel's function
name, the graph node, its kernel index (error codes, launch order) and its label. Sizes are C
expressions from ``em.dim``/``em.size`` (call-time dimensions come from D), so one compiled
kernel serves every batch size.
"""

from __future__ import annotations

from ...ops.random import Random
from ...ops.shape import Concatenate, Dim, OneHot, Split, Subtensor, SubtensorGrad, Take, Transpose
from ..cexpr import C_TYPES
from .index import local, numel, prod, split3, split3_fn, subtensor_mapping, transpose_mapping
from .lines import LINE_TEMPLATES
from .pool import POOL_TEMPLATES


def dim(em, name, node, index, label):
    x, out = node.inputs[0], node.outputs[0]
    body = em.once(f"{em.ptr(out, const=False)}[0] = (int64_t)({em.dim(x, node.op.axis)});")
    return em.kernel(name, body, label, lambda shapes: 1, index)


def one_hot(em, name, node, index, label):
    t, out = node.inputs[0], node.outputs[0]
    depth = node.op.depth
    body = (local(em, t, "labels") + local(em, out, "y", const=False)
            + f"  const int64_t rows = {em.size(t)}, depth = {depth};\n"
            + em.rows_loop("rows", "depth", f"y[r*depth + q] = ({C_TYPES[out.dtype]})((int64_t)labels[r] == q);"))
    return em.kernel(name, body, label, numel(out), index)


def random(em, name, node, index, label):
    op, counter, out = node.op, node.inputs[0], node.outputs[0]
    if op.dist == "uniform":
        value = "gc_u24(w[0])" if out.dtype == "float32" else "gc_u53(w[0], w[1])"
    elif op.dist == "normal":
        value = "gc_normal(w)"
    else:
        value = f"(gc_u24(w[0]) < {float(op.p)!r})"
    stmt = (f"uint32_t w[4]; gc_philox_words((uint64_t)i, call, (uint64_t){op.seed}ULL, w); "
            f"y[i] = ({C_TYPES[out.dtype]})({value});")
    body = (local(em, out, "y", const=False) + f"  const uint64_t call = (uint64_t){em.ptr(counter)}[0];\n"
            + f"  const int64_t n = {em.size(out)};\n" + em.flat_loop("n", stmt, cost=16))
    return em.kernel(name, body, label, numel(out), index)


def take(em, name, node, index, label):
    x, idx = node.inputs
    out = node.outputs[0]
    axis = node.op.axis
    outer, n, inner = split3(em, x, axis)
    sizes = split3_fn(x, axis)
    body = (em.index_check(idx, n, lambda s: sizes(s)[1], index, "take", axis)
            + local(em, x, "x") + local(em, idx, "ix") + local(em, out, "y", const=False)
            + f"  const int64_t outer = {outer}, n = {n}, inner = {inner}, ni = {em.size(idx)};\n"
            + em.rows_loop("outer*ni", "inner", "y[r*inner + q] = x[(p*n + s)*inner + q];",
                           pre="const int64_t p = r / ni; int64_t s = (int64_t)ix[r % ni]; "
                               "if (s < -n || s >= n) continue; s = s < 0 ? s + n : s;"))

    def work(shapes):
        return max(numel(out)(shapes), numel(idx)(shapes))

    return em.kernel(name, body, label, work, index)


def _pieces(em, whole, parts, axis: int, gather: bool) -> str:
    """Concatenate `parts` into `whole` along `axis` (gather) or split `whole` into them."""
    outer, total, inner = split3(em, whole, axis)
    body = (local(em, whole, "w", const=not gather)
            + f"  const int64_t outer = {outer}, N = {total}, inner = {inner};\n  int64_t off = 0;\n")
    whole_at, part_at = "w[(r*N + off)*inner + q]", "x[r*n*inner + q]"
    copy = f"{whole_at} = {part_at};" if gather else f"{part_at} = {whole_at};"
    for p in parts:
        body += ("  {\n" + local(em, p, "x", const=gather) + f"  const int64_t n = {em.dim(p, axis)};\n"
                 + em.rows_loop("outer", "n*inner", copy) + "  off += n;\n  }\n")
    return body


def concatenate(em, name, node, index, label):
    out = node.outputs[0]
    return em.kernel(name, _pieces(em, out, node.inputs, node.op.axis, gather=True), label, numel(out), index)


def split(em, name, node, index, label):
    g = node.inputs[0]
    return em.kernel(name, _pieces(em, g, node.outputs, node.op.axis, gather=False), label, numel(g), index)


def _strided(em, name, index, label, dense: object, src, dst, mapping, scatter: bool, zero: bool):
    """Copy between the dense array `dense` (src or dst) and a strided view of the other one;
    mapping(shapes) -> (base, [(size, stride)]) is computed on the host per signature and
    reaches the kernel through D."""
    nd = dense.ndim
    base = em.param(("view_base", name), lambda s: mapping(s)[0])
    sizes = [em.param(("view_size", name, j), lambda s, j=j: mapping(s)[1][j][0]) for j in range(nd)]
    strides = [em.param(("view_stride", name, j), lambda s, j=j: mapping(s)[1][j][1]) for j in range(nd)]
    view = " + ".join([base] + [f"i{j}*{strides[j]}" for j in range(nd)])
    flat = " + ".join(f"i{j}*{prod(sizes[j + 1:])}" for j in range(nd)) or "0"
    stmt = f"y[{view}] = x[{flat}];" if scatter else f"y[{flat}] = x[{view}];"
    body = (em.zero(dst, index) if zero else "") + local(em, src, "x") + local(em, dst, "y", const=False)
    return em.kernel(name, body + em.nd_loop(sizes, stmt), label, numel(dense), index)


def getitem(em, name, node, index, label):
    x, out = node.inputs[0], node.outputs[0]
    return _strided(em, name, index, label, out, x, out, subtensor_mapping(node.op.idx, x), scatter=False, zero=False)


def subtensor_grad(em, name, node, index, label):
    g, like = node.inputs
    out = node.outputs[0]
    return _strided(em, name, index, label, g, g, out, subtensor_mapping(node.op.idx, like), scatter=True, zero=True)


def transpose(em, name, node, index, label):
    x, out = node.inputs[0], node.outputs[0]
    return _strided(em, name, index, label, out, x, out, transpose_mapping(x, node.op.perm), scatter=False, zero=False)


#: the templates, by op class
TEMPLATES = {**POOL_TEMPLATES, **LINE_TEMPLATES,
             Dim: dim, OneHot: one_hot, Random: random, Take: take, Concatenate: concatenate,
             Split: split, Subtensor: getitem, SubtensorGrad: subtensor_grad, Transpose: transpose}
