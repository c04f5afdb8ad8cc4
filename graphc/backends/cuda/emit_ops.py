"""CUDA for matmul (cuBLAS steps) and the single-node op kernels (softmax, cross-entropy, take, ...).

Each emitter mirrors its C counterpart in graphc/backends/c/emit_ops.py: the same sizes (through
the same `D` parameters) and the same semantics (NaN handling, out-of-range labels select nothing,
out-of-range take indices are refused). Loops become grid-stride loops; per-line reductions use
`gc_group_reduce` from kernels/gc_cuda.cuh.
"""

from __future__ import annotations

import numpy as np

from ...core import Var
from ...ops.collective import Allreduce
from ...ops.control import Scan
from ...ops.shape import TakeGrad
from ..cexpr import C_TYPES
from ..cfamily import KernelTable
from ..cfamily.index import batch_strides, numel, shape_of, split3, split3_fn
from ..cfamily.templates import TEMPLATES
from .emit import Gemm, HostCall, HostLoop, Memset, blocks_for, nbytes
from .emit_conv import OPS as CONV_OPS

# -- matmul ------------------------------------------------------------------------------------


def matmul(em, name: str, k, index: int) -> None:
    """cuBLAS for float gemm (batch axes broadcast through strides); a generated kernel for
    integer operands. An accumulated tensor W is copied into C (unless C is W's storage: in
    place), beta = 1 and alpha is the scale. The CUDA Target takes no bias epilogue."""
    if k.bias is not None:
        raise AssertionError("the CUDA target folds no bias into gemm records")
    out = k.outputs[0]
    mm = k.product
    a, b, ta, tb = k.a, k.b, k.trans_a, k.trans_b
    dtype = out.dtype
    acc = k.acc
    beta, alpha, scalars = 0.0, 1.0, None
    if acc is not None:
        beta = 1.0
        alpha = k.alpha
        sign = -1.0 if k.negate else 1.0
        if isinstance(alpha, Var):
            # a scale read at call time (a shared learning rate): the gemm reads alpha and beta
            # from device memory, written by a one-thread kernel
            scalars = em.scratch(f"{name}_scalars", dtype, 2)
            em.begin()
            lr = em.ptr(alpha)
            dst = em.use(scalars, dtype, True)
            body = (f"  if (blockIdx.x == 0 && threadIdx.x == 0) {{ {dst}[0] = ({C_TYPES[dtype]})({sign!r} * {lr}[0]); "
                    f"{dst}[1] = ({C_TYPES[dtype]})1; }}\n")
            em.finish(f"{name}_alpha", body, k.label + " (alpha)", lambda shapes: 1, index)
        else:
            alpha = sign * float(alpha)
        if em.slot(acc) != em.slot(out):
            from .emit import Copy

            em.steps.append(Copy(em.slot(out), em.slot(acc), nbytes(out), index))
    if dtype in ("float32", "float64"):
        em.steps.append(Gemm(em.slot(out), em.slot(a), em.slot(b), dtype, ta, tb, 1.0 if scalars else alpha, beta,
                             _gemm_geometry(mm, a, b, ta), index, scalars))
        return
    _int_matmul(em, name, k, index, mm, a, b, ta, tb, out, alpha, beta, scalars)


def _gemm_geometry(mm: Var, a: Var, b: Var, ta: bool):
    nb = mm.ndim - 2

    def strides(v: Var, vs: tuple) -> list[int]:
        lead = nb - (v.ndim - 2)
        mat = vs[-2] * vs[-1]
        out = []
        for ax in range(nb):
            va = ax - lead
            if va < 0 or v.shape[va] == 1:  # only a statically-1 axis broadcasts
                out.append(0)
            else:
                out.append(int(np.prod(vs[va + 1:-2], dtype=np.int64)) * mat)
        return out

    def geometry(shapes):
        ms, as_, bs = shape_of(mm, shapes), shape_of(a, shapes), shape_of(b, shapes)
        n, m = ms[-2], ms[-1]
        kk = as_[-2] if ta else as_[-1]
        batch = ms[:-2]
        sa, sb = strides(a, as_), strides(b, bs)
        sc = [int(np.prod(batch[ax + 1:], dtype=np.int64)) * n * m for ax in range(nb)]
        runs: list[tuple] = []  # inner to outer while building
        for ax in reversed(range(nb)):
            d = batch[ax]
            if d == 1:
                continue
            if runs:
                cnt, ra, rb, rc = runs[-1]
                if sa[ax] == ra * cnt and sb[ax] == rb * cnt and sc[ax] == rc * cnt:
                    runs[-1] = (cnt * d, ra, rb, rc)
                    continue
            runs.append((d, sa[ax], sb[ax], sc[ax]))
        runs.reverse()
        return n, m, kk, as_[-1], bs[-1], runs

    return geometry


def _int_matmul(em, name, k, index, mm, a, b, ta, tb, out, alpha, beta, scalars):
    em.begin()
    ct = C_TYPES[out.dtype]
    alpha = f"{em.use(scalars, out.dtype, False)}[0]" if scalars is not None else repr(alpha)
    A, B, C = em.ptr(a), em.ptr(b), em.ptr(out, const=False)
    n, m = em.dim(mm, mm.ndim - 2), em.dim(mm, mm.ndim - 1)
    kk = em.dim(a, a.ndim - 2) if ta else em.dim(a, a.ndim - 1)
    lda, ldb = em.dim(a, a.ndim - 1), em.dim(b, b.ndim - 1)
    nbatch = mm.ndim - 2
    sa, sb = batch_strides(em, a, mm), batch_strides(em, b, mm)
    lines = ["    const long long j = t % m, i = (t / m) % n; long long q = t / (n * m), oa = 0, ob = 0;"]
    for ax in reversed(range(nbatch)):
        lines.append(f"    {{ const long long d = {em.dim(mm, ax)}; const long long iq = q % d; q /= d; "
                     f"oa += iq*({sa[ax]}); ob += iq*({sb[ax]}); }}")
    ia = f"{A}[oa + i*({lda}) + p]" if not ta else f"{A}[oa + p*({lda}) + i]"
    ib = f"{B}[ob + p*({ldb}) + j]" if not tb else f"{B}[ob + j*({ldb}) + p]"
    lines.append(f"    {ct} s = 0; for (long long p = 0; p < kk; p++) s += {ia} * {ib};")
    lines.append(f"    {C}[t] = ({'1' if beta else '0'} ? {C}[t] : ({ct})0) + ({ct})({alpha}) * s;")
    body = (f"  const long long n = {n}, m = {m}, kk = {kk};\n  {em.grid_stride(em.size(out))} {{\n"
            + "\n".join(lines) + "\n  }\n")
    em.finish(f"{name}_int", body, k.label, blocks_for(numel(out)), index)


# -- single-node op kernels --------------------------------------------------------------------


def op_kernel(em, name: str, k, index: int) -> None:
    node = k.nodes[0]
    fn = OPS.lookup(node.op)
    em.begin()
    fn(em, name, node, index, k.label)


def _host_call(em, name, node, index, label):
    """Host-staged: the node's reference implementation between a download and an upload."""
    em.steps.append(HostCall(node, [em.slot(x) for x in node.inputs], [em.slot(y) for y in node.outputs], index))


def _host_loop(em, name, node, index, label):
    """A scan: a host loop over the step graph's program (see program.py)."""
    em.steps.append(HostLoop(node, [em.slot(x) for x in node.inputs], [em.slot(y) for y in node.outputs], index))


def _take_grad(em, name, node, index, label):
    g, idx, _like = node.inputs
    out = node.outputs[0]
    axis = node.op.axis
    outer, n, inner = split3(em, out, axis)
    split = split3_fn(out, axis)
    em.steps.append(Memset(em.slot(out), nbytes(out), index))
    check = em.index_check(idx, n, lambda s: split(s)[1], index, "take (gradient)", axis)
    G, IX, Y = em.ptr(g), em.ptr(idx), em.ptr(out, const=False)
    body = check + f"""  const long long n = {n}, inner = {inner}, ni = {em.size(idx)}, total = ({outer}) * ni * inner;
  {em.grid_stride("total")} {{
    const long long q = t % inner, rest = t / inner, j = rest % ni, p = rest / ni;
    long long s = (long long){IX}[j];
    if (s < -n || s >= n) continue;
    s = s < 0 ? s + n : s;
    gc_atomic_add({Y} + (p * n + s) * inner + q, {G}[t]);
  }}
"""
    def work(s):
        return max(numel(g)(s), numel(idx)(s))

    em.finish(name, body, label, blocks_for(work), index)


#: CUDA's kernels: the shared templates, and CUDA's own algorithms where they differ from C's
#: (a scatter-add with atomics, direct convolutions, host steps for scan and MPI)
OPS = KernelTable("CUDA", TEMPLATES) | {
    Scan: _host_loop,
    Allreduce: _host_call,  # MPI on host copies, for now (no CUDA-aware MPI, no NCCL)
    TakeGrad: _take_grad,
    **CONV_OPS,
}
