"""C for scan: the step graph is compiled like any function body, and one C loop calls it.

The whole loop runs inside the program's single native call: no Python and no cffi call per
step. The step graph is optimised, scheduled and memory-planned on its own, then emitted as
static functions (`<kernel>_k<i>`, `<kernel>_main`) with its own pointer table `SB` and integer
table `SD`. Per step the loop only re-points `SB`'s entries:

- a sequence slice is ``base + s * step_bytes`` (s = t, or T-1-t with go_backwards);
- a stacked output is written in place at ``base + t * step_bytes``, and the next step reads its
  state right there (no copy); an output kept only at its final value ping-pongs between two
  scratch buffers and is copied out once after the loop.

Everything fixed for one set of call-time shapes (the step graph's dimensions, its workspace
offsets) is computed by Python once per input-shape signature and travels in `D`.
"""

from __future__ import annotations

import numpy as np

from ...core import Constant, Graph, Placeholder
from ...lower import GemmKernel, plan_memory, schedule
from ...passes import optimize
from ..cfamily.emitter import KernelError
from .emit import TARGET
from .emit_conv import BLAS_THREADS_DECL

_ALIGN = TARGET.alignment
SMALL_STEP_MACS = 1 << 25


class _PerSignature:
    """Memoises one function of the outer call-time shapes (one dict object per signature)."""

    def __init__(self, fn):
        self.fn, self.key, self.value = fn, None, None

    def __call__(self, shapes):
        if self.key is not shapes:
            self.key, self.value = shapes, self.fn(shapes)
        return self.value


def scan_kernel(em, name: str, node, index: int) -> str:
    op = node.op
    body_graph = optimize(Graph(op.body.inputs, op.body.outputs))
    sched = schedule(body_graph, target=TARGET)
    plan = plan_memory(sched, len(body_graph.outputs), [], alignment=TARGET.alignment)
    from .emit import PARALLEL_MIN, CEmitter

    body = CEmitter(sched, plan, prefix=f"{name}_", index_base=(index + 1) * 1024, nested=True)
    for i in range(len(body_graph.outputs)):
        body.output_slot(i)
    em.errors.update(body.errors)

    n_seqs, n_states = op.n_seqs, op.n_states
    seqs = node.inputs[:n_seqs]
    inits = node.inputs[n_seqs:n_seqs + n_states]

    def inner_shapes(shapes):
        ins = [shapes.get(id(v), v.shape) for v in node.inputs]
        return body_graph.bind_shapes(op.inner_shapes(ins))

    body_shapes = _PerSignature(inner_shapes)
    layout = _PerSignature(lambda shapes: plan.layout(body_shapes(shapes)))

    def nbytes(v, shapes):
        shape = body_shapes(shapes).get(id(v), v.shape)
        return int(np.prod(shape, dtype=np.int64)) * np.dtype(v.dtype).itemsize

    # the step graph's integer table: a contiguous block of the outer one
    d_slots = [em.param(("scan", id(node), "D", j), lambda s, fn=fn: int(fn(body_shapes(s))))
               for j, fn in enumerate(body.params)]
    d_base = d_slots[0][2:-1] if d_slots else "0"
    if [int(d[2:-1]) for d in d_slots] != list(range(int(d_base), int(d_base) + len(d_slots))):
        raise AssertionError("scan: the step graph's integer table is not contiguous")
    ws_total = em.param(("scan", id(node), "ws"), lambda s: layout(s)[1])
    last_bytes = {}
    for k, keep in enumerate(op.keep):
        if keep == "last":
            out = body_graph.outputs[k]
            last_bytes[k] = em.param(("scan", id(node), "last", k),
                                     lambda s, out=out: (nbytes(out, s) + _ALIGN - 1) // _ALIGN * _ALIGN)
    scratch = " + ".join([ws_total, *(f"2*{b}" for b in last_bytes.values())])

    # Per-step gemm work: below SMALL_STEP_MACS the whole loop runs on one thread (OpenBLAS held
    # to one thread, the body's OpenMP regions off). Two small gemms and a few small elementwise
    # kernels per step cannot keep several threads busy, and OpenBLAS' pool and OpenMP's take
    # turns spinning at every step (measured: LSTM T=100 B=64 256 hidden, 1.25 s with both
    # pools on a loaded 2-core machine, 0.30 s on one thread).
    matmuls = [n for kk in sched.kernels if isinstance(kk, GemmKernel) for n in kk.nodes if n.op.name == "matmul"]

    def step_macs(shapes) -> int:
        bound = body_shapes(shapes)
        total = 0
        for n in matmuls:
            out = bound.get(id(n.outputs[0]), n.outputs[0].shape)
            a = bound.get(id(n.inputs[0]), n.inputs[0].shape)
            total += int(np.prod(out, dtype=np.int64)) * int(a[-1])
        return total

    macs = em.param(("scan", id(node), "macs"), step_macs)
    code_oom = (index + 1) << 4 | 3
    em.errors[code_oom] = KernelError(MemoryError, "scan: could not allocate {0} bytes for the loop body's workspace",
                                      index)
    steps = str(op.n_steps) if op.n_steps is not None else em.dim(seqs[0], 0)
    lines = [f"  const int64_t T = {steps};",
             f"  const int64_t *restrict SD = D + {d_base}; (void)SD;",
             f"  void *SB[{max(len(body.buffers), 1)}];",
             "  int rc = 0;",
             f"  const int64_t scratch_bytes = {scratch};",
             "  char *ws = NULL;",
             f"  if (scratch_bytes > 0 && !(ws = aligned_alloc({_ALIGN}, (size_t)((scratch_bytes + {_ALIGN - 1}) / "
             f"{_ALIGN} * {_ALIGN})))) {{ GC_ERR[0] = scratch_bytes; return {code_oom}; }}"]
    if n_seqs and op.go_backwards:
        lines.append(f"  const int64_t L = {em.dim(seqs[0], 0)};")

    inner_index = {id(v): q for q, v in enumerate(body_graph.inputs)}
    output_roots = {}
    for k in range(len(body_graph.outputs)):
        output_roots.setdefault(k, []).append(body.output_slot(k))
    for r_id, k in plan.output_backed.items():
        if r_id in body._slot:
            output_roots.setdefault(k, []).append(body._slot[r_id])
    per_step_inputs: dict[int, int] = {}  # body slot -> inner input index
    for slot, r in enumerate(body.buffers):
        if isinstance(r, tuple):
            if r[0] == "errinfo":
                lines.append(f"  SB[{slot}] = B[0];")
            continue
        if isinstance(r, Placeholder) and id(r) in inner_index:
            q = inner_index[id(r)]
            if q >= n_seqs + n_states:  # non-sequences: fixed for the whole loop
                lines.append(f"  SB[{slot}] = B[{em.slot(node.inputs[q])}];")
            else:
                per_step_inputs[slot] = q
        elif isinstance(r, Constant):
            lines.append(f"  SB[{slot}] = B[{em.slot(r)}];")
        elif id(r) in plan.output_backed:
            continue
        else:
            rid = id(r)
            off = em.param(("scan", id(node), "off", rid), lambda s, rid=rid: layout(s)[0][rid])
            lines.append(f"  SB[{slot}] = ws + {off};")
    # buffers of the outputs kept at their last value, two per output, after the workspace
    offset = ws_total
    for k, b in last_bytes.items():
        lines.append(f"  char *last{k} = ws + {offset};")
        offset = f"{offset} + 2*{b}"
    for j, init in enumerate(inits):
        lines.append(f"  const void *state{j} = B[{em.slot(init)}];")
    lines += [f"  const int one_thread = {macs} < {SMALL_STEP_MACS};",
              "  const int blas_nt = one_thread ? scipy_openblas_get_num_threads() : 1;",
              f"  if (one_thread) {{ {name}_par_min = INT64_MAX; "
              "if (blas_nt > 1) scipy_openblas_set_num_threads(1); }"]
    lines.append("  for (int64_t t = 0; t < T; t++) {")
    if n_seqs:
        lines.append(f"    const int64_t s = {'L - 1 - t' if op.go_backwards else 't'}; (void)s;")
    for slot, q in per_step_inputs.items():
        if q < n_seqs:
            seq = seqs[q]
            step = f"({em.size(seq, range(1, seq.ndim))})*{np.dtype(seq.dtype).itemsize}" if seq.ndim > 1 else \
                str(np.dtype(seq.dtype).itemsize)
            lines.append(f"    SB[{slot}] = (char *)B[{em.slot(seq)}] + s*({step});")
        else:
            lines.append(f"    SB[{slot}] = (void *)state{q - n_seqs};")
    for k, slots in output_roots.items():
        if op.keep[k] == "last":
            where = f"last{k} + (t & 1)*{last_bytes[k]}"
        else:
            ys = node.outputs[k]
            step = f"({em.size(ys, range(1, ys.ndim))})*{np.dtype(ys.dtype).itemsize}" if ys.ndim > 1 else \
                str(np.dtype(ys.dtype).itemsize)
            where = f"(char *)B[{em.slot(ys)}] + t*({step})"
        lines.append(f"    void *out{k} = {where};")
        lines.extend(f"    SB[{slot}] = out{k};" for slot in sorted(set(slots)))
    lines.append(f"    if ((rc = {name}_main(SB, SD)) != 0) break;")
    for j in range(n_states):
        lines.append(f"    state{j} = out{op.state_of.index(j)};")
    lines.append("  }")
    for k in last_bytes:
        ys = node.outputs[k]
        size = f"(size_t)({em.size(ys)})*{np.dtype(ys.dtype).itemsize}" if ys.ndim else \
            str(np.dtype(ys.dtype).itemsize)
        j = op.state_of[k]
        final = f"last{k} + ((T - 1) & 1)*{last_bytes[k]}"
        if j >= 0:
            src = f"(T > 0 ? (const void *){final} : state{j})"
            lines.append(f"  if (!rc) memcpy(B[{em.slot(ys)}], {src}, {size});")
        else:
            lines.append(f"  if (!rc) {{ if (T > 0) memcpy(B[{em.slot(ys)}], {final}, {size}); "
                         f"else memset(B[{em.slot(ys)}], 0, {size}); }}")
    lines.append(f"  if (one_thread) {{ {name}_par_min = {PARALLEL_MIN}; "
                 "if (blas_nt > 1) scipy_openblas_set_num_threads(blas_nt); }")
    lines.append("  free(ws);")
    lines.append("  return rc;")
    fn = f"static int {name}(void **restrict B, const int64_t *restrict D) {{\n" + "\n".join(lines) + "\n}"
    # the body's parallel regions test GC_PAR_MIN: within the body it is a variable the loop sets
    head = (f"#include <stdlib.h>\n{BLAS_THREADS_DECL}\nstatic int64_t {name}_par_min = {PARALLEL_MIN};\n"
            f'#pragma push_macro("GC_PAR_MIN")\n#undef GC_PAR_MIN\n#define GC_PAR_MIN {name}_par_min\n')
    return head + body.source + '\n#pragma pop_macro("GC_PAR_MIN")\n\n' + fn

