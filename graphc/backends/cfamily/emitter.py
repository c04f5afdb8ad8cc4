"""The emitter both C-family backends are: buffer slots, the integer table `D`, loop nests with
broadcasting done in index arithmetic, the SSA body of a fused elementwise kernel, and one
dispatch from kernel records to kernel templates.

A backend's emitter is ``class XEmitter(XHooks, CFamilyEmitter)``: the hooks say how the language
spells a loop, a kernel and an error (see the package docstring), and the backend supplies the
kernels whose algorithm is its own: ``reduce``, ``gemm`` and ``op_kernel``. Everything the two
languages write alike is here, once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...core import Constant, Var
from ...lower import ElementwiseKernel, GemmKernel, Kernel, MemoryPlan, ReduceKernel, Schedule, data_inputs
from ...ops import Cast, Elemwise
from ..cexpr import C_TYPES, cast_c, scalar_c

# Loop temporaries: a bool is held as a 32-bit int (0 or 1) in registers, stored as a byte.
# gcc 12 does not vectorise a float loop with a uint8_t temporary in it (a comparison feeding
# a cast, as one_hot written as t == column is), so such loops ran scalar.
TEMP_TYPES = dict(C_TYPES, bool="int32_t")


@dataclass(frozen=True)
class KernelError:
    """One way a kernel refuses its input, before it writes anything: the exception a call raises
    and its message, formatted over the error details the kernel left (C: the return code's
    GC_ERR values; CUDA: an index check's first bad position, then the index and `size`). Both
    emitters keep them in `errors`, by code."""

    exc: type
    message: str
    kernel: int = -1
    #: for index checks: the index Var, its buffer slot, and shapes -> the size checked against
    var: Var | None = None
    slot: int = -1
    size: Callable | None = None


class CFamilyEmitter:
    """State and code shared by the C and CUDA emitters. Public results: `buffers` (slot -> root
    Var, or a tuple for the error details, the caller's output arrays and scratch memory),
    `params` (D slot -> function of the bound shapes), `errors`, `functions`.

    >>> import graphc as gc
    >>> from graphc.backends.c.emit import CEmitter
    >>> from graphc.lower import plan_memory, schedule
    >>> x = gc.placeholder("x", (None, 3))
    >>> sched = schedule(gc.Graph([x], [gc.exp(x) + 1.0]))
    >>> em = CEmitter(sched, plan_memory(sched, 1, []))
    >>> em.dim(x, 1), em.dim(x, 0).startswith("D[")  # static: a literal; call-time: read from D
    ('3', True)
    """

    def __init__(self, schedule: Schedule, plan: MemoryPlan):
        self.schedule = schedule
        self.plan = plan
        self.buffers: list = [("errinfo",)]  # slot 0: the error details
        self._slot: dict = {}
        self.params: list[Callable[[dict], int]] = []
        self._param_key: dict[tuple, int] = {}
        #: error code -> how a kernel refuses its input (C: the kernel's return code; CUDA: the
        #: index check's entry in the error details)
        self.errors: dict[int, KernelError] = {}
        self.functions: list[str] = []

    # -- buffers and integers ----------------------------------------------------------------
    def slot(self, v: Var) -> int:
        """v's buffer slot: the index into the pointer table the kernel being emitted reads it from."""
        r = self.plan.root(v)
        if id(r) not in self._slot:
            self._slot[id(r)] = len(self.buffers)
            self.buffers.append(r)
        return self.local_slot(self._slot[id(r)])

    def output_slot(self, index: int) -> int:
        """The slot of the caller's array for function output `index`."""
        key = ("output", index)
        if key not in self._slot:
            self._slot[key] = len(self.buffers)
            self.buffers.append(("output", index))
        return self.local_slot(self._slot[key])

    def program_slot(self, root: Var) -> int | None:
        """The program-wide slot of buffer `root` (a root of the memory plan, or an input), None
        when no kernel touches it: for the Program's pointer table."""
        return self._slot.get(id(root))

    def local_slot(self, slot: int) -> int:
        """Hook: how the kernel being emitted numbers program slot `slot` (C renumbers per kernel)."""
        return slot

    def param(self, key: tuple, fn: Callable[[dict], int]) -> str:
        """An integer fixed per input-shape signature, `fn(shapes)`, as an expression reading `D`."""
        key = self.local_key(key)
        if key not in self._param_key:
            self._param_key[key] = len(self.params)
            self.params.append(fn)
        return f"D[{self.local_param(self._param_key[key])}]"

    def local_key(self, key: tuple) -> tuple:
        return key

    def local_param(self, index: int) -> int:
        return index

    def dim(self, v: Var, axis: int) -> str:
        d = v.shape[axis]
        if d is not None:
            return str(d)
        vid = id(v)
        return self.param(("dim", vid, axis), lambda shapes, vid=vid, axis=axis: shapes[vid][axis])

    def size(self, v: Var, axes=None) -> str:
        axes = range(v.ndim) if axes is None else axes
        parts = [self.dim(v, a) for a in axes]
        static = int(np.prod([int(p) for p in parts if p.isdigit()], dtype=np.int64))
        dyn = [p for p in parts if not p.isdigit()]
        return "*".join([str(static)] + dyn) if dyn else str(static)

    # -- kernels -------------------------------------------------------------------------------
    def emit_kernel(self, name: str, k: Kernel, index: int):
        """Render scheduled kernel `k` (number `index`) through the template its record names."""
        self.begin()
        if isinstance(k, ElementwiseKernel):
            return self.elementwise(name, k, index)
        if isinstance(k, ReduceKernel):
            return self.reduce(name, k, index)
        if isinstance(k, GemmKernel):
            return self.gemm(name, k, index)
        return self.op_kernel(name, k, index)

    def begin(self) -> None:
        """Hook: a kernel starts (CUDA collects the slots it touches for its signature)."""

    def elementwise(self, name: str, k: Kernel, index: int):
        """A fused chain of elementwise nodes: one loop nest over the last node's shape."""
        shape_var = k.nodes[-1].outputs[0]
        sizes, offset, _ = self.loop_nest(shape_var, k.inputs + k.outputs)
        decls, names = self.local_pointers(k.inputs, k.outputs)
        lines, values = self.body(k.nodes, k.inputs, offset, names)
        lines += [f"{names[id(o)]}[{offset(o)}] = {values[id(o)]};" for o in k.outputs]
        return self.elementwise_loop(name, k, index, sizes, lines, decls)

    def loop_nest(self, shape_var: Var, operands: list[Var], masks: dict | None = None):
        """Collapsed loop nest over `shape_var`'s shape; offset(v) indexes operand v with
        broadcasting done in index arithmetic (stride 0 along broadcast axes). Adjacent axes merge
        into one loop when every operand (and every extra mask in `masks`) treats them alike.
        Returns (loop sizes, offset function, axis groups)."""
        shape = shape_var.shape
        r = len(shape)
        masks = dict(masks or {})
        for v in operands:
            lead = r - v.ndim
            masks[id(v)] = tuple(a < lead or (v.shape[a - lead] == 1 and shape[a] != 1) for a in range(r))
        groups: list[list[int]] = []
        for a in range(r):
            if shape[a] == 1:  # extent 1: no loop, and it does not stop neighbours merging
                continue
            if groups and all(m[a] == m[groups[-1][-1]] for m in masks.values()):
                groups[-1].append(a)
            else:
                groups.append([a])
        sizes = [self.size(shape_var, g) for g in groups]

        def stride(v: Var, axis: int) -> str:
            lead = r - v.ndim
            later = [a for a in range(axis + 1, r) if not masks[id(v)][a]]
            return self.size(v, [a - lead for a in later]) if later else "1"

        def offset(v: Var) -> str:
            terms = []
            for j, g in enumerate(groups):
                if masks[id(v)][g[-1]]:
                    continue
                s = stride(v, g[-1])
                terms.append(f"i{j}" if s == "1" else f"i{j}*({s})")
            return " + ".join(terms) if terms else "0"

        return sizes, offset, groups

    def body(self, nodes, inputs, offset, names) -> tuple[list[str], dict[int, str]]:
        """SSA statements computing every node's value from loads of `inputs`; returns them and
        the expression naming each value (by Var id)."""
        values: dict[int, str] = {}
        lines = []
        for j, v in enumerate(inputs):
            if isinstance(v, Constant) and v.ndim == 0:
                values[id(v)] = names.get(id(v)) or literal(v)
            else:
                values[id(v)] = f"l{j}"
                lines.append(f"const {TEMP_TYPES[v.dtype]} l{j} = {names[id(v)]}[{offset(v)}];")
        for n_i, node in enumerate(nodes):
            out = node.outputs[0]
            args = [values[id(v)] for v in data_inputs(node)]
            if isinstance(node.op, Elemwise):
                operand = node.inputs[1 if node.op.scalar == "where" else 0].dtype
                expr = scalar_expr(node.op.scalar, operand, args)
            elif isinstance(node.op, Cast):
                expr = cast_c(node.inputs[0].dtype, out.dtype, args[0])
            else:  # broadcast_to / broadcast_like: the load already broadcasts
                expr = args[0]
            lines.append(f"const {TEMP_TYPES[out.dtype]} v{n_i} = {expr};")
            values[id(out)] = f"v{n_i}"
        return lines, values


def reduce_identity(kind: str, dtype: str) -> str:
    """The value a sum/max/min reduction starts from.

    >>> reduce_identity("max", "int32"), reduce_identity("min", "float32")
    ('INT32_MIN', 'INFINITY')
    """
    if kind == "sum":
        return "0"
    big = {"float32": "INFINITY", "float64": "INFINITY", "int32": "INT32_MAX", "int64": "INT64_MAX", "bool": "1"}[dtype]
    small = {"float32": "-INFINITY", "float64": "-INFINITY", "int32": "INT32_MIN", "int64": "INT64_MIN",
             "bool": "0"}[dtype]
    return small if kind == "max" else big


@functools.cache
def _scalar_template(printer, scalar: str, dtype: str, nargs: int) -> str:
    return printer(scalar, dtype, [f"gc__arg{j}" for j in range(nargs)])


def scalar_expr(scalar: str, dtype: str, args: list[str]) -> str:
    """scalar_c's text, with sympy's printing (about 1 ms) done once per op and dtype: a deep
    network's emission called it per node, 16 s of a 2,000-layer MLP's compile.

    >>> scalar_expr("maximum", "float32", ["v1", "0.5f"]) == scalar_c("maximum", "float32", ["v1", "0.5f"])
    True
    """
    text = _scalar_template(scalar_c, scalar, dtype, len(args))
    # the same substitution as scalar_c's: identifiers as they are, anything else in parentheses
    return re.sub(r"\bgc__arg(\d+)\b", lambda m: args[int(m.group(1))] if args[int(m.group(1))].isidentifier()
                  else f"({args[int(m.group(1))]})", text)


def literal(c: Constant) -> str:
    """A scalar constant as a C literal of its dtype (NaN and infinities included).

    >>> import graphc as gc
    >>> literal(gc.constant(0.5, "float32")), literal(gc.constant(-3, "int64"))
    ('0.5f', '((int64_t)-3LL)')
    """
    value = c.value[()]
    dtype = c.dtype
    if dtype == "bool":
        return "((uint8_t)1)" if value else "((uint8_t)0)"
    if dtype.startswith("int"):
        return f"(({C_TYPES[dtype]}){int(value)}LL)"
    if np.isnan(value):
        return "NAN" if dtype == "float64" else "((float)NAN)"
    if np.isinf(value):
        return ("INFINITY" if value > 0 else "(-INFINITY)") if dtype == "float64" else \
            ("((float)INFINITY)" if value > 0 else "((float)-INFINITY)")
    return repr(float(value)) + ("f" if dtype == "float32" else "")
