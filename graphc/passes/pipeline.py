"""The optimisation pipeline: named stages run in order, repeated until nothing changes.

    canonicalize -> stabilize -> fold -> simplify -> pair -> scan -> cse -> dce

`optimize(graph, exclude=("fold",))` skips stages (used by the pass-soundness tests);
`GRAPHC_DEBUG=1` makes `gc.function` print the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..core import Graph
from . import cse, dce, fold, pair, scan, simplify, stabilize

STAGES: list[tuple[str, Callable[[Graph], Graph]]] = [
    ("canonicalize", simplify.run),
    ("stabilize", stabilize.run),
    ("fold", fold.run),
    ("simplify", simplify.run),
    ("pair", pair.run),
    ("scan", scan.run),
    ("cse", cse.run),
    ("dce", dce.run),
]
STAGE_NAMES = tuple(name for name, _ in STAGES)


def optimize(graph: Graph, exclude: Iterable[str] = (), max_rounds: int = 8) -> Graph:
    """Run every stage not in `exclude` until a round leaves the outputs unchanged.

    >>> import graphc as gc
    >>> x = gc.placeholder("x", (3,))
    >>> g = optimize(Graph([x], [gc.log(gc.softmax(x * 1.0))]))
    >>> [n.op.name for n in g.nodes]
    ['log_softmax']
    """
    exclude = {exclude} if isinstance(exclude, str) else set(exclude)
    unknown = exclude - set(STAGE_NAMES)
    if unknown:
        raise ValueError(f"unknown pass(es) {sorted(unknown)}; the stages are {', '.join(STAGE_NAMES)}")
    for _ in range(max_rounds):
        before = graph.outputs
        for name, stage in STAGES:
            if name not in exclude:
                graph = stage(graph)
        if all(a is b for a, b in zip(before, graph.outputs)):
            break
    return graph
