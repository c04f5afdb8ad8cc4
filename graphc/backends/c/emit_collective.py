"""C for the allreduce op: one ``MPI_Allreduce`` over the pack of all its outputs.

The generated code stays inside the one native call of a training step. It calls the
``MPI_Allreduce`` of the libmpi that mpi4py loaded, through a function pointer; the pointer, the
communicator, datatype and op handles and ``MPI_IN_PLACE`` reach it through the integer table D,
filled in Python when a signature is bound. So the C source does not depend on any MPI header
or library, one cached build serves every MPI implementation with the same handle width, and
outside mpiexec the pointer is NULL and the kernel is the identity (the reduction over one rank).

The memory plan puts the outputs back to back (a "pack") and lets each output take over its
input's buffer when the input dies here: the backward pass writes the gradients straight into
the pack, and the reduction is one in-place call over the whole pack.
"""

from __future__ import annotations

from ...ops.collective import Allreduce, check_once, world
from ..cexpr import C_TYPES
from ..cfamily.emitter import KernelError
from .hooks import c_function

# MPI counts are C ints: larger packs go in chunks of 2**30 elements
CHUNK = 1 << 30


def _native(key: str):
    def value(shapes) -> int:
        w = world()
        if w is None or w.size == 1:
            return 0
        return w.native()[key]

    return value


def allreduce(em, name: str, node, index: int, label: str = "") -> str:
    dtype = node.outputs[0].dtype
    ct = C_TYPES[dtype]
    w = world()
    handle = "int" if w is None or w.size == 1 or w.native()["handle_bytes"] == 4 else "intptr_t"

    def fn_pointer(shapes, node=node) -> int:
        # bound once per signature, in Python: the first time, check that every rank reduces
        # the same thing (a clear error, not a mismatched collective)
        w = world()
        if w is None or w.size == 1:
            return 0
        check_once(node, w)
        return w.native()["allreduce"]

    fn = em.param(("mpi_allreduce", name), fn_pointer)
    in_place = em.param(("mpi_in_place",), _native("in_place"))
    comm = em.param(("mpi_comm",), _native("comm"))
    op = em.param(("mpi_sum",), _native("sum"))
    datatype = em.param(("mpi_type", dtype), _native(dtype))
    size = em.param(("mpi_size",), lambda shapes: (world().size if world() is not None else 1))
    lines = [f"  typedef int (*allreduce_t)(const void *, void *, int, {handle}, {handle}, {handle});"]
    for x, y in zip(node.inputs, node.outputs):
        if em.slot(x) != em.slot(y):
            nbytes = f"sizeof({ct})*({em.size(y)})"
            lines.append(f"  memcpy(B[{em.slot(y)}], B[{em.slot(x)}], (size_t)({nbytes}));")
    count = " + ".join(f"({em.size(y)})" for y in node.outputs)
    code = (index + 1) << 4 | 2
    em.errors[code] = KernelError(RuntimeError, "allreduce: MPI_Allreduce failed with MPI error code {0}", index)
    lines.append(f"""  if ({fn} == 0) return 0;  /* one rank: the sum and the mean are the identity */
  {ct} *restrict buf = ({ct} *)B[{em.slot(node.outputs[0])}];
  const int64_t count = {count};
  const allreduce_t call = (allreduce_t)(intptr_t){fn};
  for (int64_t at = 0; at < count; at += {CHUNK}) {{
    const int part = (int)(count - at < {CHUNK} ? count - at : {CHUNK});
    const int err = call((const void *)(intptr_t){in_place}, buf + at, part, ({handle}){datatype},
                         ({handle}){op}, ({handle}){comm});
    if (err) {{ GC_ERR[0] = err; return {code}; }}
  }}""")
    if node.op.reduce == "mean":
        lines.append(f"""  const {ct} ranks = ({ct}){size};
  #pragma omp parallel for simd if(count > GC_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < count; i++) buf[i] /= ranks;""")
    return c_function(name, "\n".join(lines))


OPS = {Allreduce: allreduce}
