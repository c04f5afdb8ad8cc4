"""Backends turn an optimised Graph into a Program: ``program(args) -> outputs``.

A Program computes every output from the values *before* the call and then writes the update
values into the shared variables' storage (Theano semantics). Backends never change the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..core import Graph, SharedVar


class Program(Protocol):
    source: str

    def __call__(self, args: Sequence[np.ndarray]) -> list[np.ndarray]: ...


def compile_graph(backend: str, graph: Graph, n_outputs: int, update_targets: Sequence[SharedVar],
                  debug: bool = False, to_host: bool = False) -> Program:
    """Build `graph` with the named backend. The last ``len(update_targets)`` graph outputs are
    the new values of `update_targets`. `to_host` (cuda only) returns NumPy arrays instead of CuPy."""
    if backend == "ref":
        from .ref import RefProgram

        return RefProgram(graph, n_outputs, update_targets)
    if backend == "c":
        from .c.program import CProgram

        return CProgram(graph, n_outputs, update_targets, debug=debug)
    if backend == "cuda":
        from .cuda.program import CudaProgram

        return CudaProgram(graph, n_outputs, update_targets, debug=debug, to_host=to_host)
    raise ValueError(f"unknown backend {backend!r}; choose 'ref', 'c' or 'cuda'")
