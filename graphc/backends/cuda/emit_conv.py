"""CUDA for convolution and pooling (graphc/ops/conv.py): direct kernels, one thread per output
element (the weight gradient: a group of lanes per weight, reducing over batch and positions).

The gradients with respect to inputs are gathers (each input element sums the windows that cover
it), so they need no atomics and are deterministic; only max-pool's backward scatter (whose
argmax input may come from anywhere) adds with atomics. Channel and spatial sizes are static, so
they are literals; the batch may be bound at call time. (Direct loops, not im2col + cuBLAS: simple
and exact; the fast path for large convolutions is future work.)
"""

from __future__ import annotations

from ...ops.conv import (
    AvgPool2DGrad,
    Conv2D,
    Conv2DGradInput,
    Conv2DGradWeight,
    MaxPool2D,
    MaxPool2DGrad,
)
from ..cexpr import C_TYPES
from ..cfamily.index import numel, shape_of
from .emit import WARPS, blocks_for, lanes


def _flat(em, total: str, lines: list[str]) -> str:
    return f"  {em.grid_stride(total)} {{\n" + "\n".join("    " + ln for ln in lines) + "\n  }\n"


def _conv_forward(em, name, node, index, label):
    x, w = node.inputs
    y = node.outputs[0]
    op = node.op
    ct = C_TYPES[y.dtype]
    N = em.dim(x, 0)
    _, C, H, W = x.shape
    O, _, kh, kw = w.shape
    ho, wo = y.shape[2:]
    (sh, sw), (pt, _, pl, _), (dh, dw) = op.stride, op.padding, op.dilation
    X, Wt, Y = em.ptr(x), em.ptr(w), em.ptr(y, const=False)
    lines = [
        f"const long long j = t % {wo}, i = (t / {wo}) % {ho}, o = (t / ({wo * ho})) % {O}, n = t / ({wo * ho * O});",
        f"{ct} s = 0;",
        f"for (int c = 0; c < {C}; c++) for (int p = 0; p < {kh}; p++) {{",
        f"  const long long ih = i * {sh} + p * {dh} - {pt}; if (ih < 0 || ih >= {H}) continue;",
        f"  for (int q = 0; q < {kw}; q++) {{",
        f"    const long long iw = j * {sw} + q * {dw} - {pl}; if (iw < 0 || iw >= {W}) continue;",
        f"    s += {X}[((n * {C} + c) * {H} + ih) * {W} + iw] * {Wt}[((o * {C} + c) * {kh} + p) * {kw} + q];",
        "  }",
        "}",
        f"{Y}[t] = s;",
    ]
    em.finish(name, _flat(em, f"({N}) * {O * ho * wo}", lines), label, blocks_for(numel(y)), index)


def _conv_grad_input(em, name, node, index, label):
    """out[n, c, y, x] = sum over (o, p, q) with y + pt - p*dh = i*sh, x + pl - q*dw = j*sw
    inside g of g[n, o, i, j] * w[o, c, p, q]."""
    g, w = node.inputs
    out = node.outputs[0]
    op = node.op
    ct = C_TYPES[out.dtype]
    N = em.dim(g, 0)
    _, O, ho, wo = g.shape
    _, C, kh, kw = w.shape
    H, W = out.shape[2:]
    (sh, sw), (pt, _, pl, _), (dh, dw) = op.stride, op.padding, op.dilation
    G, Wt, Y = em.ptr(g), em.ptr(w), em.ptr(out, const=False)
    lines = [
        f"const long long xx = t % {W}, yy = (t / {W}) % {H}, c = (t / ({W * H})) % {C}, n = t / ({W * H * C});",
        f"{ct} s = 0;",
        f"for (int p = 0; p < {kh}; p++) {{",
        f"  const long long ty = yy + {pt} - p * {dh}; if (ty < 0 || ty % {sh}) continue;",
        f"  const long long i = ty / {sh}; if (i >= {ho}) continue;",
        f"  for (int q = 0; q < {kw}; q++) {{",
        f"    const long long tx = xx + {pl} - q * {dw}; if (tx < 0 || tx % {sw}) continue;",
        f"    const long long j = tx / {sw}; if (j >= {wo}) continue;",
        f"    for (int o = 0; o < {O}; o++)",
        f"      s += {G}[((n * {O} + o) * {ho} + i) * {wo} + j] * {Wt}[((o * {C} + c) * {kh} + p) * {kw} + q];",
        "  }",
        "}",
        f"{Y}[t] = s;",
    ]
    em.finish(name, _flat(em, f"({N}) * {C * H * W}", lines), label, blocks_for(numel(out)), index)


def _conv_grad_weight(em, name, node, index, label):
    """gw[o, c, p, q] = sum over (n, i, j) of g[n, o, i, j] * x[n, c, i*sh + p*dh - pt, j*sw + q*dw - pl]:
    a group of lanes per weight element reduces over the batch and the output positions."""
    g, x = node.inputs
    out = node.outputs[0]
    op = node.op
    ct = C_TYPES[out.dtype]
    N = em.dim(g, 0)
    _, O, ho, wo = g.shape
    _, C, H, W = x.shape
    kh, kw = out.shape[2:]
    (sh, sw), (pt, _, pl, _), (dh, dw) = op.stride, op.padding, op.dilation
    M = O * C * kh * kw

    def r_fn(s):
        return shape_of(g, s)[0] * ho * wo

    lane_d = em.param(("lanes", name), lambda s: lanes(M, r_fn(s)))
    G, X, Y = em.ptr(g), em.ptr(x), em.ptr(out, const=False)
    body = f"""  __shared__ {ct} shm[{WARPS}];
  const long long M = {M}, R = ({N}) * {ho * wo};
  const int L = (int){lane_d};
  const int lane = threadIdx.x & (L - 1), grp = threadIdx.x / L, per = blockDim.x / L;
  for (long long ob = (long long)blockIdx.x * per; ob < M; ob += (long long)gridDim.x * per) {{
    const long long e = ob + grp;
    {ct} acc = 0;
    if (e < M) {{
      const long long q = e % {kw}, p = (e / {kw}) % {kh}, c = (e / {kw * kh}) % {C}, o = e / {kw * kh * C};
      for (long long r = lane; r < R; r += L) {{
        const long long j = r % {wo}, i = (r / {wo}) % {ho}, n = r / {wo * ho};
        const long long ih = i * {sh} + p * {dh} - {pt}, iw = j * {sw} + q * {dw} - {pl};
        if (ih < 0 || ih >= {H} || iw < 0 || iw >= {W}) continue;
        acc += {G}[((n * {O} + o) * {ho} + i) * {wo} + j] * {X}[((n * {C} + c) * {H} + ih) * {W} + iw];
      }}
    }}
    acc = gc_group_reduce(acc, L, GcSum(), shm);
    if (e < M && lane == 0) {Y}[e] = acc;
  }}
"""

    def blocks(s):
        return -(-M // (256 // lanes(M, r_fn(s))))

    em.finish(name, body, label, blocks, index)


def _max_pool(em, name, node, index, label):
    """The first maximum of each window in row-major order; a NaN wins; padding never does
    (a window of -inf takes its first real element). Outputs the value and its flat position."""
    x = node.inputs[0]
    y, am = node.outputs
    op = node.op
    ct = C_TYPES[y.dtype]
    N = em.dim(x, 0)
    _, C, H, W = x.shape
    ho, wo = y.shape[2:]
    (kh, kw), (sh, sw), (pt, _, pl, _) = op.size, op.stride, op.padding
    X, Y, A = em.ptr(x), em.ptr(y, const=False), em.ptr(am, const=False)
    lines = [
        f"const long long j = t % {wo}, i = (t / {wo}) % {ho}, plane = t / ({wo * ho});",
        f"const {ct} *xp = {X} + plane * {H * W};",
        f"{ct} best = 0; long long at = -1;",
        f"for (int p = 0; p < {kh}; p++) {{",
        f"  const long long ih = i * {sh} - {pt} + p; if (ih < 0 || ih >= {H}) continue;",
        f"  for (int q = 0; q < {kw}; q++) {{",
        f"    const long long iw = j * {sw} - {pl} + q; if (iw < 0 || iw >= {W}) continue;",
        f"    const {ct} v = xp[ih * {W} + iw];",
        "    if (at < 0 || v > best || (v != v && best == best)) { best = v; at = ih * " + str(W) + " + iw; }",
        "  }",
        "}",
        f"{Y}[t] = best; {A}[t] = (int32_t)at;",
    ]
    em.finish(name, _flat(em, f"({N}) * {C * ho * wo}", lines), label, blocks_for(numel(y)), index)


def _max_pool_grad(em, name, node, index, label):
    g, idx = node.inputs
    out = node.outputs[0]
    from .emit import Memset, nbytes

    em.steps.append(Memset(em.slot(out), nbytes(out), index))
    N = em.dim(g, 0)
    _, C, ho, wo = g.shape
    H, W = out.shape[2:]
    G, IX, Y = em.ptr(g), em.ptr(idx), em.ptr(out, const=False)
    lines = [f"const long long plane = t / {ho * wo};",
             f"gc_atomic_add({Y} + plane * {H * W} + {IX}[t], {G}[t]);"]
    em.finish(name, _flat(em, f"({N}) * {C * ho * wo}", lines), label, blocks_for(numel(g)), index)


def _window_count(op, i: str, j: str, H: int, W: int) -> str:
    """C expression: what window (i, j)'s sum is divided by."""
    (kh, kw), (sh, sw), (pt, _, pl, _) = op.size, op.stride, op.padding
    if op.count_include_pad:
        return str(kh * kw)
    rows = f"(gc_minll({i} * {sh} - {pt} + {kh}, {H}LL) - gc_maxll({i} * {sh} - {pt}, 0LL))"
    cols = f"(gc_minll({j} * {sw} - {pl} + {kw}, {W}LL) - gc_maxll({j} * {sw} - {pl}, 0LL))"
    return f"({rows} * {cols})"


def _avg_pool_grad(em, name, node, index, label):
    """Each input element sums g / count over the windows that cover it (a gather)."""
    g = node.inputs[0]
    out = node.outputs[0]
    op = node.op
    ct = C_TYPES[out.dtype]
    N = em.dim(g, 0)
    _, C, ho, wo = g.shape
    H, W = op.in_hw
    (kh, kw), (sh, sw), (pt, _, pl, _) = op.size, op.stride, op.padding
    G, Y = em.ptr(g), em.ptr(out, const=False)
    lines = [
        f"const long long xx = t % {W}, yy = (t / {W}) % {H}, plane = t / ({W * H});",
        f"const long long ty = yy + {pt}, tx = xx + {pl};",
        f"const long long i0 = ty - {kh} + 1 <= 0 ? 0 : (ty - {kh} + {sh}) / {sh};",
        f"const long long i1 = gc_minll(ty / {sh}, {ho - 1}LL);",
        f"const long long j0 = tx - {kw} + 1 <= 0 ? 0 : (tx - {kw} + {sw}) / {sw};",
        f"const long long j1 = gc_minll(tx / {sw}, {wo - 1}LL);",
        f"{ct} s = 0;",
        "for (long long i = i0; i <= i1; i++) for (long long j = j0; j <= j1; j++)",
        f"  s += {G}[(plane * {ho} + i) * {wo} + j] / ({ct}){_window_count(op, 'i', 'j', H, W)};",
        f"{Y}[t] = s;",
    ]
    em.finish(name, _flat(em, f"({N}) * {C * H * W}", lines), label, blocks_for(numel(out)), index)


OPS = {
    Conv2D: _conv_forward,
    Conv2DGradInput: _conv_grad_input,
    Conv2DGradWeight: _conv_grad_weight,
    MaxPool2D: _max_pool,
    MaxPool2DGrad: _max_pool_grad,
    AvgPool2DGrad: _avg_pool_grad,
}
