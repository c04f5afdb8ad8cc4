"""gc_main and what the C program needs around its kernels: the step table that runs them, and
the vector-function wrappers that large sources call instead of inlining each math call."""

from __future__ import annotations

import re

#: math call sites (gc_tanhf, gc_exp, ...) up to which each is inlined; beyond, every call goes
#: to one vector function per math function (see `math_calls`)
INLINE_MATH_MAX = 64

_MATH_FUNCTIONS = ("exp", "expm1", "log", "log1p", "tanh", "sigmoid", "softplus", "sin", "cos")
_MATH_CALL = re.compile(r"\bgc_(" + "|".join(_MATH_FUNCTIONS) + r")(f?)\(")


def math_calls(code: str, limit: int | None = None) -> tuple[str, str]:
    """(code, definitions): with more than `limit` (INLINE_MATH_MAX) math calls, each call in
    `code` is renamed to a non-inlined `#pragma omp declare simd` wrapper (one per function
    used, defined in the returned definitions), so that a vectorised loop calls the vector
    clone instead of inlining the function's ~50 instructions. gcc's time grows with each
    inlined copy (92% of a 2,000-op chain's build was expanding them); the wrappers are compiled
    once. Small sources keep the inlined calls: they run faster in loops of several ops.

    >>> code, defs = math_calls("y = gc_tanhf(x) + gc_exp(z);", limit=1)
    >>> code
    'y = gcv_tanhf(x) + gcv_exp(z);'
    >>> "float gcv_tanhf(float x) { return gc_tanhf(x); }" in defs
    True
    >>> math_calls("y = gc_tanhf(x);", limit=1)
    ('y = gc_tanhf(x);', '')
    """
    limit = INLINE_MATH_MAX if limit is None else limit
    used = _MATH_CALL.findall(code)
    if len(used) <= limit:
        return code, ""
    defs = [f"/* {len(used)} math calls (more than {limit}): each calls a vector function, not an inlined copy */"]
    for name, f in sorted(set(used)):
        ct = "float" if f else "double"
        defs.append(f"#pragma omp declare simd notinbranch\n"
                    f"static __attribute__((noinline)) {ct} gcv_{name}{f}({ct} x) {{ return gc_{name}{f}(x); }}")
    return _MATH_CALL.sub(lambda m: f"gcv_{m.group(1)}{m.group(2)}(", code), "\n".join(defs) + "\n"


def step_table(steps, kernel_function: list[str], kernels, pre: list[str], post: list[str]) -> str:
    """gc_main as data: one row per kernel (its function and where its B and D arguments start in
    `gc_bargs`/`gc_dargs`) run by one loop. Straight-line calls made gc_main grow with the graph,
    and gcc's time on it with them (tens of thousands of kernels in a 10,000-layer network); a
    table is data, compiled in no time. The loop costs a few pointer copies per kernel."""
    fns = list(dict.fromkeys(kernel_function))
    index = {name: j for j, name in enumerate(fns)}
    rows, bargs, dargs = [], [], []
    max_b = max_d = 1
    for i, ((_, b, d), k) in enumerate(zip(steps, kernels)):
        name = kernel_function[i]
        label = k.label if len(k.label) <= 60 else k.label[:57] + "..."
        label = label.replace("*/", "* /")
        if b is None:
            rows.append(f"  {{{index[name]}, 0, -1, 0, 0}},  /* k{i}: {label} */")
            continue
        same = "" if name == f"k{i}" else f", code of {name}"
        rows.append(f"  {{{index[name]}, {len(bargs)}, {len(b)}, {len(dargs)}, {len(d)}}},  /* k{i}{same}: {label} */")
        bargs.extend(b)
        dargs.extend(d)
        max_b, max_d = max(max_b, len(b)), max(max_d, len(d))
    n = len(rows)
    out = ["typedef int (*gc_kernel_fn)(void **restrict, const int64_t *restrict);",
           f"static const gc_kernel_fn gc_fns[{max(len(fns), 1)}] = {{{', '.join(fns) or '0'}}};",
           "/* per kernel: function, first B argument, B count (-1: the whole tables), first D argument, D count */",
           f"static const int32_t gc_steps[{max(n, 1)}][5] = {{", *(rows or ["  {0, 0, 0, 0, 0}"]), "};",
           f"static const int32_t gc_bargs[{max(len(bargs), 1)}] = {{{_int_list(bargs)}}};",
           f"static const int32_t gc_dargs[{max(len(dargs), 1)}] = {{{_int_list(dargs)}}};",
           "",
           "int gc_main(void **B, const int64_t *D) {",
           "  int rc = 0;",
           f"  void *b[{max_b}]; int64_t d[{max_d}];",
           *pre,
           f"  for (int32_t s = 0; s < {n}; s++) {{",
           "    const int32_t *st = gc_steps[s];",
           "    GC_TIC;",
           "    if (st[2] < 0) rc = gc_fns[st[0]](B, D);",
           "    else {",
           "      for (int32_t j = 0; j < st[2]; j++) b[j] = B[gc_bargs[st[1] + j]];",
           "      for (int32_t j = 0; j < st[4]; j++) d[j] = D[gc_dargs[st[3] + j]];",
           "      rc = gc_fns[st[0]](b, d);",
           "    }",
           "    if (rc != 0) return rc;",
           "    GC_TOC(s);",
           "  }",
           *post,
           "  return rc;",
           "}"]
    return "\n".join(out) + "\n"


def _int_list(values: list[int]) -> str:
    """Comma-separated, 32 to a line (a 10,000-layer network has ~10^5 arguments)."""
    if not values:
        return "0"
    return ",\n  ".join(", ".join(map(str, values[j:j + 32])) for j in range(0, len(values), 32))
