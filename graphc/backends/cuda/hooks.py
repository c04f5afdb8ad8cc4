"""The CUDA language hooks of the C-family templates (`graphc.backends.cfamily`)."""

from __future__ import annotations

from collections.abc import Callable

from ...core import Var
from ..cfamily.emitter import KernelError


class CudaHooks:
    """Mixed into CudaEmitter (before CEmitter): how CUDA spells each hook a template calls.
    Loops are grid-stride loops, one thread per element."""

    restrict = "__restrict__"

    def kernel(self, name: str, body: str, label: str, work: Callable, index: int, launch=None) -> None:
        from .emit import blocks_for  # emit.py defines the emitter that mixes these hooks in

        self.finish(name, body, label, launch or blocks_for(work), index)

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
        raises after the launch (a KernelError with the index's slot and size)."""
        code = len(self.errors)
        self.errors[code] = KernelError(IndexError, f"{op}: index {{0}} is out of range for axis {axis} of size {{1}}",
                                        index, idx, self.slot(idx), size_fn)
        ix, E = self.ptr(idx), self.errinfo()
        return (f"  {self.grid_stride(self.size(idx), 'j')} {{ const long long s = (long long){ix}[j]; "
                f"if (s < -({size}) || s >= ({size})) gc_bad_index({E}, {code}, j); }}\n")

    # -- lines: a group of lanes per line, reduced through shared memory ---------------------------
    def line_loop(self, name: str, count: str, work: str, fns, reductions, body: str) -> str:
        from .emit import WARPS, lanes

        lines_fn, length_fn, strided_fn = fns
        lane_d = self.param(("lanes", name), lambda s: lanes(lines_fn(s), length_fn(s), strided_fn(s)))
        shared = "".join(f"  __shared__ {ty} shm_{var}[{WARPS}];\n" for var, ty in reductions)
        return (shared + group_loop(lane_d, "lb", f"({count})") + "    const long long line = lb + grp;\n"
                f"    const bool ok = line < ({count});\n" + body + "  }\n")

    def line_reduce(self, kind: str, var: str, ty: str, n: str, expr: str, each: str = "") -> str:
        init, combine, op = ("-INFINITY", f"{var} = GcMax()({var}, v);", "GcMax()") if kind == "max" else \
            ("0", f"{var} += v;", "GcSum()")
        return (f"    {ty} {var} = {init};\n"
                f"    if (ok) for (long long j = lane; j < ({n}); j += L) "
                f"{{ const {ty} v = {expr}; {each} {combine} }}\n"
                f"    {var} = gc_group_reduce({var}, L, {op}, shm_{var});\n")

    def line_argmax(self, best: str, at: str, ty: str, n: str, expr: str) -> str:
        return (f"    {ty} {best} = 0; long long {at} = -1;  /* -1: no element seen yet */\n"
                f"    if (ok) for (long long j = lane; j < ({n}); j += L) gc_argmax_combine({best}, {at}, {expr}, j);\n"
                f"    gc_group_argmax({best}, {at}, L, shm_{best}, shm_{at});\n")

    def line_each(self, n: str, stmt: str) -> str:
        return f"    if (ok) for (long long j = lane; j < ({n}); j += L) {{ {stmt} }}\n"

    def line_once(self, stmt: str) -> str:
        return f"    if (ok && lane == 0) {stmt}\n"

    def wide(self, ty: str) -> str:
        return ty

    def line_launch(self, fns):
        return line_blocks(*fns)


def group_loop(lane_d: str, var: str, count: str) -> str:
    """Groups of L lanes (L from D) each take one item of `count`; `var` is the group's first item
    of a block-uniform grid-stride loop (every thread runs the same iterations: group reductions
    synchronise the block)."""
    return (f"  const int L = (int){lane_d};\n"
            "  const int lane = threadIdx.x & (L - 1), grp = threadIdx.x / L, per = blockDim.x / L;\n"
            f"  for (long long {var} = (long long)blockIdx.x * per; {var} < {count}; "
            f"{var} += (long long)gridDim.x * per) {{\n")


def line_blocks(lines_fn, length_fn, strided_fn):
    """shapes -> blocks for one group of lanes per line."""
    from .emit import BLOCK, lanes

    def blocks(shapes):
        n_lines = lines_fn(shapes)
        return -(-n_lines // (BLOCK // lanes(n_lines, length_fn(shapes), strided_fn(shapes))))

    return blocks
