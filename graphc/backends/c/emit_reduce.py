"""C for reduce kernels: sum/max/min over any axes, with a fused elementwise prologue.

Axes collapse into alternating kept/reduced runs. The loop order always follows the input's
memory order; the parallel axis depends on the pattern:
- a kept axis first: threads split it (disjoint outputs), a reduced innermost run accumulates in
  a local (double for float32 sums) vectorised with an OpenMP simd reduction;
- everything reduced, or reduced then kept (column sums): partials of fixed pieces of the rows,
  taken by whichever thread is free and combined in piece order (the result does not depend on
  the thread count or on a worker woken late); column blocks per thread when the partial rows
  would not fit.
"""

from __future__ import annotations

from ...lower import Kernel
from ..cexpr import C_TYPES
from ..cfamily.emitter import reduce_identity

BLOCK = 256
#: fixed pieces of a full or column reduction: the partials' count, and so the rounding, does
#: not depend on how many threads run or which of them is late
PIECES = 16
PARTS_BYTES = 4 << 20  # the most memory the partial rows of a column reduction take
ROWS = 8  # input rows a column reduction adds per pass over its partial row (a power of two)
SPAN = 256  # rows a float32 column sum adds in float32 before folding them into double


def _combine(kind: str, dtype: str, acc: str, v: str) -> str:
    if kind == "sum":
        return f"{acc} + {v}"
    cmp = ">" if kind == "max" else "<"
    if dtype.startswith("float"):  # NaN wins, as in NumPy
        return f"(({v}) {cmp} ({acc}) || ({v}) != ({v})) ? ({v}) : ({acc})"
    return f"(({v}) {cmp} ({acc})) ? ({v}) : ({acc})"


def _accumulate(kind: str, dtype: str, value: str) -> tuple[str, str, str, str]:
    """A vectorisable loop accumulating `value` into `acc`: (declarations, loop pragma, loop
    statement, statement after the loop). A float max/min is an OpenMP max/min reduction plus a
    separate NaN flag (NumPy's NaN propagation): the select that checks for NaN inside the
    reduction kept gcc from vectorising it."""
    if kind == "sum":
        return "", "omp simd reduction(+:acc)", f"acc = acc + {value};", ""
    cmp = ">" if kind == "max" else "<"
    if dtype.startswith("float"):
        return ("int nan = 0;\n", f"omp simd reduction({kind}:acc) reduction(|:nan)",
                f"{{ const {C_TYPES[dtype]} r_ = {value}; acc = (r_ {cmp} acc) ? r_ : acc; nan |= (r_ != r_); }}",
                "if (nan) acc = NAN;\n")
    return "", f"omp simd reduction({kind}:acc)", f"acc = (({value}) {cmp} acc) ? ({value}) : acc;", ""


def _indent(text: str, extra: int) -> str:
    return "\n".join(" " * extra + ln for ln in text.split("\n"))


def reduce_kernel(em, name: str, k: Kernel) -> str:
    node = k.nodes[-1]
    op = node.op
    x = node.inputs[0]
    out = node.outputs[0]
    kind, dtype = op.kind, out.dtype
    ct = C_TYPES[dtype]
    acc_t = "double" if (kind == "sum" and dtype == "float32") else ct
    reduced_mask = tuple(a in op.axes for a in range(x.ndim))
    operands = [v for v in k.inputs]
    sizes, offset, groups = em.loop_nest(x, operands, masks={"reduced": reduced_mask})
    flags = [reduced_mask[g[-1]] for g in groups]
    decls, names = em.local_pointers(k.inputs, [])
    body, values = em.body(k.nodes[:-1], k.inputs, offset, names)
    value = values[id(x)]
    optr = em.ptr(out, const=False)
    kept = [j for j, f in enumerate(flags) if not f]
    ostride = {}
    for j in kept:
        later = [sizes[m] for m in kept if m > j]
        ostride[j] = "*".join(f"({s})" for s in later) if later else "1"
    oidx = " + ".join(f"i{j}*{ostride[j]}" if ostride[j] != "1" else f"i{j}" for j in kept) or "0"
    total = "*".join(f"({s})" for s in sizes) or "1"
    osize = em.size(out)
    ident = reduce_identity(kind, dtype)
    head = f"static int {name}(void **restrict B, const int64_t *restrict D) {{\n  (void)B; (void)D;\n"
    prelude: list[str] = []  # functions the kernel hands to the pool, emitted before it
    lines = [f"  {d}" for d in decls] + [f"  {ct} *restrict o = {optr};"]
    n = len(groups)
    stmts = "\n".join("      " + ln for ln in body)

    def loop(j, inner, pragma=""):
        p = f"#pragma {pragma}\n" if pragma else ""
        return f"{p}for (int64_t i{j} = 0; i{j} < ({sizes[j]}); i{j}++) {{\n{inner}\n}}"

    if n == 0:
        lines.append(f"  {{\n{stmts}\n    o[0] = {value};\n  }}")
    elif not flags[0]:
        # kept axis first: parallel over it; each output element is owned by one thread
        lines.append(f"  for (int64_t j = 0; j < ({osize}); j++) o[j] = {ident};")
        if flags[-1]:
            decl, simd, step, after = _accumulate(kind, dtype, value)
            inner = f"{acc_t} acc = {ident};\n{decl}" + loop(n - 1, f"{stmts}\n{step}", simd) + \
                f"\n{after}o[{oidx}] = {_combine(kind, dtype, f'o[{oidx}]', 'acc')};"
            code = inner
            for j in reversed(range(n - 1)):
                code = loop(j, code, f"omp parallel for if(({total}) > GC_PAR_MIN) schedule(guided)" if j == 0 else "")
        else:
            code = f"{stmts}\no[{oidx}] = {_combine(kind, dtype, f'o[{oidx}]', value)};"
            for j in reversed(range(n)):
                pragma = "omp simd" if j == n - 1 and n > 1 else ""
                if j == 0:
                    pragma = f"omp parallel for if(({total}) > GC_PAR_MIN) schedule(guided)"
                code = loop(j, code, pragma)
        lines.append(code)
    elif n == 1:
        # everything reduced: partials over PIECES fixed pieces, handed to whichever thread is
        # free, combined in piece order: the same result for any thread count or timing
        decl, simd, step, after = _accumulate(kind, dtype, value)
        lines.append(f"""  {acc_t} parts[{PIECES}];
  const int64_t count = {sizes[0]};
  #pragma omp parallel for if(({total}) > GC_PAR_MIN) schedule(dynamic, 1)
  for (int q = 0; q < {PIECES}; q++) {{
    {acc_t} acc = {ident};
    {decl}const int64_t lo = count * q / {PIECES}, hi = count * (q + 1) / {PIECES};
    #pragma {simd}
    for (int64_t i0 = lo; i0 < hi; i0++) {{
{stmts}
      {step}
    }}
    {after}parts[q] = acc;
  }}
  {acc_t} total = {ident};
  for (int q = 0; q < {PIECES}; q++) total = {_combine(kind, dtype, "total", "parts[q]")};
  o[0] = ({ct})total;""")
    elif n == 2 and flags == [True, False]:
        # reduced then kept (column reductions, a bias gradient): the rows are cut into up to
        # PIECES fixed pieces, each streamed whole rows at a time (memory order) into its own
        # partial row by whichever thread is free, and the partials are combined in piece order
        # (the same result for any thread count or timing). With too little memory for the
        # partials, threads own blocks of output columns instead.
        # A float32 sum adds its rows in float32 for SPAN rows at a time (as NumPy's column
        # sums do; a double partial row took twice the cache traffic and a conversion per
        # element: 1.8x NumPy's time on one thread), then folds that block row into the piece's
        # double row, so the float32 error stays that of SPAN rows for any number of rows (a
        # float32 row per piece lost 1e-3 of the sum at 2^24 rows). ROWS rows go at a time: the
        # block row is loaded and stored once per ROWS input rows (a standalone C test on one
        # core: 13.5 GB/s one row at a time, 26 with four, 28 with eight). Each row's prologue
        # runs in its own C block with its own i0.
        two_level = acc_t != ct
        acc_upd = _combine(kind, dtype, "a[i1]", value)
        upd = _combine(kind, dtype, "o[i1]", value)
        group = "\n".join(f"            {{ const int64_t i0 = r0 + {u};\n{_indent(stmts, 6)}\n"
                          f"              s{u} = {value}; }}" for u in range(ROWS))
        if kind == "sum":
            terms = [f"s{u}" for u in range(ROWS)]
            while len(terms) > 1:  # a pairwise tree: ((s0 + s1) + (s2 + s3)) + ...
                terms = [f"({a} + {b})" for a, b in zip(terms[::2], terms[1::2])]
            group_upd = f"a[i1] = a[i1] + {terms[0]};"
        else:  # one statement per row: nesting the select would double the text per row
            group_upd = f"{ct} m = a[i1]; " + " ".join(f"m = {_combine(kind, dtype, 'm', f's{u}')};"
                                                      for u in range(ROWS)) + " a[i1] = m;"
        # the piece's row (`d`, acc_t) and the row the rows go into (`a`): one row unless two_level
        rows_decl = (f"{acc_t} *restrict d = parts + q * C;\n        {ct} *restrict a = blocks + q * C;\n"
                     f"        for (int64_t j = 0; j < C; j++) d[j] = {ident};") if two_level else \
            (f"{acc_t} *restrict a = parts + q * C;\n        for (int64_t j = 0; j < C; j++) a[j] = {ident};")
        block_start = f"for (int64_t j = 0; j < C; j++) a[j] = {ident};" if two_level else ""
        block_fold = ("#pragma omp simd\n          for (int64_t j = 0; j < C; j++) d[j] = d[j] + "
                      f"({acc_t})a[j];") if two_level else ""
        blocks_alloc = (f"{ct} *blocks = parts != NULL ? ({ct} *)malloc(sizeof({ct}) * (size_t)(pieces * C)) : NULL;\n"
                        "  if (blocks == NULL) { free(parts); parts = NULL; }") \
            if two_level else f"{ct} *blocks = NULL;"
        # the pieces run through graphc's pool (gc_pool.h: the caller starts at once, a worker
        # joins when it arrives), so the piece is its own function of a context
        piece_decls = "".join(f"  {d}\n" for d in decls)
        prelude.append(f"""typedef struct {{
  void **B; const int64_t *D; {acc_t} *parts; {ct} *blocks; int64_t pieces;
}} {name}_ctx;
static void {name}_piece(void *ctx, int64_t q, int slot) {{
  const {name}_ctx *cx = (const {name}_ctx *)ctx;
  void **restrict B = cx->B; const int64_t *restrict D = cx->D;
  (void)B; (void)D; (void)slot;
{piece_decls}  const int64_t R = ({sizes[0]}), C = ({sizes[1]}), pieces = cx->pieces;
  {acc_t} *restrict parts = cx->parts;
  {ct} *restrict blocks = cx->blocks; (void)blocks;
  {rows_decl}
  const int64_t lo = R * q / pieces, hi = R * (q + 1) / pieces;
  for (int64_t b0 = lo; b0 < hi; b0 += {SPAN}) {{
    const int64_t b1 = b0 + {SPAN} < hi ? b0 + {SPAN} : hi;
    int64_t r0 = b0;
    {block_start}
    for (; r0 + {ROWS} <= b1; r0 += {ROWS}) {{
      #pragma omp simd
      for (int64_t i1 = 0; i1 < C; i1++) {{
        {ct} {", ".join(f"s{u}" for u in range(ROWS))};
{group}
        {group_upd}
      }}
    }}
    for (int64_t i0 = r0; i0 < b1; i0++) {{
      #pragma omp simd
      for (int64_t i1 = 0; i1 < C; i1++) {{
{stmts}
        a[i1] = {acc_upd};
      }}
    }}
    {block_fold}
  }}
}}
""")
        lines.append(f"""  const int64_t R = ({sizes[0]}), C = ({sizes[1]});
  /* pieces: at most {PIECES}, one per row at most, their partial rows within {PARTS_BYTES >> 20} MiB */
  int64_t pieces = R < {PIECES} ? R : {PIECES};
  while (pieces > 1 && pieces * C * (int64_t)sizeof({acc_t}) > {PARTS_BYTES}LL) pieces /= 2;
  {acc_t} *parts = pieces > 1 ? ({acc_t} *)malloc(sizeof({acc_t}) * (size_t)(pieces * C)) : NULL;
  {blocks_alloc}
  if (parts != NULL) {{
    {name}_ctx cx = {{B, D, parts, blocks, pieces}};
    gc_pool_jobs(({total}) > GC_PAR_MIN ? gc_max_threads() : 1, pieces, {name}_piece, &cx);
    #pragma omp parallel for if(pieces * C > GC_PAR_MIN) schedule(static)
    for (int64_t j = 0; j < C; j++) {{
      {acc_t} r = {ident};
      for (int64_t q = 0; q < pieces; q++) r = {_combine(kind, dtype, "r", "parts[q * C + j]")};
      o[j] = ({ct})r;
    }}
    free(parts);
    {"free(blocks);" if two_level else ""}
    return 0;
  }}
  for (int64_t j = 0; j < ({osize}); j++) o[j] = {ident};
  #pragma omp parallel for if(({total}) > GC_PAR_MIN) schedule(guided)
  for (int64_t jb = 0; jb < ({sizes[1]}); jb += {BLOCK}) {{
    int64_t jend = jb + {BLOCK} < ({sizes[1]}) ? jb + {BLOCK} : ({sizes[1]});
    for (int64_t i0 = 0; i0 < ({sizes[0]}); i0++) {{
      #pragma omp simd
      for (int64_t i1 = jb; i1 < jend; i1++) {{
{stmts}
        o[i1] = {upd};
      }}
    }}
  }}""")
    elif flags[-1] and kept:
        # reduced, kept, ..., reduced (per-channel sums of NCHW tensors, such as a conv bias
        # gradient): threads own values of the first kept axis, which moves outermost; the
        # innermost reduced run accumulates in a local (vectorised), in memory order
        first = kept[0]
        decl, simd, step, after = _accumulate(kind, dtype, value)
        lines.append(f"  for (int64_t j = 0; j < ({osize}); j++) o[j] = {ident};")
        code = f"{acc_t} acc = {ident};\n{decl}" + loop(n - 1, f"{stmts}\n{step}", simd) + \
            f"\n{after}o[{oidx}] = {_combine(kind, dtype, f'o[{oidx}]', 'acc')};"
        for j in reversed([m for m in range(n - 1) if m != first]):
            code = loop(j, code)
        lines.append(loop(first, code, f"omp parallel for if(({total}) > GC_PAR_MIN) schedule(guided)"))
    else:
        lines.append(f"  for (int64_t j = 0; j < ({osize}); j++) o[j] = {ident};")
        code = f"{stmts}\no[{oidx}] = {_combine(kind, dtype, f'o[{oidx}]', value)};"
        for j in reversed(range(n)):
            code = loop(j, code)
        lines.append(code)
    return "".join(prelude) + head + "\n".join(lines) + "\n  return 0;\n}"
