"""Pooling and upsampling templates written once for C and CUDA: loops over rows of output
positions (planes x output rows) and the positions in a row. The max-pool forward and the
gradients stay per backend (C: windows vectorised along a row and scatters per plane; CUDA:
gathers and atomics)."""

from __future__ import annotations

from ...ops.conv import AvgPool2D, MaxPool2DGather, Upsample2D
from ..cexpr import C_TYPES
from .index import local, numel


def _planes(em, v) -> str:
    return f"({em.dim(v, 0)})*{v.shape[1]}LL"


def max_pool_gather(em, name, node, index, label):
    """y = x at each window's argmax (from the forward's int32 positions within a plane)."""
    x, idx = node.inputs
    y = node.outputs[0]
    hw, per = x.shape[2] * x.shape[3], idx.shape[2] * idx.shape[3]
    body = (local(em, x, "x") + local(em, idx, "ix") + local(em, y, "y", const=False)
            + em.rows_loop(_planes(em, idx), str(per), f"y[r*{per}LL + q] = x[r*{hw}LL + ix[r*{per}LL + q]];"))
    return em.kernel(name, body, label, numel(y), index)


def avg_pool(em, name, node, index, label):
    """Each output is its window's mean: over the whole window, or over its elements inside the
    input (``count_include_pad=False``)."""
    x, y, op = node.inputs[0], node.outputs[0], node.op
    ct = C_TYPES[x.dtype]
    h, w = x.shape[2:]
    ho, wo = y.shape[2:]
    (kh, kw), (sh, sw), (pt, _, pl, _) = op.size, op.stride, op.padding
    div = "(KH*KW)" if op.count_include_pad else "((hb - ha)*(wb - wa))"
    stmt = (f"const int64_t w0 = q*SW - PL, wa = w0 < 0 ? 0 : w0, wb = w0 + KW > W ? W : w0 + KW; {ct} s = 0; "
            "for (int64_t ih = ha; ih < hb; ih++) for (int64_t iw = wa; iw < wb; iw++) s += xp[ih*W + iw]; "
            f"y[r*WO + q] = s / ({ct}){div};")
    pre = (f"const {ct} *xp = x + (r / HO)*(H*W); const int64_t h0 = (r % HO)*SH - PT, "
           "ha = h0 < 0 ? 0 : h0, hb = h0 + KH > H ? H : h0 + KH;")
    body = (local(em, x, "x") + local(em, y, "y", const=False)
            + f"  enum {{ H = {h}, W = {w}, HO = {ho}, WO = {wo}, KH = {kh}, KW = {kw}, SH = {sh}, SW = {sw}, "
              f"PT = {pt}, PL = {pl} }};\n"
            + em.rows_loop(f"{_planes(em, x)}*HO", "WO", stmt, pre=pre))
    return em.kernel(name, body, label, numel(y), index)


def upsample(em, name, node, index, label):
    """Nearest-neighbour upsampling by integer factors."""
    x, y = node.inputs[0], node.outputs[0]
    h, w = x.shape[2:]
    sh, sw = node.op.scale
    body = (local(em, x, "x") + local(em, y, "y", const=False)
            + f"  enum {{ H = {h}, W = {w}, SH = {sh}, SW = {sw} }};\n"
            + em.rows_loop(f"{_planes(em, x)}*(H*SH)", "W*SW",
                           "y[r*(W*SW) + q] = x[((r / (H*SH))*H + (r % (H*SH)) / SH)*W + q / SW];"))
    return em.kernel(name, body, label, numel(y), index)


#: the pooling templates, by op class
POOL_TEMPLATES = {MaxPool2DGather: max_pool_gather, AvgPool2D: avg_pool, Upsample2D: upsample}
