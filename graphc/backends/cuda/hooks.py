"""The CUDA language hooks of the C-family templates (`graphc.backends.cfamily`)."""

from __future__ import annotations

from collections.abc import Callable

from ...core import Var


class CudaHooks:
    """Mixed into CudaEmitter (before CEmitter): how CUDA spells each hook a template calls.
    Loops are grid-stride loops, one thread per element."""

    restrict = "__restrict__"

    def kernel(self, name: str, body: str, label: str, work: Callable, index: int) -> None:
        from .emit import blocks_for  # emit.py defines the emitter that mixes these hooks in

        self.finish(name, body, label, blocks_for(work), index)

    def once(self, stmt: str) -> str:
        return f"  if (blockIdx.x == 0 && threadIdx.x == 0) {stmt}\n"

    def flat_loop(self, total: str, stmt: str, cost: int = 1, var: str = "i") -> str:
        return f"  {self.grid_stride(total, var)} {{ {stmt} }}\n"

    def rows_loop(self, rows: str, cols: str, stmt: str, pre: str = "") -> str:
        return (f"  {self.grid_stride(f'({rows})*({cols})')} {{\n"
                f"    const int64_t r = t / ({cols}), q = t % ({cols});\n" + (f"    {pre}\n" if pre else "")
                + f"    {stmt}\n  }}\n")

    def nd_loop(self, sizes: list[str], stmt: str) -> str:
        return self.flat(sizes, [stmt])

    def zero(self, v: Var, index: int) -> str:
        from .emit import Memset, nbytes

        self.steps.append(Memset(self.slot(v), nbytes(v), index))
        return ""

    def index_check(self, idx: Var, size: str, size_fn: Callable, index: int, op: str, axis: int) -> str:
        """Every thread checks its indices; the first bad position goes to errinfo, and the host
        raises after the launch (an IndexCheck)."""
        from .emit import IndexCheck

        code = len(self.checks)
        self.checks.append(IndexCheck(code, index, idx, self.slot(idx), size_fn,
                                      op + ": index {0} is out of range for axis " + str(axis) + " of size {1}"))
        ix, E = self.ptr(idx), self.errinfo()
        return (f"  {self.grid_stride(self.size(idx), 'j')} {{ const long long s = (long long){ix}[j]; "
                f"if (s < -({size}) || s >= ({size})) gc_bad_index({E}, {code}, j); }}\n")
