"""Graph: a function's inputs and outputs, its nodes in order, and a readable text form."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .graph import Constant, Node, Placeholder, SharedVar, Var, leaves, toposort


class Graph:
    """An immutable view of the computation from `inputs` to `outputs`.

    Passes take a Graph and return a new one; `nodes` is a topological order of everything the
    outputs need, so a node no output reaches is not in it.

    >>> import graphc as gc
    >>> x = gc.placeholder("x", (3,))
    >>> print(Graph([x], [gc.exp(x) + 1.0]))  # doctest: +NORMALIZE_WHITESPACE
    graph(x: float32[3]) -> (%1)
      %0 = exp(x)                                 float32[3]
      %1 = add(%0, 1.0)                           float32[3]
    """

    def __init__(self, inputs: Sequence[Var], outputs: Sequence[Var]):
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.nodes: list[Node] = toposort(self.outputs)

    @property
    def shared(self) -> list[SharedVar]:
        return [v for v in leaves(self.outputs) if isinstance(v, SharedVar)]

    @property
    def placeholders(self) -> list[Placeholder]:
        return [v for v in leaves(self.outputs) if isinstance(v, Placeholder)]

    def bind_shapes(self, input_shapes: Sequence[tuple]) -> dict[int, tuple]:
        """Call-time shape of every Var, from the shapes of `inputs` (shared and constant leaves
        have static shapes). Raises ShapeError naming the op whose operands disagree.

        >>> import graphc as gc
        >>> x = gc.placeholder("x", (None, 3))
        >>> y = x.sum(axis=1)
        >>> Graph([x], [y]).bind_shapes([(5, 3)])[id(y)]
        (5,)
        """
        from .errors import ShapeError, format_origin
        from .types import matches

        shapes: dict[int, tuple] = {}
        for v, s in zip(self.inputs, input_shapes):
            shapes[id(v)] = tuple(s)
        for v in leaves(self.outputs):
            if id(v) not in shapes:
                shapes[id(v)] = tuple(v.shape)
        for node in self.nodes:
            try:
                outs = node.op.infer_shape(node, [shapes[id(v)] for v in node.inputs])
            except ShapeError as e:
                raise ShapeError(f"{e}\n  (the {node.op.name} was built at {format_origin(node.origin)})") from None
            for o, s in zip(node.outputs, outs):
                if not matches(o.shape, s):
                    raise ShapeError(f"{node.op.name}: call-time shape {tuple(s)} does not fit its static shape "
                                     f"{o.shape}")
                shapes[id(o)] = tuple(s)
        return shapes

    def count(self, op_name: str) -> int:
        """How many nodes apply an op of this name (handy in tests of rewrites)."""
        return sum(1 for n in self.nodes if n.op.name == op_name)

    def __str__(self) -> str:
        names: dict[int, str] = {}
        for v in self.inputs:
            names[id(v)] = v.name or "?"
        k = 0
        lines = []
        for node in self.nodes:
            outs = []
            for o in node.outputs:
                names[id(o)] = f"%{k}"
                outs.append(f"%{k}")
                k += 1
            args = ", ".join(_name(v, names) for v in node.inputs)
            attrs = _format_attrs(node.op)
            lhs = ", ".join(outs)
            types = ", ".join(str(o.type) for o in node.outputs)
            lines.append(f"  {lhs} = {node.op.name}{attrs}({args})".ljust(46) + f"  {types}")
        head = ", ".join(f"{names[id(v)]}: {v.type}" for v in self.inputs)
        tail = ", ".join(_name(v, names) for v in self.outputs)
        return "\n".join([f"graph({head}) -> ({tail})", *lines])

    __repr__ = __str__


def _name(v: Var, names: dict[int, str]) -> str:
    if id(v) in names:
        return names[id(v)]
    if isinstance(v, Constant):
        if v.value.ndim == 0:
            return str(v.value[()])  # float32 0.1 prints as 0.1, not its float64 expansion
        return f"const{list(v.shape)}"
    return v.name or f"<{type(v).__name__}>"


def _format_attrs(op) -> str:
    attrs = op.attrs()
    shown = []
    for key, val in attrs.items():
        if key == "scalar" or (key == "kind" and val == op.name):
            continue
        if isinstance(val, np.ndarray):
            val = f"array{list(val.shape)}"
        shown.append(f"{key}={val}")
    return "{" + ", ".join(shown) + "}" if shown else ""
