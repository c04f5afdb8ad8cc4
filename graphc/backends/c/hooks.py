"""The C (OpenMP) language hooks of the C-family templates (`graphc.backends.cfamily`)."""

from __future__ import annotations

from collections.abc import Callable

from ...core import Var
from ..cexpr import C_TYPES
from ..cfamily.emitter import KernelError

HEAD = "static int {name}(void **restrict B, const int64_t *restrict D) {{\n  (void)B; (void)D;\n"


def c_function(name: str, body: str) -> str:
    """A kernel function: B (buffers) and D (integers) in, 0 or an error code out."""
    return HEAD.format(name=name) + body + "\n  return 0;\n}"


def gemm_call(dtype: str, ta: bool, tb: bool, n, m, k, alpha: str, a: str, lda, b: str, ldb, beta: float,
              c: str) -> str:
    """One float gemm statement, C = alpha op(a) op(b) + beta C, row-major with ldc = m:
    graphc's own kernel for float32 (kernels/gc_gemm.h, which falls back to OpenBLAS itself),
    OpenBLAS for float64. Sizes are C expressions; they fit an int (checked before the call).

    >>> gemm_call("float32", False, True, "n", "m", "kk", "1.0f", "x", "kk", "w", "kk", 0, "y")
    'gc_sgemm(0, 1, n, m, kk, 1.0f, x, kk, w, kk, 0.0f, y);'
    """
    if dtype == "float32":
        return f"gc_sgemm({int(ta)}, {int(tb)}, {n}, {m}, {k}, {alpha}, {a}, {lda}, {b}, {ldb}, {float(beta)!r}f, {c});"
    t = {False: "GC_NO_TRANS", True: "GC_TRANS"}
    return (f"scipy_cblas_dgemm(GC_ROW_MAJOR, {t[ta]}, {t[tb]}, (int)({n}), (int)({m}), (int)({k}), {alpha}, {a}, "
            f"(int)({lda}), {b}, (int)({ldb}), {float(beta)!r}, {c}, (int)({m}));")


class CHooks:
    """Mixed into CEmitter: how C spells each hook a template calls. Parallel loops hand out
    work with `schedule(guided)`: a worker that the OS wakes late (a sleeping vCPU takes hundreds
    of microseconds on a VM) then finds the caller's thread already through most of the loop,
    instead of the whole region waiting for its fixed half."""

    restrict = "restrict"

    def kernel(self, name: str, body: str, label: str, work: Callable, index: int, launch=None) -> str:
        return c_function(name, body)

    def once(self, stmt: str) -> str:
        return f"  {stmt}\n"

    def flat_loop(self, total: str, stmt: str, cost: int = 1, var: str = "i") -> str:
        """Threads over `var` < total when the work (`cost` per element) is worth waking them."""
        limit = "GC_PAR_MIN" if cost == 1 else f"GC_PAR_MIN / {cost}"
        return (f"  #pragma omp parallel for if(({total}) > {limit}) schedule(guided)\n"
                f"  for (int64_t {var} = 0; {var} < ({total}); {var}++) {{ {stmt} }}\n")

    def rows_loop(self, rows: str, cols: str, stmt: str, pre: str = "") -> str:
        """Threads over rows r, a vectorisable inner loop over q (`pre` once per row)."""
        return (f"  #pragma omp parallel for if(({rows})*({cols}) > GC_PAR_MIN) schedule(guided)\n"
                f"  for (int64_t r = 0; r < ({rows}); r++) {{\n" + (f"    {pre}\n" if pre else "")
                + f"    for (int64_t q = 0; q < ({cols}); q++) {{ {stmt} }}\n  }}\n")

    def nd_loop(self, sizes: list[str], stmt: str) -> str:
        code = stmt
        for j in reversed(range(len(sizes))):
            code = f"for (int64_t i{j} = 0; i{j} < {sizes[j]}; i{j}++) {{ {code} }}"
        return f"  {code}\n"

    def zero(self, v: Var, index: int) -> str:
        return f"  memset({self.ptr(v, const=False)}, 0, sizeof({C_TYPES[v.dtype]})*({self.size(v)}));\n"

    def index_check(self, idx: Var, size: str, size_fn: Callable, index: int, op: str, axis: int) -> str:
        """Refuse out-of-range indices before anything is written: the kernel returns its code,
        the first bad index and the size go to the error details (GC_ERR) for the message."""
        code = (index + 1) << 4 | 1
        self.errors[code] = KernelError(IndexError, f"{op}: index {{0}} is out of range for axis {axis} of size {{1}}",
                                        index)
        return f"""  {{ const {C_TYPES[idx.dtype]} *restrict ix = {self.ptr(idx)}; const int64_t ni = {self.size(idx)};
    int64_t bad = 0;
    for (int64_t j = 0; j < ni; j++) bad |= (ix[j] < -({size})) | (ix[j] >= ({size}));
    if (bad) {{
      for (int64_t j = 0; j < ni; j++)
        if (ix[j] < -({size}) || ix[j] >= ({size})) {{ GC_ERR[0] = (int64_t)ix[j]; GC_ERR[1] = {size}; break; }}
      return {code};
    }} }}
"""

    # -- lines: one thread per line, SIMD along it ------------------------------------------------
    def line_loop(self, name: str, count: str, work: str, fns, reductions, body: str) -> str:
        return (f"  #pragma omp parallel for if(({work}) > GC_PAR_MIN) schedule(guided)\n"
                f"  for (int64_t line = 0; line < ({count}); line++) {{\n    const int ok = 1; (void)ok;\n"
                + body + "  }\n")

    def line_reduce(self, kind: str, var: str, ty: str, n: str, expr: str, each: str = "") -> str:
        init, clause, combine = ("-INFINITY", "max", f"{var} = v > {var} ? v : {var};") if kind == "max" else \
            ("0", "+", f"{var} += v;")
        return (f"    {ty} {var} = {init};\n    #pragma omp simd reduction({clause}:{var})\n"
                f"    for (int64_t j = 0; j < ({n}); j++) {{ const {ty} v = {expr}; {each} {combine} }}\n")

    def line_argmax(self, best: str, at: str, ty: str, n: str, expr: str) -> str:
        return (f"    {ty} {best} = 0; int64_t {at} = -1;  /* -1: no element seen yet */\n"
                f"    for (int64_t j = 0; j < ({n}); j++) {{ const {ty} v = {expr};\n"
                f"      if ({at} < 0 || v > {best} || (v != v && {best} == {best})) {{ {best} = v; {at} = j; }} }}\n")

    def line_each(self, n: str, stmt: str) -> str:
        return f"    for (int64_t j = 0; j < ({n}); j++) {{ {stmt} }}\n"

    def line_once(self, stmt: str) -> str:
        return f"    {stmt}\n"

    def wide(self, ty: str) -> str:
        return "double"  # sums of exponentials: cheap on a CPU, and float rows may be long

    def line_launch(self, fns) -> None:
        return None
