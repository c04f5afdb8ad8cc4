"""The C family: each op's kernel template written once, rendered by C (OpenMP) and CUDA.

A template (`templates.py`) asks the emitter it is given for the few things that differ
between the languages, its *hooks*:

- ``em.restrict``: the no-alias qualifier (``restrict`` / ``__restrict__``);
- ``em.rows_loop(rows, cols, stmt, pre)``: a parallel loop over ``r < rows`` and ``q < cols``
  (C: OpenMP threads over rows, a vectorisable inner loop; CUDA: one grid-stride thread per
  element), `pre` run once per row before `stmt`;
- ``em.nd_loop(sizes, stmt)``: every index ``i0, i1, ...`` of a box;
- ``em.zero(v, index)``: code (or a step) setting `v` to zeros before the kernel;
- ``em.index_check(idx, size, size_fn, index, op, axis)``: the error channel refusing
  out-of-range indices before anything is written (C: a return code; CUDA: errinfo and an
  entry in `errors` the host raises from); every way a kernel refuses its input is one
  `KernelError` record in the emitter's `errors` table, in both languages;
- ``em.kernel(name, body, label, work, index, launch)``: close the kernel (C: a function; CUDA:
  a `__global__` function and its launch over ``work(shapes)`` threads, or `launch` blocks);
- the line hooks of `lines.py` (a reduction along each line, then a write along it).

A backend overrides a template only where its algorithm differs (OpenBLAS/cuBLAS calls,
im2col against direct convolution, lines reduced by one thread or by a group of lanes).
`KernelTable` maps op *classes* to kernel functions, so a subclass finds its parent's kernel.
"""

from .table import KernelTable

__all__ = ["KernelTable"]
