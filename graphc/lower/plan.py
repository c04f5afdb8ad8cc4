"""The typed kernel plan: the records the schedule hands to every backend's emitter.

A record says *what* one unit of generated code computes, never how a backend spells it: a gemm
record carries its transposes, its scale and its initial C (a bias row or an accumulated tensor),
and the backend decides whether that is one BLAS call or a call plus a loop. Which epilogues
are folded into a record at all is the Target's choice (`graphc.lower.target`), not a fact of
the IR.

- `ElementwiseKernel`: fused elementwise nodes over one iteration shape.
- `ReduceKernel`: a sum/max/min with the elementwise nodes producing its input in front.
- `GemmKernel`: C = alpha * op(a) @ op(b) + beta * C0, C0 a bias row or an accumulated tensor.
- `OpKernel`: one node with its own kernel template (softmax, take, conv, random, ...).
- `LoopKernel`: a node holding an inner graph (scan): the backend emits the body as its own plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..core import Graph, Node, Var


@dataclass(eq=False)
class Kernel:
    """One unit of generated code: `nodes` computed in order, `inputs` read from buffers and
    `outputs` written to buffers. Subclasses add what their kind of code needs; `kind` names it.

    >>> Kernel([]).label
    'kernel[]'
    """

    kind: ClassVar[str] = "kernel"
    nodes: list[Node]
    outputs: list[Var] = field(default_factory=list)
    inputs: list[Var] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.kind}[{', '.join(n.op.name for n in self.nodes)}]"


@dataclass(eq=False)
class ElementwiseKernel(Kernel):
    """Fused elementwise nodes sharing one iteration shape (the last node's output shape)."""

    kind: ClassVar[str] = "elementwise"


@dataclass(eq=False)
class ReduceKernel(Kernel):
    """A reduction (the last node) with the elementwise nodes producing its input fused in front."""

    kind: ClassVar[str] = "reduce"


@dataclass(eq=False)
class OpKernel(Kernel):
    """One node with a kernel template of its own."""

    kind: ClassVar[str] = "op"


@dataclass(eq=False)
class LoopKernel(Kernel):
    """One node whose op holds an inner graph (scan); the body is lowered on its own."""

    kind: ClassVar[str] = "loop"


@dataclass(eq=False)
class GemmKernel(Kernel):
    """C = alpha * op(a) @ op(b) + beta * C0 (op = transpose when `trans_a`/`trans_b`).

    C0 is `bias` (a row, or a scalar, broadcast over C's rows: the bias epilogue) or `acc` (a
    tensor of C's shape: the accumulate epilogue, an SGD-style W - lr * g); beta is 1 with
    either, else 0. `alpha` is a number or a 0-d Var read at call time (a shared learning rate),
    `negate` flips its sign. ``nodes[0]`` is the matmul node; folded epilogue nodes follow it.
    """

    kind: ClassVar[str] = "matmul"
    a: Var | None = None
    b: Var | None = None
    trans_a: bool = False
    trans_b: bool = False
    alpha: float | Var = 1.0
    negate: bool = False
    bias: Var | None = None
    acc: Var | None = None

    @property
    def beta(self) -> float:
        return 1.0 if self.bias is not None or self.acc is not None else 0.0

    @property
    def product(self) -> Var:
        """The matmul node's own output (C's shape)."""
        return self.nodes[0].outputs[0]


def data_inputs(node: Node) -> list[Var]:
    """The inputs whose *values* a node reads (the op's `value_inputs` fact: shape-only inputs,
    like the second input of broadcast_like, are left out; their sizes come from the bound
    call-time shapes)."""
    n = node.op.value_inputs
    return list(node.inputs if n is None else node.inputs[:n])


def fused_kernel(record: type[Kernel], nodes: list[Node], users: dict) -> Kernel:
    """A `record` over `nodes`: its inputs are what they read from outside, its outputs what is
    read outside them (`users`: id(var) -> reading nodes or "out"), plus a reduction's result."""
    members = {id(n) for n in nodes}
    produced = {id(o) for n in nodes for o in n.outputs}
    inputs: dict[int, Var] = {}
    outputs: list[Var] = []
    for n in nodes:
        for v in data_inputs(n):
            if id(v) not in produced:
                inputs.setdefault(id(v), v)
    last = nodes[-1]
    for n in nodes:
        for o in n.outputs:
            ext = [u for u in users.get(id(o), []) if u == "out" or id(u) not in members]
            if ext or (record.kind == "reduce" and n is last):
                outputs.append(o)
    return record(list(nodes), outputs, list(inputs.values()))


def refresh_io(k: Kernel, users: dict) -> None:
    """Recompute a fused record's inputs and outputs after nodes left it."""
    if k.nodes:
        fresh = fused_kernel(type(k), k.nodes, users)
        k.inputs, k.outputs = fresh.inputs, fresh.outputs


@dataclass(eq=False)
class Schedule:
    """The ordered kernels of one graph, and the views that alias other buffers."""

    graph: Graph
    kernels: list[Kernel]
    #: id(view output) -> the Var whose buffer it aliases
    views: dict[int, Var]

    def __str__(self) -> str:
        lines = [f"schedule: {len(self.kernels)} kernels"]
        for i, k in enumerate(self.kernels):
            lines.append(f"  k{i}: {k.label}")
        return "\n".join(lines)
