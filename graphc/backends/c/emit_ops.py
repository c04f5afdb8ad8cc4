"""C for matmul and the single-node op kernels (softmax, cross-entropy, take, indexing, ...)."""

from __future__ import annotations

import numpy as np

from ...core import Var
from ..cexpr import C_TYPES
from .emit_collective import OPS as COLLECTIVE_OPS
from .emit_conv import OPS as CONV_OPS

HEAD = "static int {name}(void **restrict B, const int64_t *restrict D) {{\n  (void)B; (void)D;\n"


def _fn(name: str, body: str) -> str:
    return HEAD.format(name=name) + body + "\n  return 0;\n}"


def _lit(dtype: str, value: float) -> str:
    return repr(float(value)) + ("f" if dtype == "float32" else "") if dtype.startswith("float") else str(int(value))


# -- matmul ------------------------------------------------------------------------------------


def matmul(em, name: str, k) -> str:
    """gemm through OpenBLAS (float) or loops (int). Batch axes broadcast; a bias row fills C
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
    if batch and not ta and a.ndim == mm.ndim and _batch_strides(em, b, mm) == ["0"] * len(batch) \
            and "0" not in _batch_strides(em, a, mm):
        # (..., n, k) @ (k, m) with a shared right operand: the batch rows stack into one gemm
        n = f"({em.size(mm, range(len(batch)))})*({n})"
        lines[0] = f"  const int64_t n = {n}, m = {m}, kk = {kk};"
        batch = ()
    if batch:
        nb = em.size(mm, range(len(batch)))
        sa = _batch_strides(em, a, mm)
        sb = _batch_strides(em, b, mm)
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
    return _fn(name, "\n".join(lines))


def _batch_strides(em, v: Var, mm: Var) -> list[str]:
    """Per output batch axis, v's element stride along it (0 where v broadcasts)."""
    nb = mm.ndim - 2
    lead = nb - (v.ndim - 2)
    mat = em.size(v, [v.ndim - 2, v.ndim - 1])
    out = []
    for ax in range(nb):
        va = ax - lead
        if va < 0 or v.shape[va] == 1:
            out.append("0")
        else:
            later = em.size(v, range(va + 1, v.ndim - 2)) if va + 1 < v.ndim - 2 else "1"
            out.append(f"({later})*({mat})")
    return out


def _gemm(dtype, ta, tb, A, Bm, C, lda, ldb, beta, alpha: str = "1") -> str:
    tA = "GC_TRANS" if ta else "GC_NO_TRANS"
    tB = "GC_TRANS" if tb else "GC_NO_TRANS"
    if dtype in ("float32", "float64"):
        fn = "scipy_cblas_sgemm" if dtype == "float32" else "scipy_cblas_dgemm"
        one = alpha
        bt = _lit(dtype, float(beta))
        return (f"if (n > 0 && m > 0) {{ if (kk > 0) {fn}(GC_ROW_MAJOR, {tA}, {tB}, (int)n, (int)m, (int)kk, {one}, "
                f"{A}, (int)({lda}), {Bm}, (int)({ldb}), {bt}, {C}, (int)m); "
                f"else if (!{beta}) memset({C}, 0, sizeof(*{C})*n*m); }}")
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
    fn = _OPS.get(node.op.name) or _OPS.get(type(node.op).__name__)
    if fn is None:
        raise NotImplementedError(f"C backend: no emitter for op {node.op.name}")
    return fn(em, name, node, index)


def _split3(em, v: Var, axis: int):
    """(outer, n, inner) sizes of v around `axis`."""
    outer = em.size(v, range(axis)) if axis else "1"
    inner = em.size(v, range(axis + 1, v.ndim)) if axis + 1 < v.ndim else "1"
    return outer, em.dim(v, axis), inner


def _dim(em, name, node, index):
    x, out = node.inputs[0], node.outputs[0]
    return _fn(name, f"  {em.ptr(out, const=False)}[0] = (int64_t)({em.dim(x, node.op.axis)});")


def _softmax_like(em, name, node, index, log: bool):
    x, out = node.inputs[0], node.outputs[0]
    ct = C_TYPES[x.dtype]
    sfx = "f" if x.dtype == "float32" else ""
    outer, n, inner = _split3(em, x, node.op.axis)
    write = ("y[base + j*inner] = (x[base + j*inner] - mx) - lse;" if log else
             f"y[base + j*inner] = gc_exp{sfx}(x[base + j*inner] - mx) * inv;")
    body = f"""  const {ct} *restrict x = {em.ptr(x)};
  {ct} *restrict y = {em.ptr(out, const=False)};
  const int64_t outer = {outer}, n = {n}, inner = {inner};
  #pragma omp parallel for if(outer*n*inner > GC_PAR_MIN) schedule(static)
  for (int64_t line = 0; line < outer*inner; line++) {{
    const int64_t base = (line / inner) * n * inner + (line % inner);
    {ct} mx = -INFINITY;
    int nan = 0;  /* NaN wins (NumPy), tracked apart so that the max loop vectorises */
    #pragma omp simd reduction(max:mx) reduction(|:nan)
    for (int64_t j = 0; j < n; j++) {{ {ct} v = x[base + j*inner]; mx = v > mx ? v : mx; nan |= v != v; }}
    if (nan) mx = NAN;
    if (!(mx - mx == 0)) mx = (mx != mx) ? mx : 0;  /* an infinite max must not make inf-inf */
    double s = 0;
    #pragma omp simd reduction(+:s)
    for (int64_t j = 0; j < n; j++) s += gc_exp{sfx}(x[base + j*inner] - mx);
    const {ct} lse = ({ct})log(s); const {ct} inv = ({ct})(1.0 / s);
    (void)lse; (void)inv;
    for (int64_t j = 0; j < n; j++) {write}
  }}"""
    return _fn(name, body)


def _sce(em, name, node, index):
    z, t = node.inputs
    out = node.outputs[0]
    ct, tt = C_TYPES[z.dtype], C_TYPES[t.dtype]
    sfx = "f" if z.dtype == "float32" else ""
    c = em.dim(z, z.ndim - 1)
    rows = em.size(t)
    body = f"""  const {ct} *restrict z = {em.ptr(z)};
  const {tt} *restrict t = {em.ptr(t)};
  {ct} *restrict y = {em.ptr(out, const=False)};
  const int64_t rows = {rows}, C = {c};
  #pragma omp parallel for if(rows*C > GC_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {{
    const {ct} *zr = z + r*C;
    const int64_t label = (int64_t)t[r];
    if (label < 0 || label >= C) {{ y[r] = 0; continue; }}  /* like one_hot: selects nothing */
    {ct} mx = -INFINITY;
    int nan = 0;  /* NaN wins (NumPy), tracked apart so that the max loop vectorises */
    #pragma omp simd reduction(max:mx) reduction(|:nan)
    for (int64_t j = 0; j < C; j++) {{ {ct} v = zr[j]; mx = v > mx ? v : mx; nan |= v != v; }}
    if (nan) mx = NAN;
    if (!(mx - mx == 0)) mx = (mx != mx) ? mx : 0;
    double s = 0;
    #pragma omp simd reduction(+:s)
    for (int64_t j = 0; j < C; j++) s += gc_exp{sfx}(zr[j] - mx);
    y[r] = ({ct})(log(s) - (double)(zr[label] - mx));
  }}"""
    return _fn(name, body)


def _one_hot(em, name, node, index):
    t, out = node.inputs[0], node.outputs[0]
    body = f"""  const {C_TYPES[t.dtype]} *restrict t = {em.ptr(t)};
  {C_TYPES[out.dtype]} *restrict y = {em.ptr(out, const=False)};
  const int64_t rows = {em.size(t)}, depth = {node.op.depth};
  #pragma omp parallel for if(rows*depth > GC_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < depth; j++) y[r*depth + j] = (int64_t)t[r] == j;"""
    return _fn(name, body)


def _check_indices(em, idx: Var, size: str, index: int, op: str, axis: int) -> str:
    """Refuse out-of-range indices before anything is written; the first bad index and the size go
    to the error-info buffer for the message."""
    code = (index + 1) << 4 | 1
    em.errors[code] = (IndexError, op + ": index {0} is out of range for axis " + str(axis) + " of size {1}")
    return f"""  {{ const {C_TYPES[idx.dtype]} *restrict ix = {em.ptr(idx)}; const int64_t ni = {em.size(idx)};
    int64_t bad = 0;
    for (int64_t j = 0; j < ni; j++) bad |= (ix[j] < -({size})) | (ix[j] >= ({size}));
    if (bad) {{
      for (int64_t j = 0; j < ni; j++)
        if (ix[j] < -({size}) || ix[j] >= ({size})) {{ GC_ERR[0] = (int64_t)ix[j]; GC_ERR[1] = {size}; break; }}
      return {code};
    }} }}"""


def _take(em, name, node, index):
    x, idx = node.inputs
    out = node.outputs[0]
    ct = C_TYPES[x.dtype]
    outer, n, inner = _split3(em, x, node.op.axis)
    body = _check_indices(em, idx, n, index, "take", node.op.axis) + f"""
  const {ct} *restrict x = {em.ptr(x)};
  const {C_TYPES[idx.dtype]} *restrict ix = {em.ptr(idx)};
  {ct} *restrict y = {em.ptr(out, const=False)};
  const int64_t outer = {outer}, n = {n}, inner = {inner}, ni = {em.size(idx)};
  #pragma omp parallel for if(outer*ni*inner > GC_PAR_MIN) schedule(static)
  for (int64_t p = 0; p < outer; p++)
    for (int64_t j = 0; j < ni; j++) {{
      int64_t s = (int64_t)ix[j]; s = s < 0 ? s + n : s;
      memcpy(y + (p*ni + j)*inner, x + (p*n + s)*inner, sizeof({ct})*inner);
    }}"""
    return _fn(name, body)


def _take_grad(em, name, node, index):
    g, idx, like = node.inputs
    out = node.outputs[0]
    ct = C_TYPES[g.dtype]
    outer, n, inner = _split3(em, out, node.op.axis)
    body = _check_indices(em, idx, n, index, "take (gradient)", node.op.axis) + f"""
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
    return _fn(name, body)


def _strided_copy(em, name, out_like: Var, src: Var, dst: Var, mapping, scatter: bool, zero: Var | None):
    """Copy between a dense array and a strided view: mapping(shapes) -> (base, [(size, stride)])
    gives the view's element offset and per-axis (size, stride) in the other array, computed per
    signature in Python and passed through D."""
    ct = C_TYPES[src.dtype]
    key = id(out_like)
    base = em.param(("view_base", name), lambda s, key=key: mapping(s)[0])
    nd = out_like.ndim
    sizes = [em.param(("view_size", name, j), lambda s, j=j: mapping(s)[1][j][0]) for j in range(nd)]
    strides = [em.param(("view_stride", name, j), lambda s, j=j: mapping(s)[1][j][1]) for j in range(nd)]
    dense_idx = " + ".join(f"i{j}*{_prod(sizes[j + 1:])}" for j in range(nd)) or "0"
    view_idx = " + ".join([base] + [f"i{j}*{strides[j]}" for j in range(nd)])
    stmt = f"y[{view_idx}] = x[{dense_idx}];" if scatter else f"y[{dense_idx}] = x[{view_idx}];"
    code = stmt
    for j in reversed(range(nd)):
        code = f"for (int64_t i{j} = 0; i{j} < {sizes[j]}; i{j}++) {{ {code} }}"
    lines = [f"  const {ct} *restrict x = {em.ptr(src)};", f"  {ct} *restrict y = {em.ptr(dst, const=False)};"]
    if zero is not None:
        lines.append(f"  memset(y, 0, sizeof({ct})*({em.size(zero)}));")
    lines.append("  " + code)
    return _fn(name, "\n".join(lines))


def _prod(parts):
    return "*".join(parts) if parts else "1"


def _subtensor_mapping(idx, x_id, out_id):
    def mapping(shapes):
        xs = shapes[x_id]
        strides = [int(np.prod(xs[a + 1:], dtype=np.int64)) for a in range(len(xs))]
        base, axes, a = 0, [], 0
        for e in idx:
            if e is None:
                axes.append((1, 0))
                continue
            d = xs[a]
            if isinstance(e, int):
                base += (e % d if d else 0) * strides[a]
            else:
                start, stop, step = slice(*e[1:]).indices(d)
                n = len(range(start, stop, step))
                base += (start if n else 0) * strides[a]
                axes.append((n, step * strides[a]))
            a += 1
        return base, axes

    return mapping


def _getitem(em, name, node, index):
    x, out = node.inputs[0], node.outputs[0]
    mapping = _subtensor_mapping(node.op.idx, id(x), id(out))
    return _strided_copy(em, name, out, x, out, mapping, scatter=False, zero=None)


def _subtensor_grad(em, name, node, index):
    g, like = node.inputs
    out = node.outputs[0]
    mapping = _subtensor_mapping(node.op.idx, id(like), id(g))
    return _strided_copy(em, name, g, g, out, mapping, scatter=True, zero=out)


def _transpose(em, name, node, index):
    x, out = node.inputs[0], node.outputs[0]
    perm = node.op.perm
    xid = id(x)

    def mapping(shapes):
        xs = shapes[xid]
        strides = [int(np.prod(xs[a + 1:], dtype=np.int64)) for a in range(len(xs))]
        return 0, [(xs[p], strides[p]) for p in perm]

    return _strided_copy(em, name, out, x, out, mapping, scatter=False, zero=None)


def _concatenate(em, name, node, index):
    out = node.outputs[0]
    axis = node.op.axis
    ct = C_TYPES[out.dtype]
    outer, total, inner = _split3(em, out, axis)
    lines = [f"  {ct} *restrict y = {em.ptr(out, const=False)};", f"  const int64_t outer = {outer}, "
             f"N = {total}, inner = {inner};", "  int64_t off = 0;"]
    for x in node.inputs:
        n = em.dim(x, axis)
        lines.append(f"""  {{ const {ct} *restrict x = {em.ptr(x)}; const int64_t n = {n};
    for (int64_t p = 0; p < outer; p++) memcpy(y + (p*N + off)*inner, x + p*n*inner, sizeof({ct})*n*inner);
    off += n; }}""")
    return _fn(name, "\n".join(lines))


def _split(em, name, node, index):
    g = node.inputs[0]
    axis = node.op.axis
    ct = C_TYPES[g.dtype]
    outer, total, inner = _split3(em, g, axis)
    lines = [f"  const {ct} *restrict x = {em.ptr(g)};", f"  const int64_t outer = {outer}, N = {total}, "
             f"inner = {inner};", "  int64_t off = 0;"]
    for o in node.outputs:
        n = em.dim(o, axis)
        lines.append(f"""  {{ {ct} *restrict y = {em.ptr(o, const=False)}; const int64_t n = {n};
    for (int64_t p = 0; p < outer; p++) memcpy(y + p*n*inner, x + (p*N + off)*inner, sizeof({ct})*n*inner);
    off += n; }}""")
    return _fn(name, "\n".join(lines))


def _argmax(em, name, node, index):
    x, out = node.inputs[0], node.outputs[0]
    ct = C_TYPES[x.dtype]
    if node.op.axis is None:
        outer, n, inner = "1", em.size(x), "1"
    else:
        outer, n, inner = _split3(em, x, node.op.axis)
    body = f"""  const {ct} *restrict x = {em.ptr(x)};
  int64_t *restrict y = {em.ptr(out, const=False)};
  const int64_t outer = {outer}, n = {n}, inner = {inner};
  #pragma omp parallel for if(outer*n*inner > GC_PAR_MIN) schedule(static)
  for (int64_t line = 0; line < outer*inner; line++) {{
    const int64_t base = (line / inner) * n * inner + (line % inner);
    {ct} best = x[base]; int64_t at = 0;
    for (int64_t j = 1; j < n; j++) {{
      {ct} v = x[base + j*inner];
      if (v > best || (v != v && best == best)) {{ best = v; at = j; }}  /* the first NaN wins */
    }}
    y[line] = at;
  }}"""
    return _fn(name, body)


def _random(em, name, node, index):
    op = node.op
    counter = node.inputs[0]
    out = node.outputs[0]
    ct = C_TYPES[out.dtype]
    if op.dist == "uniform":
        value = "gc_u24(w[0])" if out.dtype == "float32" else "gc_u53(w[0], w[1])"
    elif op.dist == "normal":
        value = "gc_normal(w)"
    else:
        value = f"(gc_u24(w[0]) < {float(op.p)!r})"
    body = f"""  {ct} *restrict y = {em.ptr(out, const=False)};
  const uint64_t call = (uint64_t){em.ptr(counter)}[0];
  const int64_t n = {em.size(out)};
  #pragma omp parallel for if(n > GC_PAR_MIN / 16) schedule(static)
  for (int64_t i = 0; i < n; i++) {{
    uint32_t w[4];
    gc_philox_words((uint64_t)i, call, (uint64_t){op.seed}ULL, w);
    y[i] = ({ct})({value});
  }}"""
    return _fn(name, body)


_OPS = {
    "dim": _dim,
    "softmax": lambda em, name, node, i: _softmax_like(em, name, node, i, log=False),
    "log_softmax": lambda em, name, node, i: _softmax_like(em, name, node, i, log=True),
    "softmax_cross_entropy": _sce,
    "one_hot": _one_hot,
    "take": _take,
    "take_grad": _take_grad,
    "getitem": _getitem,
    "subtensor_grad": _subtensor_grad,
    "transpose": _transpose,
    "concatenate": _concatenate,
    "split": _split,
    "argmax": _argmax,
    "Random": _random,
    **CONV_OPS,  # convolution and pooling (emit_conv.py)
    **COLLECTIVE_OPS,  # allreduce over MPI ranks (emit_collective.py)
}
