"""C for matmul and the single-node op kernels (softmax, cross-entropy, take, indexing, ...)."""

from __future__ import annotations

from ...core import Var
from ...ops.shape import TakeGrad
from ..cexpr import C_TYPES
from ..cfamily import KernelTable
from ..cfamily.index import batch_strides, split3
from ..cfamily.templates import TEMPLATES
from .emit_collective import OPS as COLLECTIVE_OPS
from .emit_conv import OPS as CONV_OPS
from .hooks import c_function, gemm_call


def _lit(dtype: str, value: float) -> str:
    return repr(float(value)) + ("f" if dtype == "float32" else "") if dtype.startswith("float") else str(int(value))


# -- matmul ------------------------------------------------------------------------------------


def matmul(em, name: str, k) -> str:
    """gemm through graphc's AVX-512 kernel or OpenBLAS (float32, kernels/gc_gemm.h), OpenBLAS
    (float64) or loops (int). Batch axes broadcast; a bias row fills C
    first and the gemm adds to it (beta = 1)."""
    out = k.outputs[0]
    mm = k.product
    a, b, ta, tb, bias = k.a, k.b, k.trans_a, k.trans_b, k.bias
    dtype = out.dtype
    ct = C_TYPES[dtype]
    n = em.dim(mm, mm.ndim - 2)
    m = em.dim(mm, mm.ndim - 1)
    kk = em.dim(a, a.ndim - 2) if ta else em.dim(a, a.ndim - 1)
    lda = em.dim(a, a.ndim - 1)
    ldb = em.dim(b, b.ndim - 1)
    A, Bp, C = em.ptr(a), em.ptr(b), em.ptr(out, const=False)
    lines = [f"  const int64_t n = {n}, m = {m}, kk = {kk};", f"  {ct} *restrict c = {C};"]
    beta = "0"
    alpha = _lit(dtype, 1.0)
    acc = k.acc
    if acc is not None:
        # C starts as the accumulated tensor (unless C already is its storage: in-place update)
        a = f"{em.ptr(k.alpha)}[0]" if isinstance(k.alpha, Var) else _lit(dtype, k.alpha)
        alpha = f"(-({a}))" if k.negate else a
        if em.slot(acc) != em.slot(out):
            lines.append(f"  memcpy(c, {em.ptr(acc)}, sizeof({ct})*n*m);")
        beta = "1"
    if bias is not None:
        bp = em.ptr(bias)
        if bias.ndim == 0:
            lines.append(f"  for (int64_t i = 0; i < n*m; i++) c[i] = {bp}[0];")
        else:
            # one thread: waking OpenMP workers right before OpenBLAS starts its own costs more
            lines.append("  for (int64_t i = 0; i < n; i++)")
            lines.append(f"    for (int64_t j = 0; j < m; j++) c[i*m + j] = {bp}[j];")
        beta = "1"
    batch = mm.shape[:-2]
    if batch and not ta and a.ndim == mm.ndim and batch_strides(em, b, mm) == ["0"] * len(batch) \
            and "0" not in batch_strides(em, a, mm):
        # (..., n, k) @ (k, m) with a shared right operand: the batch rows stack into one gemm
        n = f"({em.size(mm, range(len(batch)))})*({n})"
        lines[0] = f"  const int64_t n = {n}, m = {m}, kk = {kk};"
        batch = ()
    if batch:
        nb = em.size(mm, range(len(batch)))
        sa = batch_strides(em, a, mm)
        sb = batch_strides(em, b, mm)
        lines.append(f"  const int64_t nbatch = {nb};")
        lines.append("  for (int64_t q = 0; q < nbatch; q++) {")
        lines.append("    int64_t rem = q, oa = 0, ob = 0;")
        for ax in reversed(range(len(batch))):
            lines.append(f"    {{ int64_t d = {em.dim(mm, ax)}; int64_t iq = rem % d; rem /= d; "
                         f"oa += iq*({sa[ax]}); ob += iq*({sb[ax]}); }}")
        a_expr, b_expr, c_expr = "(A0 + oa)", "(B0 + ob)", "(c + q*n*m)"
        lines.insert(0, f"  const {ct} *A0 = {A}; const {ct} *B0 = {Bp};")
    else:
        a_expr, b_expr, c_expr = A, Bp, "c"
    call = _gemm(dtype, ta, tb, a_expr, b_expr, c_expr, lda, ldb, beta, alpha)
    lines.append(("    " if batch else "  ") + call)
    if batch:
        lines.append("  }")
    return c_function(name, "\n".join(lines))


def _gemm(dtype, ta, tb, A, Bm, C, lda, ldb, beta, alpha: str = "1") -> str:
    if dtype in ("float32", "float64"):
        call = gemm_call(dtype, ta, tb, "n", "m", "kk", alpha, A, lda, Bm, ldb, beta, C)
        return f"if (n > 0 && m > 0) {{ if (kk > 0) {call} else if (!{beta}) memset({C}, 0, sizeof(*{C})*n*m); }}"
    ia = f"({A})[i*({lda}) + p]" if not ta else f"({A})[p*({lda}) + i]"
    ib = f"({Bm})[p*({ldb}) + j]" if not tb else f"({Bm})[j*({ldb}) + p]"
    return (f"for (int64_t i = 0; i < n; i++) for (int64_t j = 0; j < m; j++) {{ "
            f"{C_TYPES[dtype]} s = 0; for (int64_t p = 0; p < kk; p++) s += {ia} * {ib}; "
            f"({C})[i*m + j] = ({beta} ? ({C})[i*m + j] : 0) + ({C_TYPES[dtype]})({alpha}) * s; }}")


# -- single-node op kernels --------------------------------------------------------------------


def op_kernel(em, name: str, k, index: int) -> str:
    node = k.nodes[0]
    if node.op.inner_graph:
        from .emit_scan import scan_kernel

        return scan_kernel(em, name, node, index)
    return OPS.lookup(node.op)(em, name, node, index, k.label)


def _take_grad(em, name, node, index, label):
    g, idx, like = node.inputs
    out = node.outputs[0]
    ct = C_TYPES[g.dtype]
    outer, n, inner = split3(em, out, node.op.axis)
    body = em.index_check(idx, n, None, index, "take (gradient)", node.op.axis) + f"""
  const {ct} *restrict g = {em.ptr(g)};
  const {C_TYPES[idx.dtype]} *restrict ix = {em.ptr(idx)};
  {ct} *restrict y = {em.ptr(out, const=False)};
  const int64_t outer = {outer}, n = {n}, inner = {inner}, ni = {em.size(idx)};
  memset(y, 0, sizeof({ct})*outer*n*inner);
  #pragma omp parallel for if(outer*ni*inner > GC_PAR_MIN) schedule(static)
  for (int64_t p = 0; p < outer; p++)
    for (int64_t j = 0; j < ni; j++) {{
      int64_t s = (int64_t)ix[j]; s = s < 0 ? s + n : s;
      {ct} *dst = y + (p*n + s)*inner; const {ct} *src = g + (p*ni + j)*inner;
      #pragma omp simd
      for (int64_t q = 0; q < inner; q++) dst[q] += src[q];
    }}"""
    return c_function(name, body)


#: C's kernels: the shared templates, and C's own algorithms where they differ from CUDA's (a
#: scatter-add parallel over rows, im2col + OpenBLAS convolutions, MPI)
OPS = KernelTable("C", TEMPLATES) | {
    TakeGrad: _take_grad,
    **CONV_OPS,
    **COLLECTIVE_OPS,
}
