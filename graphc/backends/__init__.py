"""Backends turn an optimised Graph into a Program: ``program(args) -> outputs``.

A Program computes every output from the values *before* the call and then writes the update
values into the shared variables' storage (Theano semantics). Backends never change the graph.

`BACKENDS` is the one registry of backends: `compile_graph` builds with it and `resolve_backend`
validates names against it (a new backend is one entry here).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from ..core import Graph, SharedVar


class Program(Protocol):
    source: str

    def __call__(self, args: Sequence[np.ndarray]) -> list[np.ndarray]: ...


def _ref(graph, n_outputs, update_targets, debug, to_host):
    from .ref import RefProgram

    return RefProgram(graph, n_outputs, update_targets)


def _c(graph, n_outputs, update_targets, debug, to_host):
    from .c.program import CProgram

    return CProgram(graph, n_outputs, update_targets, debug=debug)


def _cuda(graph, n_outputs, update_targets, debug, to_host):
    from .cuda.program import CudaProgram

    return CudaProgram(graph, n_outputs, update_targets, debug=debug, to_host=to_host)


#: name -> builder ``(graph, n_outputs, update_targets, debug, to_host) -> Program``; each imports
#: its backend on first use (CUDA's needs CuPy only when chosen).
BACKENDS: dict[str, Callable[..., Program]] = {"ref": _ref, "c": _c, "cuda": _cuda}


def _unknown(backend) -> ValueError:
    names = list(BACKENDS)
    return ValueError(f"unknown backend {backend!r}; choose {', '.join(map(repr, names[:-1]))} or {names[-1]!r}")


def compile_graph(backend: str, graph: Graph, n_outputs: int, update_targets: Sequence[SharedVar],
                  debug: bool = False, to_host: bool = False) -> Program:
    """Build `graph` with the named backend. The last ``len(update_targets)`` graph outputs are
    the new values of `update_targets`. `to_host` (cuda only) returns NumPy arrays instead of CuPy.

    >>> import graphc as gc
    >>> x = gc.placeholder("x", (2,))
    >>> compile_graph("ref", gc.Graph([x], [x * 2.0]), 1, [])([np.ones(2, "float32")])
    [array([2., 2.], dtype=float32)]
    """
    build = BACKENDS.get(backend)
    if build is None:
        raise _unknown(backend)
    return build(graph, n_outputs, update_targets, debug, to_host)


_warned_no_cc = False


def resolve_backend(backend: str | None) -> str:
    """The backend to use: the argument, else ``$GRAPHC_BACKEND``, else "c" (or "ref", with a
    warning, when there is no C compiler).

    >>> resolve_backend("ref")
    'ref'
    """
    global _warned_no_cc
    if backend is None:
        backend = os.environ.get("GRAPHC_BACKEND", "c")
        if backend == "c" and shutil.which(os.environ.get("CC", "gcc")) is None:
            if not _warned_no_cc:
                warnings.warn("graphc: no C compiler found (gcc); using the NumPy reference backend",
                              RuntimeWarning, stacklevel=3)
                _warned_no_cc = True
            backend = "ref"
    if backend not in BACKENDS:
        raise _unknown(backend)
    return backend
