"""Dead-code elimination.

A Graph is defined by its outputs, so a node that no output reaches is dropped by recomputing
the node list from the outputs. Kept as an explicit stage so that the pipeline's result never
carries nodes orphaned by earlier rewrites, and so that its effect can be tested and counted.
"""

from __future__ import annotations

from ..core import Graph


def run(graph: Graph) -> Graph:
    """Keep only the nodes some output depends on."""
    return Graph(graph.inputs, graph.outputs)
