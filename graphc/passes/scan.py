"""Scan rewrites on the outer graph: move work out of the loop, prune what nobody reads.

- **Sequence push-out**: a matmul whose left operand depends only on the sequences and on
  loop-invariant inputs (``x_t @ W_x``, ``(x_t * mask) @ W_x``) is computed for every step at once
  before the loop, as ``X @ W_x`` over ``(T, ...)`` (one large gemm instead of T small ones), and
  enters the loop as a new sequence. Elementwise work after it (``+ b``, the gates) stays in the
  loop, fused with the rest of the step.
- **Invariant hoisting**: a step expression of loop-invariant inputs only (``W.T`` of a
  non-sequence ``W``, a broadcast bias) is computed once, before the loop, and enters it as a
  new non-sequence. (Outer Vars captured by the step function are already inputs of the node:
  `gc.scan` closes the step graph over them.)
- **Output push-out**: a stacked output that is not fed back and is ``a_t @ W`` with ``W``
  loop-invariant (the input gradient ``dz_t @ W_x^T`` of BPTT) is computed after the loop as one
  gemm over the stacked ``a_t`` (often stacked already, for the weight gradient).
- An output that is neither read nor fed back as a state leaves the step graph, and so does an
  input that the step no longer reads (one sequence stays: it gives the number of steps).
- An output (state or not) read only as ``ys[-1, ...]`` is produced as its final value: the loop
  keeps it in two step-sized buffers, and the readers index that value instead.

The weight-gradient push-out (``sum_t x_t^T dz_t`` as one gemm after the loop) is built by the
scan's vjp itself (ops/control.py), not here.
"""

from __future__ import annotations

from ..core import Constant, Graph, Node, Placeholder, Var, clone_replace, toposort
from ..ops import Matmul, Scan, ScanBody, Subtensor


def _last_step_reader(node) -> bool:
    return isinstance(node.op, Subtensor) and node.op.idx and node.op.idx[0] == -1


def run(graph: Graph) -> Graph:
    """Rewrite every scan of `graph` (see the module docstring); unchanged graphs come back as is.

    >>> import numpy as np, graphc as gc
    >>> x = gc.placeholder("x", (None, 2))
    >>> last = gc.scan(lambda xt, h: h + xt, sequences=x, outputs_info=gc.constant(np.zeros(2, "f4")))[-1]
    >>> [n.op.keep for n in run(Graph([x], [last])).nodes if n.op.name == "scan"]
    [('last',)]
    """
    readers: dict[int, list] = {}
    for node in graph.nodes:
        for v in node.inputs:
            readers.setdefault(id(v), []).append(node)
    outputs = {id(v) for v in graph.outputs}
    replace: dict[Var, Var] = {}
    for node in graph.nodes:
        if isinstance(node.op, Scan):
            replace.update(_rewrite(node, readers, outputs) or _push_out(node) or _push_out_outputs(node))
    if not replace:
        return graph
    return Graph(graph.inputs, clone_replace(list(graph.outputs), replace))


def _rewrite(node: Node, readers: dict, outputs: set) -> dict[Var, Var]:
    op: Scan = node.op
    keep, drop = list(op.keep), []
    for k, y in enumerate(node.outputs):
        users = readers.get(id(y), [])
        if id(y) in outputs:
            continue
        if not users and op.state_of[k] < 0:
            drop.append(k)
        elif users and keep[k] == "all" and all(_last_step_reader(u) for u in users):
            keep[k] = "last"
    if not drop and tuple(keep) == op.keep:
        return {}
    kept = [k for k in range(op.nout) if k not in drop]
    body = ScanBody(op.body.inputs, [op.body.outputs[k] for k in kept])
    new_op = Scan(body, op.n_seqs, op.n_states, op.n_nonseqs, tuple(op.state_of[k] for k in kept),
                  tuple(keep[k] for k in kept), op.n_steps, op.go_backwards, op.counters)
    new = new_op(*node.inputs)
    new = [new] if new_op.nout == 1 else list(new)
    replace: dict[Var, Var] = {}
    for new_k, k in enumerate(kept):
        old = node.outputs[k]
        if keep[k] == op.keep[k]:  # unchanged (stacked, or already kept at its final value)
            replace[old] = new[new_k]
            continue
        for u in readers.get(id(old), []):
            rest = u.op.idx[1:]
            value = new[new_k]
            if any(e != ("slice", None, None, None) for e in rest):
                value = Subtensor(rest)(value)
            replace[u.outputs[0]] = value
    return replace


# -- moving work out of the loop -----------------------------------------------------------------

SEQ, INV, GEMM = "seq", "inv", "gemm"


def _classify(op: Scan) -> dict[int, str]:
    """id -> SEQ for step Vars computable from the sequence slices and invariants alone, in a
    form that extends over a leading time axis; id -> INV for Vars of invariants alone."""
    body = op.body
    kind = {id(p): SEQ for p in body.inputs[: op.n_seqs]}
    kind.update({id(p): INV for p in body.inputs[op.n_seqs + op.n_states:]})
    for node in toposort(list(body.outputs)):
        if node.op.nout != 1 or node.op.inner_graph or not node.op.foldable or node.op.rng_counters(node):
            continue
        kinds = [INV if isinstance(v, Constant) else kind.get(id(v)) for v in node.inputs]
        if None in kinds:
            continue
        out = node.outputs[0]
        if SEQ not in kinds:
            kind[id(out)] = INV
        elif isinstance(node.op, Matmul):
            # (T, B, D) @ (D, H) is the step's (B, D) @ (D, H) at every t; a batched right operand
            # would broadcast against T instead
            if kinds == [SEQ, INV] and node.inputs[1].ndim == 2:
                kind[id(out)] = SEQ
        elif node.op.elementwise and node.op.keeps_shape:
            # a leading T axis lines up only when every step operand has the output's rank; work
            # after a gemm stays in the loop, fused there (moving it out would only write and
            # read T-long arrays), so only what feeds a gemm goes out with it
            if all(v.ndim == out.ndim and not kind.get((GEMM, id(v))) for v, k in zip(node.inputs, kinds)
                   if k == SEQ):
                kind[id(out)] = SEQ
            continue
        else:
            continue
        if isinstance(node.op, Matmul) and kind.get(id(out)) == SEQ:
            kind[(GEMM, id(out))] = True
    return kind


def _has_matmul(v: Var, kind: dict) -> bool:
    return bool(kind.get((GEMM, id(v))))


def _push_out(node: Node) -> dict[Var, Var]:
    """Sequence push-out and invariant hoisting for one scan node (see the module docstring)."""
    op: Scan = node.op
    body = op.body
    kind = _classify(op)
    body_outputs = {id(o) for o in body.outputs}
    inputs = {id(p) for p in body.inputs}
    pushed: dict[int, Var] = {}  # frontier Vars, in order: step values computed outside the loop
    for n in toposort(list(body.outputs)):
        k = kind.get(id(n.outputs[0])) if n.op.nout == 1 else None
        for v in n.inputs:
            kv = kind.get(id(v))
            # v is a frontier when its consumer is not itself movable in the same way
            if kv is None or id(v) in inputs or isinstance(v, Constant) or kv == k or id(v) in pushed:
                continue
            if kv == INV or (kv == SEQ and k is None and _has_matmul(v, kind)):
                pushed[id(v)] = v
    pushed = {i: v for i, v in pushed.items() if i not in body_outputs}
    used_before = {id(p) for p in _leaves(list(body.outputs))}
    seqs_in, invs_in = body.inputs[: op.n_seqs], body.inputs[op.n_seqs + op.n_states:]
    dropped = sum(id(p) not in used_before for p in invs_in) + sum(id(p) not in used_before for p in seqs_in)
    if seqs_in and not any(id(p) in used_before for p in seqs_in):
        dropped -= 1  # one sequence stays: it gives the number of steps
    if not pushed and not dropped:
        return {}
    memo = {id(p): x for p, x in zip(body.inputs, node.inputs)}
    new_seqs, new_seq_in, new_inv, new_inv_in, replace = [], [], [], [], {}
    for i, v in enumerate(pushed.values()):
        outer = _lift(v, memo)
        place = Placeholder(v.type, name=f"pushed{i}")
        if kind[id(v)] == SEQ:
            if tuple(outer.shape[1:]) != tuple(v.shape) or outer.dtype != v.dtype:
                return {}  # not the step value over time after all: leave the loop alone
            new_seqs.append(outer)
            new_seq_in.append(place)
        else:
            new_inv.append(outer)
            new_inv_in.append(place)
        replace[v] = place
    outs = clone_replace(list(body.outputs), replace)
    used = {id(p) for p in _leaves(outs)}
    seq_pairs = [(p, x) for p, x in zip(body.inputs[: op.n_seqs], node.inputs[: op.n_seqs]) if id(p) in used]
    seq_pairs += list(zip(new_seq_in, new_seqs))
    if not seq_pairs and op.n_seqs:  # keep one sequence: it gives the number of steps
        seq_pairs = [(body.inputs[0], node.inputs[0])]
    lo, hi = op.n_seqs, op.n_seqs + op.n_states
    state_pairs = list(zip(body.inputs[lo:hi], node.inputs[lo:hi]))
    inv_pairs = [(p, x) for p, x in zip(body.inputs[hi:], node.inputs[hi:]) if id(p) in used]
    inv_pairs += [(p, x) for p, x in zip(new_inv_in, new_inv) if id(p) in used]
    pairs = seq_pairs + state_pairs + inv_pairs
    new_body = ScanBody([p for p, _ in pairs], outs)
    new_op = Scan(new_body, len(seq_pairs), op.n_states, len(inv_pairs), op.state_of, op.keep, op.n_steps,
                  op.go_backwards, op.counters)
    new = new_op(*[x for _, x in pairs])
    new = [new] if new_op.nout == 1 else list(new)
    return dict(zip(node.outputs, new))


def _lift(v: Var, memo: dict[int, Var]) -> Var:
    """The outer expression of step Var `v`: `memo` maps the step's inputs to the node's inputs
    (whole sequences for sequence slices) and collects what is built."""
    for n in toposort([v]):
        if id(n.outputs[0]) not in memo:
            memo[id(n.outputs[0])] = n.op(*[memo.get(id(a), a) for a in n.inputs])
    return memo[id(v)]


def _leaves(outputs: list[Var]) -> list[Var]:
    seen: dict[int, Var] = {}
    for n in toposort(outputs):
        for v in n.inputs:
            if isinstance(v, Placeholder):
                seen.setdefault(id(v), v)
    for o in outputs:
        if isinstance(o, Placeholder):
            seen.setdefault(id(o), o)
    return list(seen.values())


def _push_out_outputs(node: Node) -> dict[Var, Var]:
    """Output push-out for one scan node (see the module docstring)."""
    op: Scan = node.op
    body = op.body
    kind = _classify(op)
    outs, after = list(body.outputs), {}
    for k, o in enumerate(body.outputs):
        n = o.owner
        if op.state_of[k] >= 0 or op.keep[k] != "all" or n is None or not isinstance(n.op, Matmul):
            continue
        a, w = n.inputs
        if kind.get(id(w)) != INV or w.ndim != 2 or kind.get(id(a)) is not None:
            continue
        if any(o in m.inputs for m in toposort(list(body.outputs)) if m is not n):
            continue  # the loop itself reads o
        outs[k] = a
        after[k] = w
    if not after:
        return {}
    memo = {id(p): x for p, x in zip(body.inputs, node.inputs)}
    new_op = Scan(ScanBody(body.inputs, outs), op.n_seqs, op.n_states, op.n_nonseqs, op.state_of, op.keep,
                  op.n_steps, op.go_backwards, op.counters)
    new = new_op(*node.inputs)
    new = [new] if new_op.nout == 1 else list(new)
    from ..ops import matmul

    replace = {}
    for k, old in enumerate(node.outputs):
        replace[old] = matmul(new[k], _lift(after[k], memo)) if k in after else new[k]
    return replace
