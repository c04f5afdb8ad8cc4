"""The one rewrite mechanism every pass uses: local rules keyed by op name, applied bottom-up.

A rule is ``rule(node) -> Var | None``: it looks at a node (whose inputs are already rewritten)
and returns a Var computing the same value as ``node.outputs[0]``, or None. Nodes are
hash-consed, so rebuilding a node on new inputs and sharing equal subgraphs come for free.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

from ..core import Graph, Node, Var, apply, toposort

Rule = Callable[[Node], "Var | None"]


class RuleSet:
    """Named rules grouped by the op name they match ("*" matches every op).

    >>> rules = RuleSet("demo")
    >>> @rules.on("negative")
    ... def double_negation(node): ...
    >>> len(rules)
    1
    """

    def __init__(self, name: str):
        self.name = name
        self._by_op: dict[str, list[Rule]] = defaultdict(list)

    def on(self, *op_names: str):
        def deco(rule: Rule) -> Rule:
            for n in op_names:
                self._by_op[n].append(rule)
            return rule

        return deco

    def rules_for(self, node: Node) -> list[Rule]:
        return self._by_op.get(node.op.name, []) + self._by_op.get("*", [])

    def __len__(self) -> int:
        return len({id(r) for rs in self._by_op.values() for r in rs})


def rewrite_vars(outputs: Sequence[Var], rules: RuleSet, max_steps: int = 16) -> list[Var]:
    """Rewrite the graph under `outputs` with `rules`; returns the new output Vars. A node with
    several outputs is rebuilt on rewritten inputs; an op holding a graph (a scan's step) gets
    its inner graph rewritten by the same rules first."""
    memo: dict[int, Var] = {}
    for node in toposort(outputs):
        inputs = [memo.get(id(v), v) for v in node.inputs]
        op = node.op
        if op.inner_graph:
            inner = op.inner_outputs()
            rewritten = rewrite_vars(inner, rules, max_steps)
            if any(a is not b for a, b in zip(rewritten, inner)):
                op = op.with_inner_outputs(rewritten)
        same = op is node.op and all(a is b for a, b in zip(inputs, node.inputs))
        new = node if same else apply(op, inputs)
        if new.op.nout == 1:
            out = _apply_rules(new.outputs[0], rules, max_steps)
            memo[id(node.outputs[0])] = out
        else:
            for old, o in zip(node.outputs, new.outputs):
                memo[id(old)] = o
    return [memo.get(id(v), v) for v in outputs]


def _apply_rules(var: Var, rules: RuleSet, max_steps: int) -> Var:
    for _ in range(max_steps):
        node = var.owner
        if node is None:
            return var
        for rule in rules.rules_for(node):
            new = rule(node)
            if new is not None and new is not var:
                _check_same_type(rule, var, new)
                var = new
                break
        else:
            return var
    return var


def _check_same_type(rule, old: Var, new: Var) -> None:
    # exact equality: a rule that loses static knowledge (a known size becoming None) changes
    # broadcasting, since a None dimension never broadcasts
    if old.type != new.type:
        raise AssertionError(f"rewrite rule {rule.__name__} changed type {old.type} -> {new.type}")


def graph_pass(rules: RuleSet) -> Callable[[Graph], Graph]:
    """A Graph -> Graph pass that applies `rules` everywhere."""

    def run(graph: Graph) -> Graph:
        return Graph(graph.inputs, rewrite_vars(graph.outputs, rules))

    run.__name__ = rules.name
    run.__doc__ = f"Apply the {rules.name!r} rewrite rules to every node."
    return run


# -- small matching helpers shared by the rule modules -----------------------------------------


def producer(v: Var, *op_names: str) -> Node | None:
    """`v`'s node if it is one of `op_names`, else None."""
    return v.owner if v.owner is not None and v.owner.op.name in op_names else None


def scalar_value(v: Var) -> float | None:
    """The value of a constant whose entries are all equal (also through broadcasts), else None."""
    from ..core import Constant

    while v.owner is not None and v.owner.op.name in ("broadcast_to", "broadcast_like"):
        v = v.owner.inputs[0]
    if isinstance(v, Constant) and v.value.size > 0:
        flat = v.value.reshape(-1)
        first = flat[0]
        if (flat == first).all():
            return first.item()
    return None


def same_type(a: Var, b: Var) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape


def all_vars(outputs: Iterable[Var]) -> set[int]:
    return {id(o) for n in toposort(outputs) for o in (*n.inputs, *n.outputs)} | {id(o) for o in outputs}
