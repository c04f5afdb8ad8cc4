"""The reference backend: runs each node's NumPy `perform`, checking every shape and dtype.

It is the oracle the compiled backends are tested against, so it favours checks over speed:
call-time shapes are bound for the whole graph (cached per input-shape signature) and every
result is compared with its inferred shape and dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core import Constant, Graph, SharedVar, leaves


class RefProgram:
    """Executes an optimised Graph with NumPy."""

    source = ""

    def __init__(self, graph: Graph, n_outputs: int, update_targets: Sequence[SharedVar]):
        self.graph = graph
        self.n_outputs = n_outputs
        self.update_targets = list(update_targets)
        self._leaves = [v for v in leaves(graph.outputs) if isinstance(v, (Constant, SharedVar))]
        self._shape_cache: dict[tuple, dict[int, tuple]] = {}

    def __call__(self, args: Sequence[np.ndarray]) -> list[np.ndarray]:
        env = self.evaluate(args)
        return self._finish(env)

    def evaluate(self, args: Sequence[np.ndarray]) -> dict[int, np.ndarray]:
        """Every Var's value (by id) for these inputs; shared variables are not changed."""
        graph = self.graph
        key = tuple(a.shape for a in args)
        shapes = self._shape_cache.get(key)
        if shapes is None:
            shapes = graph.bind_shapes(key)
            self._shape_cache[key] = shapes
        env: dict[int, np.ndarray] = {id(v): a for v, a in zip(graph.inputs, args)}
        for v in self._leaves:
            env[id(v)] = v.value if isinstance(v, Constant) else v.storage
        with np.errstate(all="ignore"):  # NaN and Inf propagate as in NumPy, silently
            for node in graph.nodes:
                results = node.op.perform(node, *(env[id(v)] for v in node.inputs))
                for o, r in zip(node.outputs, results):
                    r = np.asarray(r)
                    if r.shape != shapes[id(o)] or r.dtype.name != o.dtype:
                        raise AssertionError(f"ref backend: {node.op.name} produced {r.dtype.name}{r.shape}, "
                                             f"expected {o.dtype}{shapes[id(o)]}")
                    env[id(o)] = r
        return env

    def _finish(self, env) -> list[np.ndarray]:
        values = [np.array(env[id(v)], copy=True) for v in self.graph.outputs]
        new_values = values[self.n_outputs:]
        for target, value in zip(self.update_targets, new_values):  # check all before writing any
            if value.shape != target.shape:
                from ..core import ShapeError

                raise ShapeError(f"update of {target.name!r}: new value has shape {value.shape}, "
                                 f"the variable has {target.shape}")
        for target, value in zip(self.update_targets, new_values):
            target.storage[...] = value
        return values[: self.n_outputs]
