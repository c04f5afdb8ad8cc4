"""C for convolution and pooling kernels (graphc/ops/conv.py).

Every size but the batch is static, so each kernel is specialised: channels, kernel, stride,
padding and dilation are literals that gcc folds into the loops. The batch N arrives in D.

**Algorithms.** Per image, whichever measured faster for the shape (numbers in the comments):

- *direct* forward convolution (`_direct_fn`): output rows in 64-byte vectors, 16 output channels
  at a time, so each loaded input vector feeds 16 fused multiply-adds held in registers. Used at
  width-stride 1 when an output row is at least one vector wide and there are >= 4 output
  channels. The input gradient at stride 1 is the same kernel applied to the output gradient with
  the weights flipped and transposed (`_Geom.transposed`).
- otherwise *im2col + gemm* (OpenBLAS sgemm/dgemm): forward ``y[n] = W (O, K) @ col(x[n]) (K, P)``
  (K = C*kh*kw, P = ho*wo); input gradient ``col = W^T @ g[n]`` then col2im; weight gradient
  ``gW^T (K, O) += col(x[n]) @ g[n]^T``. im2col and col2im copy fixed-length rows out of a
  zero-padded copy of the image (the "stage"), so they need no bounds checks. A 1x1 kernel at
  stride 1 without padding needs no im2col at all: the image is its own column matrix.

**Threads** (OpenMP), two schedules (`_schedules`):

- *batch*: threads take whole images (handed out dynamically), each thread with its own scratch;
  the weight gradient sums chunks of images into partials added in chunk order at the end
  (deterministic); each gemm runs on one thread. Small per-image gemms (LeNet-sized layers)
  cannot keep several threads busy; images can.
  OpenBLAS is held to one thread around this region (``scipy_openblas_set_num_threads``) when a
  per-image gemm is above its threading threshold, so its threads do not pile onto OpenMP's.
- *sequential*: images one after another, im2col/col2im split over channels (the direct kernel
  over output rows) and gemms threaded by OpenBLAS. Compiled in (and chosen at run time when the
  batch is smaller than the thread count) only where one image's gemm is big enough to thread.

**Scratch** (column matrices, stages, partial sums, flipped weights) is allocated in the kernel
with malloc and freed before it returns: a failed allocation returns an error code and the call
raises MemoryError naming the op and the size. (glibc serves repeated same-size requests from its
heap; the cost is microseconds against a kernel's tenths of milliseconds.)

**Pooling** kernels loop over (n, c) planes in parallel; max pooling writes the int32 argmax used
by its backward kernel (a scatter-add within each plane, so planes stay independent). Unpadded
max pooling is vectorised over each output row.

Bias and activation are not fused here: the conv output feeds the elementwise kernel that adds the
bias and applies the activation (one pass over the output), like any other producer.
"""

from __future__ import annotations

import os

from ...ops.conv import (
    AvgPool2DGrad,
    Conv2D,
    Conv2DGradInput,
    Conv2DGradWeight,
    MaxPool2D,
    MaxPool2DGrad,
)
from ..cexpr import C_TYPES
from ..cfamily.emitter import KernelError
from .hooks import c_function, gemm_call

# per-image gemm work (m*n*k) below which OpenBLAS runs single-threaded anyway
SMALL_GEMM = 65536 * 4
# total multiply-adds below which a conv kernel stays on one thread
PAR_MIN_MACS = 1 << 17

# OpenBLAS's thread control (scipy-openblas32 prefixes its symbols), for kernels that hold it to one thread
BLAS_THREADS_DECL = "void scipy_openblas_set_num_threads(int); int scipy_openblas_get_num_threads(void);"


def _fn(name: str, body: str, helpers: str = "") -> str:
    return "#include <stdlib.h>\n" + BLAS_THREADS_DECL + "\n" + helpers + c_function(name, body)


def _lit(dtype: str, value: float) -> str:
    return repr(float(value)) + ("f" if dtype == "float32" else "")


def _gemm(dtype: str, ta: bool, tb: bool, n, m, k, a: str, lda, b: str, ldb, beta: int, c: str) -> str:
    """C = op(a) @ op(b) (+ C if beta), row-major with ldc = m (one thread inside a parallel region)."""
    return gemm_call(dtype, ta, tb, n, m, k, _lit(dtype, 1), a, lda, b, ldb, beta, c)


def _oom(em, index: int, op: str) -> tuple[int, str]:
    code = (index + 1) << 4 | 2
    em.errors[code] = KernelError(MemoryError, op + ": could not allocate {0} bytes of scratch memory", index)
    return code, f"{{ GC_ERR[0] = (int64_t)(scratch_bytes); return {code}; }}"


class _Geom:
    """Static sizes of one convolution: input (C, H, W), output (O, ho, wo), kernel, stride, pad."""

    def __init__(self, op, c, h, w, o, ho, wo, kh, kw, stride=None, padding=None, dilation=None):
        self.c, self.h, self.w, self.o, self.ho, self.wo, self.kh, self.kw = c, h, w, o, ho, wo, kh, kw
        self.sh, self.sw = op.stride if op is not None else stride
        self.pt, self.pb, self.pl, self.pr = op.padding if op is not None else padding
        self.dh, self.dw = op.dilation if op is not None else dilation
        self.k = c * kh * kw
        self.p = ho * wo
        from .emit import blas_size_error  # every size here is static: refuse at compile time

        err = blas_size_error("conv", f"input (C, H, W) = ({c}, {h}, {w}) with a {kh}x{kw} kernel",
                              {"C*kh*kw": self.k, "ho*wo": self.p, "output channels": o})
        if err is not None:
            raise err
        self.padded = any((self.pt, self.pb, self.pl, self.pr))
        # the zero-padded copy of one image ("stage"), so that im2col and col2im need no bounds checks
        self.hp, self.wp = (h + self.pt + self.pb, w + self.pl + self.pr) if self.padded else (h, w)

    def transposed(self) -> _Geom | None:
        """At stride 1 the input gradient is itself a convolution: of the output gradient, padded
        by (effective kernel - 1 - padding), with the weights flipped and their O and C axes
        swapped. Its geometry, or None (strides, or padding wider than the kernel)."""
        ekh, ekw = self.dh * (self.kh - 1) + 1, self.dw * (self.kw - 1) + 1
        pads = (ekh - 1 - self.pt, ekh - 1 - self.pb, ekw - 1 - self.pl, ekw - 1 - self.pr)
        if (self.sh, self.sw) != (1, 1) or min(pads) < 0:
            return None
        return _Geom(None, self.o, self.ho, self.wo, self.c, self.h, self.w, self.kh, self.kw, (1, 1), pads,
                     (self.dh, self.dw))

    @property
    def trivial(self) -> bool:
        """A 1x1 kernel at stride 1 without padding: the image is its own column matrix."""
        return (self.kh, self.kw, self.sh, self.sw, self.pt, self.pb, self.pl, self.pr) == (1, 1, 1, 1, 0, 0, 0, 0)

    @property
    def stage(self) -> int:
        return self.c * self.hp * self.wp if self.padded else 0

    def enum(self) -> str:
        return (f"enum {{ C = {self.c}, H = {self.h}, W = {self.w}, O = {self.o}, KH = {self.kh}, KW = {self.kw}, "
                f"HO = {self.ho}, WO = {self.wo}, SH = {self.sh}, SW = {self.sw}, PT = {self.pt}, PL = {self.pl}, "
                f"DH = {self.dh}, DW = {self.dw}, HP = {self.hp}, WP = {self.wp} }};")


def _stage_fn(g: _Geom, name: str, ct: str) -> str:
    """`{name}_stage(img, stage, c)`: the address of channel c of one image with its zero border:
    the image itself without padding, else its rows copied into the (zero-bordered) stage."""
    if not g.padded:
        return f"""static inline const {ct} *{name}_stage(const {ct} *restrict img, {ct} *restrict stage, int64_t c) {{
  (void)stage; return img + c*{g.h * g.w}LL;
}}
"""
    return f"""static inline const {ct} *{name}_stage(const {ct} *restrict img, {ct} *restrict stage, int64_t c) {{
  {g.enum()}
  {ct} *restrict st = stage + c*(HP*WP);
  for (int64_t h = 0; h < H; h++) memcpy(st + (h + PT)*WP + PL, img + (c*H + h)*W, sizeof({ct})*W);
  return st;
}}
"""


def _cols(g: _Geom, name: str, ct: str, scatter: bool) -> str:
    """`{name}_im2col(img, col, stage, c0, c1)`: channels [c0, c1) of one image into their rows of
    the column matrix; or `{name}_col2im(img, col, stage, c0, c1)`: those rows summed back into the
    image's channels (overwritten). Fixed-length row copies from the padded stage (static sizes:
    gcc unrolls and vectorises them)."""
    if not scatter:
        # a fixed-size memcpy becomes a few vector moves; a strided row is a gather loop
        copy = (f"memcpy(d, s, sizeof({ct})*WO);" if g.sw == 1 else
                "#pragma omp simd\n          for (int64_t ow = 0; ow < WO; ow++) d[ow] = s[ow*SW];")
        return _stage_fn(g, name, ct) + f"""static inline void {name}_im2col(const {ct} *restrict img,
    {ct} *restrict col, {ct} *restrict stage, int64_t c0, int64_t c1) {{
  {g.enum()}
  for (int64_t c = c0; c < c1; c++) {{
    const {ct} *restrict src = {name}_stage(img, stage, c);
    for (int64_t i = 0; i < KH; i++)
      for (int64_t j = 0; j < KW; j++) {{
        {ct} *restrict row = col + ((c*KH + i)*KW + j)*(HO*WO);
        for (int64_t oh = 0; oh < HO; oh++) {{
          const {ct} *restrict s = src + (oh*SH + i*DH)*WP + j*DW;
          {ct} *restrict d = row + oh*WO;
          {copy}
        }}
      }}
  }}
}}
"""
    copy_out = (f"for (int64_t h = 0; h < H; h++) memcpy(img + (c*H + h)*W, st + (h + PT)*WP + PL, sizeof({ct})*W);"
                if g.padded else "")
    return f"""static inline void {name}_col2im({ct} *restrict img, const {ct} *restrict col, {ct} *restrict stage,
                                    int64_t c0, int64_t c1) {{
  {g.enum()}
  (void)stage;
  for (int64_t c = c0; c < c1; c++) {{
    {ct} *restrict st = {"stage + c*(HP*WP)" if g.padded else "img + c*(H*W)"};
    memset(st, 0, sizeof({ct})*(HP*WP));
    for (int64_t i = 0; i < KH; i++)
      for (int64_t j = 0; j < KW; j++) {{
        const {ct} *restrict row = col + ((c*KH + i)*KW + j)*(HO*WO);
        for (int64_t oh = 0; oh < HO; oh++) {{
          {ct} *restrict d = st + (oh*SH + i*DH)*WP + j*DW;
          const {ct} *restrict s = row + oh*WO;
          #pragma omp simd
          for (int64_t ow = 0; ow < WO; ow++) d[ow*SW] += s[ow];
        }}
      }}
    {copy_out}
  }}
}}
"""


# Direct forward convolution: no im2col; each output row is computed in 64-byte vectors (GCC
# vector extensions), DIRECT_OB output channels at a time, so every input vector loaded feeds
# DIRECT_OB fused multiply-adds held in registers. It needs stride 1 along the width and output
# rows at least one vector wide (a row's last vector overlaps the one before). Measured on one
# core (float32): LeNet's first layer 0.19 ms against 0.24 ms for im2col + sgemm, and a 3x3
# 64 -> 64 layer on 32x32 images 106 GFLOP/s against 79; DIRECT_OB = 16 was the best of 4..24.
DIRECT_OB = 16


def _use_direct(g: _Geom, dtype: str) -> bool:
    lanes = 64 // (4 if dtype == "float32" else 8)
    # with fewer than 4 output channels a loaded vector feeds too few multiply-adds (LeNet's
    # 1-channel input gradient: 0.46 ms direct, 0.32 ms im2col + gemm)
    possible = not g.trivial and g.sw == 1 and g.wo >= lanes and g.o >= 4
    if os.environ.get("GRAPHC_CONV_DIRECT") == "0":  # for benchmarks: im2col + gemm only
        return False
    return possible


def _direct_fn(g: _Geom, name: str, ct: str) -> str:
    lanes = 64 // (4 if ct == "float" else 8)
    starts = list(range(0, g.wo - lanes + 1, lanes))
    if starts[-1] + lanes < g.wo:
        starts.append(g.wo - lanes)
    blocks = []
    for o0 in range(0, g.o, DIRECT_OB):
        nb = min(DIRECT_OB, g.o - o0)
        accs = "".join(f"      gc_vec_{ct} a{b} = {{0}};\n" for b in range(nb))
        fmas = "".join(f"            a{b} += w[{(o0 + b) * g.k} + t] * xv;\n" for b in range(nb))
        stores = "".join(f"      memcpy(yi + ({(o0 + b) * g.ho}LL + oh)*WO + q, &a{b}, sizeof a{b});\n"
                         for b in range(nb))
        blocks.append(f"""    for (int64_t qi = 0; qi < {len(starts)}; qi++) {{
      const int64_t q = qs[qi];
{accs}      for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < KH; i++)
          for (int64_t j = 0; j < KW; j++) {{
            const int64_t t = (c*KH + i)*KW + j;
            gc_vec_{ct} xv;
            memcpy(&xv, src[c] + (oh*SH + i*DH)*WP + j*DW + q, sizeof xv);
{fmas}          }}
{stores}    }}""")
    return _stage_fn(g, name, ct) + f"""#ifndef GC_VEC_{ct.upper()}
#define GC_VEC_{ct.upper()}
typedef {ct} gc_vec_{ct} __attribute__((vector_size(64)));
#endif
static inline void {name}_direct(const {ct} *const *src, const {ct} *restrict w, {ct} *restrict yi,
    int64_t oh0, int64_t oh1) {{
  {g.enum()}
  static const int64_t qs[{len(starts)}] = {{{", ".join(map(str, starts))}}};
  for (int64_t oh = oh0; oh < oh1; oh++) {{
{chr(10).join(blocks)}
  }}
}}
"""


def _schedules(g: _Geom, n_static) -> tuple[str, ...]:
    """The image-loop schedules a kernel needs: threads over images ("batch"; each gemm on one
    thread), and, when one image's gemm is big enough for OpenBLAS to thread, also "sequential"
    (images one after another, channels or rows across threads), taken at run time when the batch
    is smaller than the thread count (inference on one large image)."""
    forced = os.environ.get("GRAPHC_CONV_SCHEDULE")
    if forced in ("batch", "sequential"):  # for benchmarks and tests
        return (forced,)
    if g.o * g.p * g.k <= SMALL_GEMM or (n_static is not None and n_static >= (os.cpu_count() or 1)):
        return ("batch",)
    return ("batch", "sequential")


def _blas_one(g: _Geom) -> tuple[str, str]:
    """Code that holds OpenBLAS to one thread around a parallel region of per-image gemms, and
    restores it: only needed when a per-image gemm is above OpenBLAS' own threading threshold."""
    if g.o * g.p * g.k <= SMALL_GEMM:
        return "", ""
    return ("const int blas_nt = par ? scipy_openblas_get_num_threads() : 1;\n"
            "  if (par && blas_nt > 1) scipy_openblas_set_num_threads(1);",
            "if (par && blas_nt > 1) scipy_openblas_set_num_threads(blas_nt);")


_OMP_MAX = """#ifndef GC_OMP_MAX_THREADS_
#define GC_OMP_MAX_THREADS_
static inline int omp_max_threads_(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
#endif
"""


def _conv_kernel(em, name, index, g: _Geom, ct: str, what: str, head: str, helpers: str, *,
                 col: int, acc: int, per_image: str, per_image_seq: str, schedules: tuple[str, ...],
                 before: str = "", after: str = "", after_seq: str | None = None, blas: bool = True) -> str:
    """The common frame of the three conv kernels: scratch (per-thread column matrix and padded
    stage; weight-gradient partial sums) from one malloc, then the image loop in one or both
    schedules. `per_image` uses `n`, `col`, `stage` and `acc`; `per_image_seq` is the sequential
    schedule's body (channel or row loops parallel inside).

    Images are handed out dynamically, one at a time: a thread that wakes late (idle OpenMP
    workers sleep, and waking one on a VM can take as long as a LeNet layer) then costs little,
    because the others keep taking images. With `acc` (the weight gradient) the images go out in
    chunks, each chunk summing into its own partial; `after` adds the partials in chunk order, so
    the result does not depend on which thread took which chunk."""
    _, fail = _oom(em, index, what)
    stage = g.stage
    per = col + stage
    blas_on, blas_off = _blas_one(g) if blas else ("", "")
    before = before.replace("FAIL", fail)
    macs = g.o * g.p * g.k
    if acc:
        loop_body = f"""    #pragma omp for schedule(dynamic, 1)
    for (int64_t ch = 0; ch < nch; ch++) {{
      {ct} *acc = scratch + per*(size_t)nt + (size_t)ch*{acc};
      for (int64_t n = ch*N/nch; n < (ch + 1)*N/nch; n++) {{
{per_image}
      }}
    }}"""
    else:
        loop_body = f"""    #pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < N; n++) {{
{per_image}
    }}"""
    batch = f"""  const int par = (N > 1 && N*{macs}LL > {PAR_MIN_MACS}LL);
  const int nt = par ? (omp_max_threads_() < N ? omp_max_threads_() : (int)N) : 1;
  const int64_t nch = {"par ? (N < 4*nt ? N : 4*nt) : 1" if acc else "0"};
  const size_t per = {per}, scratch_bytes = sizeof({ct}) * (per*(size_t)nt + (size_t)nch*{acc});
  {ct} *scratch = scratch_bytes ? ({ct} *)malloc(scratch_bytes) : NULL;
  if (scratch_bytes && !scratch) {fail}
  for (int t = 0; t < nt; t++) memset(scratch + t*per + {col}, 0, sizeof({ct})*{stage});
  if (nch) memset(scratch + per*nt, 0, sizeof({ct})*(size_t)nch*{acc});
  {before}
  {blas_on}
  #pragma omp parallel num_threads(nt) if(par)
  {{
    const int t = gc_thread_num();
    {ct} *col = scratch + (size_t)t*per; {ct} *stage = col + {col};
    (void)col; (void)stage;
{loop_body}
  }}
  {blas_off}
  {after}
  free(scratch);"""
    sequential = f"""  const size_t scratch_bytes = sizeof({ct}) * (size_t)({per + acc});
  {ct} *scratch = scratch_bytes ? ({ct} *)malloc(scratch_bytes) : NULL;
  if (scratch_bytes && !scratch) {fail}
  if (scratch) memset(scratch + {col}, 0, sizeof({ct})*{stage + acc});
  {ct} *col = scratch, *stage = scratch + {col}, *acc = scratch + {col + stage};
  (void)col; (void)stage; (void)acc;
  {before}
  for (int64_t n = 0; n < N; n++) {{
{per_image_seq}
  }}
  {after if after_seq is None else after_seq}
  free(scratch);"""
    if schedules == ("batch",):
        loop = batch
    elif schedules == ("sequential",):
        loop = sequential
    else:
        loop = f"""  if (N >= omp_max_threads_()) {{
{batch}
  }} else {{
{sequential}
  }}"""
    return _fn(name, head + "\n" + loop, _OMP_MAX + helpers)


def _par_channels(g: _Geom, call: str) -> str:
    return f"""      #pragma omp parallel for if({g.k * g.p}LL > GC_PAR_MIN && {g.c} > 1) schedule(static)
      for (int64_t cc = 0; cc < {g.c}; cc++) {call};"""


def _direct_bodies(g: _Geom, name: str, ct: str, img: str, w: str, out: str) -> tuple[str, str]:
    """Per-image code calling the direct kernel: the whole image on one thread (batch schedule),
    or its output rows across threads (sequential schedule)."""
    stage = (f"      const {ct} *src[{g.c}];\n"
             f"      for (int64_t c = 0; c < {g.c}; c++) src[c] = {name}_stage({img}, stage, c);\n")
    batch = stage + f"      {name}_direct(src, {w}, {out}, 0, {g.ho});"
    seq = stage + f"""      #pragma omp parallel for if({g.o * g.p * g.k}LL > GC_PAR_MIN) schedule(static)
      for (int64_t oh = 0; oh < {g.ho}; oh++) {name}_direct(src, {w}, {out}, oh, oh + 1);"""
    return batch, seq


def _conv_forward(em, name, node, index, label=""):
    x, w = node.inputs
    y = node.outputs[0]
    ct = C_TYPES[x.dtype]
    _, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    g = _Geom(node.op, c, h, wd, o, *y.shape[2:], kh, kw)
    head = f"""  const {ct} *restrict x = {em.ptr(x)};
  const {ct} *restrict w = {em.ptr(w)};
  {ct} *restrict y = {em.ptr(y, const=False)};
  const int64_t N = {em.dim(x, 0)};
  if (N <= 0) return 0;"""
    xi, yi = f"x + n*{c * h * wd}LL", f"y + n*{o * g.p}LL"
    sched = _schedules(g, x.shape[0])
    if _use_direct(g, x.dtype):
        body, seq = _direct_bodies(g, name, ct, xi, "w", yi)
        return _conv_kernel(em, name, index, g, ct, "conv2d", head, _direct_fn(g, name, ct), col=0, acc=0,
                            per_image=body, per_image_seq=seq, schedules=sched, blas=False)
    gemm = _gemm(x.dtype, False, False, o, g.p, g.k, "w", g.k, f"({xi})" if g.trivial else "col", g.p, 0, yi)
    if g.trivial:
        body = f"      {gemm}"
        return _conv_kernel(em, name, index, g, ct, "conv2d", head, "", col=0, acc=0, per_image=body,
                            per_image_seq=body, schedules=sched)
    body = f"      {name}_im2col({xi}, col, stage, 0, {c});\n      {gemm}"
    seq = _par_channels(g, f"{name}_im2col({xi}, col, stage, cc, cc + 1)") + f"\n      {gemm}"
    return _conv_kernel(em, name, index, g, ct, "conv2d", head, _cols(g, name, ct, False), col=g.k * g.p,
                        acc=0, per_image=body, per_image_seq=seq, schedules=sched)


def _conv_grad_input(em, name, node, index, label=""):
    gy, w = node.inputs
    gx = node.outputs[0]
    ct = C_TYPES[gy.dtype]
    _, c, h, wd = gx.shape
    o, _, kh, kw = w.shape
    g = _Geom(node.op, c, h, wd, o, *gy.shape[2:], kh, kw)
    head = f"""  const {ct} *restrict gy = {em.ptr(gy)};
  const {ct} *restrict w = {em.ptr(w)};
  {ct} *restrict gx = {em.ptr(gx, const=False)};
  const int64_t N = {em.dim(gy, 0)};
  if (N <= 0) return 0;"""
    gxi, gyi = f"gx + n*{c * h * wd}LL", f"gy + n*{o * g.p}LL"
    what = "conv2d (input gradient)"
    sched = _schedules(g, gy.shape[0])
    t = g.transposed()
    if t is not None and _use_direct(t, gy.dtype):
        # the direct convolution of g[n] with the flipped, transposed weights (made once per call)
        before = f"""{ct} *wt = ({ct} *)malloc(sizeof({ct})*{o * g.k});
  if (!wt) {{ free(scratch); FAIL }}
  for (int64_t oo = 0; oo < {o}; oo++)
    for (int64_t cc = 0; cc < {c}; cc++)
      for (int64_t i = 0; i < {kh}; i++)
        for (int64_t j = 0; j < {kw}; j++)
          wt[((cc*{o} + oo)*{kh} + ({kh - 1} - i))*{kw} + ({kw - 1} - j)] = w[((oo*{c} + cc)*{kh} + i)*{kw} + j];"""
        body, seq = _direct_bodies(t, name, ct, gyi, "wt", gxi)
        return _conv_kernel(em, name, index, t, ct, what, head, _direct_fn(t, name, ct), col=0, acc=0,
                            per_image=body, per_image_seq=seq, schedules=sched, before=before, after="free(wt);",
                            blas=False)
    # col (K, P) = W^T (K, O) @ g[n] (O, P), summed back into gx[n]; a trivial geometry writes gx[n]
    gemm = _gemm(gy.dtype, True, False, g.k, g.p, o, "w", g.k, gyi, g.p, 0, f"({gxi})" if g.trivial else "col")
    if g.trivial:
        body = f"      {gemm}"
        return _conv_kernel(em, name, index, g, ct, what, head, "", col=0, acc=0, per_image=body,
                            per_image_seq=body, schedules=sched)
    body = f"      {gemm}\n      {name}_col2im({gxi}, col, stage, 0, {c});"
    seq = f"      {gemm}\n" + _par_channels(g, f"{name}_col2im({gxi}, col, stage, cc, cc + 1)")
    return _conv_kernel(em, name, index, g, ct, what, head, _cols(g, name, ct, True), col=g.k * g.p, acc=0,
                        per_image=body, per_image_seq=seq, schedules=sched)


def _conv_grad_weight(em, name, node, index, label=""):
    gy, x = node.inputs
    gw = node.outputs[0]
    ct = C_TYPES[gy.dtype]
    _, c, h, wd = x.shape
    o, _, kh, kw = gw.shape
    g = _Geom(node.op, c, h, wd, o, *gy.shape[2:], kh, kw)
    ok = o * g.k
    head = f"""  const {ct} *restrict gy = {em.ptr(gy)};
  const {ct} *restrict x = {em.ptr(x)};
  {ct} *restrict gw = {em.ptr(gw, const=False)};
  const int64_t N = {em.dim(gy, 0)};
  memset(gw, 0, sizeof({ct})*{ok}LL);
  if (N <= 0) return 0;"""
    xi = f"x + n*{c * h * wd}LL"
    colm = f"({xi})" if g.trivial else "col"
    # gW^T (K, O) += col (K, P) @ g[n]^T (P, O): as fast as or faster than gW += g[n] @ col^T on every
    # shape measured (LeNet's 16x100x150: 0.44 against 0.53 ms on one core). Each chunk of images
    # sums into its own (K, O) partial; the partials are added and transposed into gW at the end,
    # in chunk order (deterministic).
    gemm = _gemm(gy.dtype, False, True, g.k, o, g.p, colm, g.p, f"gy + n*{o * g.p}LL", g.p, 1, "acc")
    im2col = "" if g.trivial else f"      {name}_im2col({xi}, col, stage, 0, {c});\n"
    body = im2col + f"      {gemm}"
    seq = ("" if g.trivial else _par_channels(g, f"{name}_im2col({xi}, col, stage, cc, cc + 1)") + "\n") + \
        f"      {gemm}"
    col = 0 if g.trivial else g.k * g.p

    def transpose_add(part):
        return f"""{{ const {ct} *restrict part = {part};
    for (int64_t k = 0; k < {g.k}; k++)
      for (int64_t oo = 0; oo < {o}; oo++) gw[oo*{g.k} + k] += part[k*{o} + oo]; }}"""

    after = f"for (int64_t ch = 0; ch < nch; ch++) {transpose_add(f'scratch + per*(size_t)nt + (size_t)ch*{ok}')}"
    return _conv_kernel(em, name, index, g, ct, "conv2d (weight gradient)", head,
                        "" if g.trivial else _cols(g, name, ct, False), col=col, acc=ok, per_image=body,
                        per_image_seq=seq, schedules=_schedules(g, gy.shape[0]), after=after,
                        after_seq=transpose_add("acc"))


# -- pooling -----------------------------------------------------------------------------------


def _planes(em, v) -> str:
    return f"({em.dim(v, 0)})*{v.shape[1]}LL"


def _max_pool(em, name, node, index, label=""):
    x = node.inputs[0]
    y, idx = node.outputs
    op = node.op
    ct = C_TYPES[x.dtype]
    _, _, h, w = x.shape
    ho, wo = y.shape[2:]
    (kh, kw), (sh, sw), (pt, _, pl, _) = op.size, op.stride, op.padding
    head = f"""  const {ct} *restrict x = {em.ptr(x)};
  {ct} *restrict y = {em.ptr(y, const=False)};
  int32_t *restrict ix = {em.ptr(idx, const=False)};
  enum {{ H = {h}, W = {w}, HO = {ho}, WO = {wo}, KH = {kh}, KW = {kw}, SH = {sh}, SW = {sw}, PT = {pt}, PL = {pl} }};
  const int64_t planes = {_planes(em, x)};
  #pragma omp parallel for if(planes*HO*WO*KH*KW > GC_PAR_MIN) schedule(static)
  for (int64_t q = 0; q < planes; q++) {{
    const {ct} *restrict xp = x + q*(H*W);
    {ct} *restrict yq = y + q*(HO*WO);
    int32_t *restrict iq = ix + q*(HO*WO);"""
    if not any(op.padding):
        # every window lies inside the input: one output row at a time, vectorised over its
        # columns, the window's elements visited in row-major order (the first maximum wins)
        body = head + f"""
    for (int64_t oh = 0; oh < HO; oh++) {{
      {ct} *restrict best = yq + oh*WO;
      int32_t *restrict at = iq + oh*WO;
      #pragma omp simd
      for (int64_t ow = 0; ow < WO; ow++) {{ best[ow] = xp[oh*SH*W + ow*SW]; at[ow] = (int32_t)(oh*SH*W + ow*SW); }}
      for (int64_t i = 0; i < KH; i++)
        for (int64_t j = 0; j < KW; j++) {{
          if (i == 0 && j == 0) continue;
          const int64_t base = (oh*SH + i)*W + j;
          #pragma omp simd
          for (int64_t ow = 0; ow < WO; ow++) {{
            const {ct} v = xp[base + ow*SW], b = best[ow];
            const int up = (v > b) | ((v != v) & (b == b));  /* the first NaN wins */
            best[ow] = up ? v : b;
            at[ow] = up ? (int32_t)(base + ow*SW) : at[ow];
          }}
        }}
    }}
  }}"""
        return _fn(name, body)
    body = head + f"""
    for (int64_t oh = 0; oh < HO; oh++) {{
      const int64_t h0 = oh*SH - PT, h1 = h0 + KH;
      const int64_t ha = h0 < 0 ? 0 : h0, hb = h1 > H ? H : h1;
      for (int64_t ow = 0; ow < WO; ow++) {{
        const int64_t w0 = ow*SW - PL, w1 = w0 + KW;
        const int64_t wa = w0 < 0 ? 0 : w0, wb = w1 > W ? W : w1;
        int64_t at = ha*W + wa;
        {ct} best = xp[at];
        for (int64_t ih = ha; ih < hb; ih++)
          for (int64_t iw = wa; iw < wb; iw++) {{
            const {ct} v = xp[ih*W + iw];
            if (v > best || (v != v && best == best)) {{ best = v; at = ih*W + iw; }}  /* the first NaN wins */
          }}
        yq[oh*WO + ow] = best;
        iq[oh*WO + ow] = (int32_t)at;
      }}
    }}
  }}"""
    return _fn(name, body)


def _max_pool_grad(em, name, node, index, label=""):
    g, idx = node.inputs
    gx = node.outputs[0]
    ct = C_TYPES[g.dtype]
    h, w = node.op.in_hw
    per = g.shape[2] * g.shape[3]
    body = f"""  const {ct} *restrict g = {em.ptr(g)};
  const int32_t *restrict ix = {em.ptr(idx)};
  {ct} *restrict gx = {em.ptr(gx, const=False)};
  const int64_t planes = {_planes(em, g)};
  #pragma omp parallel for if(planes*{h * w}LL > GC_PAR_MIN) schedule(static)
  for (int64_t q = 0; q < planes; q++) {{
    {ct} *restrict dst = gx + q*{h * w}LL;
    const {ct} *restrict src = g + q*{per}LL;
    const int32_t *restrict at = ix + q*{per}LL;
    memset(dst, 0, sizeof({ct})*{h * w}LL);
    for (int64_t p = 0; p < {per}; p++) dst[at[p]] += src[p];
  }}"""
    return _fn(name, body)


def _avg_pool_common(op, in_hw, out_hw):
    h, w = in_hw
    ho, wo = out_hw
    (kh, kw), (sh, sw), (pt, pb, pl, pr) = op.size, op.stride, op.padding
    enum = (f"enum {{ H = {h}, W = {w}, HO = {ho}, WO = {wo}, KH = {kh}, KW = {kw}, SH = {sh}, SW = {sw}, "
            f"PT = {pt}, PL = {pl}, HP = {h + pb}, WP = {w + pr} }};")
    # the divisor of window (oh, ow): the whole window, or only its elements inside the input
    if op.count_include_pad:
        div = "(KH*KW)"
    else:
        div = "((hb - ha)*(wb - wa))"
    return enum, div


_WINDOW = """const int64_t h0 = oh*SH - PT, ha = h0 < 0 ? 0 : h0, hb = h0 + KH > H ? H : h0 + KH;
        const int64_t w0 = ow*SW - PL, wa = w0 < 0 ? 0 : w0, wb = w0 + KW > W ? W : w0 + KW;"""


def _avg_pool_grad(em, name, node, index, label=""):
    g = node.inputs[0]
    gx = node.outputs[0]
    ct = C_TYPES[g.dtype]
    enum, div = _avg_pool_common(node.op, gx.shape[2:], g.shape[2:])
    body = f"""  const {ct} *restrict g = {em.ptr(g)};
  {ct} *restrict gx = {em.ptr(gx, const=False)};
  {enum}
  const int64_t planes = {_planes(em, g)};
  #pragma omp parallel for if(planes*HO*WO*KH*KW > GC_PAR_MIN) schedule(static)
  for (int64_t q = 0; q < planes; q++) {{
    {ct} *restrict dst = gx + q*(H*W);
    const {ct} *restrict src = g + q*(HO*WO);
    memset(dst, 0, sizeof({ct})*(H*W));
    for (int64_t oh = 0; oh < HO; oh++)
      for (int64_t ow = 0; ow < WO; ow++) {{
        {_WINDOW}
        const {ct} v = src[oh*WO + ow] / ({ct}){div};
        for (int64_t ih = ha; ih < hb; ih++)
          for (int64_t iw = wa; iw < wb; iw++) dst[ih*W + iw] += v;
      }}
  }}"""
    return _fn(name, body)


OPS = {
    Conv2D: _conv_forward,
    Conv2DGradInput: _conv_grad_input,
    Conv2DGradWeight: _conv_grad_weight,
    MaxPool2D: _max_pool,
    MaxPool2DGrad: _max_pool_grad,
    AvgPool2DGrad: _avg_pool_grad,
}
