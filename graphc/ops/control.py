"""Loops: `scan`, an op holding its step function as an inner graph (Theano's scan).

The step graph is closed: every outer Var it uses (shared variables, placeholders, outer
expressions) becomes an explicit input of the Scan node, so passes, autodiff and backends see
the dependency. The gradient of a scan is another scan that runs backwards over the stored
states (backpropagation through time), so it can itself be differentiated again.

Node inputs, in order: sequences, initial states, non-sequences (explicit ones first, then the
captured ones). Node outputs: one per step output, stacked over time ``(T, *step_shape)``, or
only the last step's value for outputs marked ``last`` (used by the gradient's accumulators).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..core import Constant, GradError, Op, Placeholder, ShapeError, TensorType, Var, shape_error, toposort
from ._base import as_var


class ScanBody:
    """The step function as a graph: inner placeholders in Theano's order, and step outputs.

    Compared by identity (each scan call builds its own body), so Scan ops hash cheaply.
    """

    __slots__ = ("inputs", "outputs", "__weakref__")

    def __init__(self, inputs: Sequence[Placeholder], outputs: Sequence[Var]):
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)

    def evaluate(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the step graph on NumPy values with each op's reference `perform`."""
        env = {id(v): a for v, a in zip(self.inputs, values)}
        for node in toposort(self.outputs):
            for v in node.inputs:
                if id(v) not in env and isinstance(v, Constant):
                    env[id(v)] = v.value
            results = node.op.perform(node, *(env[id(v)] for v in node.inputs))
            for o, r in zip(node.outputs, results):
                env[id(o)] = np.asarray(r)
        return [np.asarray(env[id(o)]) if id(o) in env else np.asarray(o.value) for o in self.outputs]

    def step_shapes(self, shapes: Sequence[tuple]) -> list[tuple]:
        """Call-time shapes of the step outputs from call-time shapes of the inner inputs."""
        from ..core import Graph

        bound = Graph(self.inputs, self.outputs).bind_shapes(shapes)
        return [bound.get(id(o), tuple(o.shape)) for o in self.outputs]


@dataclass(frozen=True, eq=False)
class Scan(Op):
    """A loop over axis 0 of the sequences; see `scan` for the user-level contract.

    `n_seqs`, `n_states` and `n_nonseqs` split the node inputs; `state_of[k]` is the index of the
    initial state that step output k feeds back (or -1); `keep[k]` is "all" (stack over time) or
    "last" (only the final value); `n_steps` is a static step count or None (the sequences'
    length, bound at call time).
    """

    body: ScanBody
    n_seqs: int
    n_states: int
    n_nonseqs: int
    state_of: tuple
    keep: tuple
    n_steps: int | None
    go_backwards: bool = False
    #: the call counters of random ops in the step graph (each is also a state, see `_build`)
    counters: tuple = ()

    inner_graph = True
    differentiable = True
    # eq=False compares by identity; hash-consing still finds the same node for the same op object.
    __hash__ = object.__hash__

    @property
    def nout(self) -> int:  # type: ignore[override]
        return len(self.body.outputs)

    @property
    def name(self) -> str:
        return "scan"

    def rng_counters(self, node):
        return list(self.counters)

    def inner_outputs(self) -> tuple:
        return self.body.outputs

    def with_inner_outputs(self, outputs: Sequence[Var]) -> Scan:
        return replace(self, body=ScanBody(self.body.inputs, outputs))

    def infer(self, *types: TensorType) -> tuple[TensorType, ...]:
        seq_types = types[: self.n_seqs]
        steps = self.n_steps
        if steps is None:
            known = [t.shape[0] for t in seq_types if t.shape[0] is not None]
            if known and any(k != known[0] for k in known):
                raise shape_error("scan", f"sequences have different lengths {known}")
            steps = known[0] if known else None
        outs = []
        for o, keep in zip(self.body.outputs, self.keep):
            outs.append(o.type if keep == "last" else TensorType(o.dtype, (steps, *o.shape)))
        return tuple(outs)

    def _length(self, seq_shapes) -> int:
        lengths = [s[0] for s in seq_shapes]
        if lengths and any(n != lengths[0] for n in lengths):
            raise ShapeError(f"scan: the sequences have different lengths {lengths} at call time")
        if self.n_steps is not None:
            if lengths and lengths[0] < self.n_steps:
                raise ShapeError(f"scan: n_steps={self.n_steps} but the sequences have only {lengths[0]} steps")
            return self.n_steps
        if not lengths:
            raise ShapeError("scan: n_steps is unknown and there is no sequence to take it from")
        return lengths[0]

    def inner_shapes(self, shapes) -> list[tuple]:
        seqs = [tuple(s[1:]) for s in shapes[: self.n_seqs]]
        return seqs + [tuple(s) for s in shapes[self.n_seqs:]]

    def infer_shape(self, node, shapes):
        steps = self._length(shapes[: self.n_seqs])
        step_shapes = self.body.step_shapes(self.inner_shapes(shapes))
        states = shapes[self.n_seqs: self.n_seqs + self.n_states]
        for k, (j, s) in enumerate(zip(self.state_of, step_shapes)):
            if j >= 0 and tuple(s) != tuple(states[j]):
                raise ShapeError(f"scan: step output {k} has shape {tuple(s)} at call time but its state "
                                 f"has shape {tuple(states[j])}")
        return [tuple(s) if keep == "last" else (steps, *s) for s, keep in zip(step_shapes, self.keep)]

    def perform(self, node, *arrays):
        seqs = arrays[: self.n_seqs]
        states = list(arrays[self.n_seqs: self.n_seqs + self.n_states])
        nonseqs = arrays[self.n_seqs + self.n_states:]
        steps = self._length([s.shape for s in seqs])
        order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
        if self.go_backwards and seqs:
            order = range(seqs[0].shape[0] - 1, seqs[0].shape[0] - 1 - steps, -1)
        stacked: list[list[np.ndarray]] = [[] for _ in self.body.outputs]
        last: list[np.ndarray | None] = [None] * len(self.body.outputs)
        for t in order:
            outs = self.body.evaluate([s[t] for s in seqs] + states + list(nonseqs))
            for k, o in enumerate(outs):
                o = o.astype(self.body.outputs[k].dtype, copy=False)
                if self.keep[k] == "all":
                    stacked[k].append(o)
                last[k] = o
                if self.state_of[k] >= 0:
                    states[self.state_of[k]] = o
        results = []
        for k, o in enumerate(self.body.outputs):
            if self.keep[k] == "last":
                if last[k] is None:  # zero steps: the state is unchanged
                    j = self.state_of[k]
                    last[k] = np.array(arrays[self.n_seqs + j]) if j >= 0 else np.zeros(o.shape, o.dtype)
                results.append(last[k])
            elif stacked[k]:
                results.append(np.stack(stacked[k]))
            else:
                shape = self.body.step_shapes(self.inner_shapes([a.shape for a in arrays]))[k]
                results.append(np.zeros((0, *shape), o.dtype))
        return tuple(results)

    def vjp(self, node, cotangents, vjp: Callable | None = None):
        if vjp is None:
            raise GradError("scan: differentiate with gc.grad or gc.vjp")
        return _scan_vjp(self, node, cotangents, vjp)


def _depends(outputs: Sequence[Var], inner: Sequence[Var]) -> set[int]:
    """ids of the Vars in the outputs' graph that depend on any of `inner`."""
    dep = {id(v) for v in inner}
    for node in toposort(outputs):
        if any(id(v) in dep for v in node.inputs):
            dep.update(id(o) for o in node.outputs)
    return dep


def _close_over(inner: list[Placeholder], outputs: list[Var]) -> tuple[list[Var], list[Placeholder], list[Var]]:
    """Turn every outer Var the step graph uses into an inner placeholder.

    Returns (captured outer Vars, their inner placeholders, the rewritten step outputs). Constants
    stay inside; any other Var that does not depend on the step's inputs is loop-invariant and
    becomes an input of the scan node (so it is computed once, outside the loop).
    """
    from ..core import clone_replace

    dep = _depends(outputs, inner)
    captured: dict[int, Var] = {}
    for o in outputs:
        if id(o) not in dep and not isinstance(o, Constant):
            captured.setdefault(id(o), o)
    for node in toposort(outputs):
        if any(id(o) in dep for o in node.outputs):
            for v in node.inputs:
                if id(v) not in dep and not isinstance(v, Constant):
                    captured.setdefault(id(v), v)
    outer = list(captured.values())
    places = [Placeholder(v.type, name=f"captured{i}") for i, v in enumerate(outer)]
    new_outputs = clone_replace(outputs, dict(zip(outer, places))) if outer else list(outputs)
    return outer, places, new_outputs


def _as_list(x, what: str) -> list:
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def scan(fn: Callable, sequences=None, outputs_info=None, non_sequences=None, n_steps: int | None = None,
         go_backwards: bool = False):
    """Loop `fn` over time; Theano's signature and argument order.

    ``fn(*sequence_slices, *previous_states, *non_sequences)`` returns a Var or a tuple, one per
    `outputs_info` entry (an initial state that is fed back, or None). Returns one Var, or a
    list, each stacked over time as ``(n_steps, *step_shape)``.

    >>> import numpy as np, graphc as gc
    >>> x = gc.placeholder("x", (None, 2), "float64")
    >>> cumsum = gc.scan(lambda xt, acc: acc + xt, sequences=x, outputs_info=gc.constant(np.zeros(2)))
    >>> gc.function([x], cumsum, backend="ref")(np.ones((3, 2)))[:, 0]
    array([1., 2., 3.])
    """
    if not callable(fn):
        raise TypeError(f"scan: fn must be callable, got {type(fn).__name__}")
    infos = _as_list(outputs_info, "outputs_info")
    single_output = not isinstance(outputs_info, (list, tuple))
    ys = _build(fn, _as_list(sequences, "sequences"), infos, _as_list(non_sequences, "non_sequences"),
                n_steps, go_backwards, keep_last=())
    return ys[0] if single_output and len(ys) == 1 else ys


def _build(fn, sequences, infos, non_sequences, n_steps, go_backwards, keep_last) -> list[Var]:
    """Trace `fn` on inner placeholders, close the step graph and apply a Scan node.

    `keep_last` lists the step outputs of which only the final value is returned."""
    seqs = [as_var(s) for s in sequences]
    nonseqs = [as_var(v) for v in non_sequences]
    if n_steps is not None and (isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer))
                                or n_steps < 0):
        raise TypeError(f"scan: n_steps must be a non-negative int or None, got {n_steps!r}")
    if not seqs and n_steps is None:
        raise shape_error("scan", "give sequences or n_steps (the number of steps is unknown)")
    for i, s in enumerate(seqs):
        if s.ndim == 0:
            raise shape_error("scan", f"sequences[{i}] is a scalar; sequences are iterated over axis 0")
        if n_steps is not None and s.shape[0] is not None and s.shape[0] < n_steps:
            raise shape_error("scan", f"n_steps={n_steps} but sequences[{i}] has only {s.shape[0]} steps")
    inits = [None if v is None else as_var(v) for v in infos]
    states = [v for v in inits if v is not None]
    seq_in = [Placeholder(TensorType(s.dtype, s.shape[1:]), name=f"seq{i}") for i, s in enumerate(seqs)]
    state_in = [Placeholder(v.type, name=f"state{i}") for i, v in enumerate(states)]
    nonseq_in = [Placeholder(v.type, name=f"nonseq{i}") for i, v in enumerate(nonseqs)]
    result = fn(*seq_in, *state_in, *nonseq_in)
    outs = list(result) if isinstance(result, (list, tuple)) else [result]
    if infos and len(outs) != len(infos):
        raise shape_error("scan", f"fn returned {len(outs)} output(s) but outputs_info has {len(infos)} entries")
    if not infos:
        inits = [None] * len(outs)
    for k, o in enumerate(outs):
        if not isinstance(o, (Var, int, float, np.ndarray, np.generic)):
            raise TypeError(f"scan: fn's output {k} is {type(o).__name__}, not a Var")
    outs = [as_var(o) for o in outs]
    state_of, j = [], 0
    for k, (o, init) in enumerate(zip(outs, inits)):
        if init is None:
            state_of.append(-1)
            continue
        if o.dtype != init.dtype:
            raise shape_error("scan", f"step output {k} is {o.dtype} but its initial state is {init.dtype}")
        if len(o.shape) != len(init.shape) or any(a is not None and b is not None and a != b
                                                  for a, b in zip(o.shape, init.shape)):
            raise shape_error("scan", f"step output {k} has shape {o.shape} but its initial state has "
                                      f"shape {init.shape}")
        state_of.append(j)
        j += 1
    n_user = len(outs)
    # Random ops draw with call number counter * 2**32 + t at step t: a hidden int64 state per
    # counter, so each step (and each call) gets fresh numbers, the same on every backend.
    counters = _random_counters(outs)
    if counters:
        from ..core import clone_replace, constant

        steps_in = [Placeholder(TensorType("int64", ()), name=f"rng_step{i}") for i in range(len(counters))]
        outs = clone_replace(outs, dict(zip(counters, steps_in))) + [p + constant(1, "int64") for p in steps_in]
        states = states + [c * constant(2 ** 32, "int64") for c in counters]
        state_in = state_in + steps_in
        state_of = state_of + list(range(j, j + len(counters)))
        keep_last = tuple(keep_last) + tuple(range(n_user, len(outs)))
    inner = seq_in + state_in + nonseq_in
    captured, captured_in, outs = _close_over(inner, outs)
    body = ScanBody(inner + captured_in, outs)
    keep = tuple("last" if k in keep_last else "all" for k in range(len(outs)))
    op = Scan(body, len(seqs), len(states), len(nonseqs) + len(captured), tuple(state_of), keep,
              None if n_steps is None else int(n_steps), bool(go_backwards), tuple(counters))
    ys = op(*seqs, *states, *nonseqs, *captured)
    ys = [ys] if op.nout == 1 else list(ys)
    return ys[:n_user]


def _random_counters(outputs: Sequence[Var]) -> list[Var]:
    from ..core import SharedVar

    found: dict[int, Var] = {}
    for node in toposort(outputs):
        for c in node.op.rng_counters(node):
            if isinstance(c, SharedVar):
                found.setdefault(id(c), c)
    return list(found.values())


def _scan_vjp(op: Scan, node, cotangents, vjp) -> list[Var | None]:
    """BPTT: a scan over the reversed steps whose carries are the state cotangents and the
    accumulated gradients of the non-sequences (kept only at their final value)."""
    from ..core import clone_replace, is_float
    from .linalg import matmul
    from .shape import concatenate, expand_dims, getitem, reshape, swap_last, zeros_like

    body = op.body
    n_seqs, n_states = op.n_seqs, op.n_states
    seqs = list(node.inputs[:n_seqs])
    inits = list(node.inputs[n_seqs:n_seqs + n_states])
    nonseqs = list(node.inputs[n_seqs + n_states:])
    if op.n_steps == 0:
        return [zeros_like(v) if is_float(v.dtype) else None for v in node.inputs]
    if any(k == "last" for k in op.keep):
        # the stored states are needed: differentiate the full-history form of this scan
        full = Scan(body, n_seqs, n_states, op.n_nonseqs, op.state_of, ("all",) * op.nout, op.n_steps,
                    op.go_backwards, op.counters)
        ys = list(full(*node.inputs)) if full.nout > 1 else [full(*node.inputs)]
        cts = []
        for k, g in enumerate(cotangents):
            if g is None or op.keep[k] == "all":
                cts.append(g)
            else:  # the final value's cotangent lands on the last step
                pad = zeros_like(getitem(ys[k], slice(None, -1)))
                cts.append(concatenate([pad, expand_dims(g, 0)], 0))
    else:
        ys = list(node.outputs)
        cts = list(cotangents)
    float_out = [k for k, o in enumerate(body.outputs) if is_float(o.dtype)]
    float_states = [j for j, v in enumerate(inits) if is_float(v.dtype)]
    float_seqs = [i for i, v in enumerate(seqs) if is_float(v.dtype)]
    float_nonseqs = [i for i, v in enumerate(nonseqs) if is_float(v.dtype)]
    # the state before each step: the initial state, then the outputs fed back
    prev = []
    for j, init in enumerate(inits):
        k = op.state_of.index(j)
        prev.append(concatenate([expand_dims(init, 0), getitem(ys[k], slice(None, -1))], 0))
    cts = {k: (zeros_like(ys[k]) if cts[k] is None else cts[k]) for k in float_out}
    # sequences aligned with the forward steps (a backwards scan read them back to front)
    aligned = [getitem(s, slice(None, None, -1)) if op.go_backwards else s for s in seqs]
    if op.n_steps is not None:
        aligned = [getitem(s, slice(0, op.n_steps)) for s in aligned]
    n_x, n_h, n_a = len(float_seqs), len(float_states), len(float_nonseqs)

    # Weight gradients of the form sum_t a_t^T b_t (every `h_t @ W` in the step) are pushed out
    # of the loop: the backward scan only stacks a_t and b_t, and one large gemm after it forms
    # the sum, instead of a small accumulating gemm per step. A dry trace of the step finds
    # those terms, so the backward scan knows its outputs before it is built.
    plan: list[tuple[bool, int]] = []  # per float non-sequence: (has an accumulator, pushed pairs)

    def step(*args):
        a = list(args)
        x_t, a = a[:n_seqs], a[n_seqs:]
        h_prev, a = a[:n_states], a[n_states:]
        g_t, a = a[:len(float_out)], a[len(float_out):]
        dh, a = a[:n_h], a[n_h:]
        n_acc = sum(1 for has, _ in plan if has) if tracing[0] is False else 0
        acc, ns = a[:n_acc], a[n_acc:]
        outs = clone_replace(list(body.outputs), dict(zip(body.inputs, [*x_t, *h_prev, *ns])))
        dh_of = dict(zip(float_states, dh))
        out_cts = []
        for g, k in zip(g_t, float_out):
            j = op.state_of[k]
            out_cts.append(g + dh_of[j] if j in dh_of else g)
        wrt = [x_t[i] for i in float_seqs] + [h_prev[j] for j in float_states] + [ns[i] for i in float_nonseqs]
        grads = vjp([outs[k] for k in float_out], wrt, out_cts) if wrt and float_out else \
            [zeros_like(w) for w in wrt]
        g_x, g_h, g_ns = grads[:n_x], grads[n_x:n_x + n_h], grads[n_x + n_h:]
        new_acc, pairs = [], []
        acc_iter = iter(acc)
        for g in g_ns:
            terms, rest = _outer_product_terms(g)
            if tracing[0]:
                plan.append((rest is not None, len(terms)))
                continue
            if rest is not None:
                new_acc.append(next(acc_iter) + rest)
            for u, v in terms:
                pairs += [u, v]
        return (*g_x, *g_h, *new_acc, *pairs)

    # the dry trace: the step on placeholders of the backward scan's inner types
    tracing = [True]
    seq_vars = aligned + prev + [cts[k] for k in float_out]
    step(*[Placeholder(TensorType(v.dtype, v.shape[1:])) for v in seq_vars],
         *[Placeholder(inits[j].type) for j in float_states],
         *[Placeholder(v.type) for v in nonseqs])
    tracing[0] = False
    acc_for = [i for i, (has, _) in zip(float_nonseqs, plan) if has]
    n_pairs = sum(n for _, n in plan)
    outputs_info = [None] * n_x + [zeros_like(inits[j]) for j in float_states] + \
        [zeros_like(nonseqs[i]) for i in acc_for] + [None] * (2 * n_pairs)
    n_a = len(acc_for)
    res = _build(step, seq_vars, outputs_info, nonseqs, None, True,
                 keep_last=tuple(range(n_x, n_x + n_h + n_a)))
    grads: list[Var | None] = [None] * len(node.inputs)
    for g, i in zip(res[:n_x], float_seqs):
        # the backward scan wrote the last forward step first: put them back in forward order
        g = getitem(g, slice(None, None, -1))
        if op.n_steps is not None and seqs[i].shape[0] != op.n_steps:
            g = concatenate([g, zeros_like(getitem(seqs[i], slice(op.n_steps, None)))], 0)
        grads[i] = getitem(g, slice(None, None, -1)) if op.go_backwards else g
    for g, j in zip(res[n_x:n_x + n_h], float_states):
        grads[n_seqs + j] = g
    for g, i in zip(res[n_x + n_h:n_x + n_h + n_a], acc_for):
        grads[n_seqs + n_states + i] = g
    stacked_pairs = iter(res[n_x + n_h + n_a:])
    for i, (_, n) in zip(float_nonseqs, plan):
        for _ in range(n):
            u, v = next(stacked_pairs), next(stacked_pairs)
            # sum_t u_t^T v_t as one gemm over the stacked rows (T*B, .)
            total = matmul(swap_last(reshape(u, (-1, u.shape[-1]))), reshape(v, (-1, v.shape[-1])))
            k = n_seqs + n_states + i
            grads[k] = total if grads[k] is None else grads[k] + total
    for i in float_nonseqs:  # a weight the step does not use
        k = n_seqs + n_states + i
        if grads[k] is None:
            grads[k] = zeros_like(nonseqs[i])
    return grads


def _outer_product_terms(g: Var) -> tuple[list[tuple[Var, Var]], Var | None]:
    """Split a per-step weight gradient into terms ``matmul(transpose(u), v)`` (2-D u, v with
    static trailing sizes) and the rest (None when nothing is left)."""
    from .elementwise import Elemwise
    from .linalg import Matmul
    from .shape import Transpose

    terms, rest, stack = [], [], [g]
    while stack:
        v = stack.pop()
        node = v.owner
        if node is not None and isinstance(node.op, Elemwise) and node.op.scalar == "add" and \
                all(x.shape == v.shape for x in node.inputs):
            stack.extend(node.inputs)
            continue
        if node is not None and isinstance(node.op, Matmul) and v.ndim == 2:
            t, w = node.inputs
            if t.owner is not None and isinstance(t.owner.op, Transpose) and t.owner.op.perm == (1, 0):
                u = t.owner.inputs[0]
                if u.shape[-1] is not None and w.shape[-1] is not None:
                    terms.append((u, w))
                    continue
        rest.append(v)
    acc = None
    for v in rest:
        acc = v if acc is None else acc + v
    return terms, acc
