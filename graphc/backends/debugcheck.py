"""Debug mode shared by the compiled backends: compare every kernel's outputs with the reference
backend, in schedule order, and name the first kernel that disagrees."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def close_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise agreement: a float32/float64 tolerance, NaN equal to NaN, exact otherwise."""
    if a.dtype.kind == "f":
        tol = 1e-4 if a.dtype == np.float32 else 1e-9
        return np.isclose(a, b, rtol=tol, atol=tol, equal_nan=True)
    return a == b


def check_kernels(schedule, expected: dict[int, np.ndarray], value_of: Callable, backend: str,
                  source_path: str, compile_step: Callable | None = None) -> None:
    """Raise AssertionError at the first kernel output that differs from `expected` (ref values
    by Var id). `value_of(var)` returns the compiled backend's value, or None when it was not kept.
    For a loop (scan) kernel, `compile_step(graph, n_outputs)` builds the step graph alone as a
    debug-mode program of this backend: the message then names the first differing step and,
    from that program's own check, the first differing kernel inside the step."""
    for i, k in enumerate(schedule.kernels):
        for v in k.outputs:
            got = value_of(v)
            if got is None:
                continue
            want = expected[id(v)]
            ok = close_mask(got, want) if got.shape == want.shape else np.zeros((), bool)
            if not ok.all():
                bad = np.argwhere(~ok)
                where = tuple(bad[0]) if len(bad) else ()
                inside = ""
                node = k.nodes[-1]
                if compile_step is not None and getattr(node.op, "inner_graph", False) and hasattr(node.op, "body"):
                    inside = explain_loop(node, expected, value_of, compile_step)
                raise AssertionError(
                    f"debug mode: kernel k{i} ({k.label}) disagrees with the reference backend on {v.type} at "
                    f"index {where}: {backend} gave {got[where] if got.shape else got!r}, ref gave "
                    f"{want[where] if want.shape else want!r}.{inside} Generated source: {source_path}")


def explain_loop(node, expected: dict[int, np.ndarray], value_of: Callable, compile_step: Callable) -> str:
    """Where inside a scan the compiled loop first disagrees with ref: the step, and the kernel of
    the step graph (compiled alone in debug mode and run on ref's inputs of that step)."""
    from ..core import Constant, Graph
    from ..passes import optimize

    op = node.op
    ins = [v.value if isinstance(v, Constant) else expected.get(id(v)) for v in node.inputs]
    first = None
    for k, keep in enumerate(op.keep):
        got, want = value_of(node.outputs[k]), expected.get(id(node.outputs[k]))
        if keep != "all" or got is None or want is None or got.shape != want.shape:
            continue
        bad = [t for t in range(want.shape[0]) if not close_mask(got[t], want[t]).all()]
        if bad and (first is None or bad[0] < first):
            first = bad[0]
    if first is None or any(a is None for a in ins):
        return " (no stacked output of the loop pins down the step)"
    n_seqs, n_states = op.n_seqs, op.n_states
    seqs, inits, rest = ins[:n_seqs], ins[n_seqs:n_seqs + n_states], ins[n_seqs + n_states:]
    s = seqs[0].shape[0] - 1 - first if op.go_backwards and seqs else first
    states = []
    for j in range(n_states):
        k = op.state_of.index(j)
        if first == 0:
            states.append(inits[j])
        elif op.keep[k] == "all":
            states.append(expected[id(node.outputs[k])][first - 1])
        else:
            return f" The loop first differs at step {first} (its state {j} is not stacked, so the step is not rerun)."
    args = [np.ascontiguousarray(a[s]) for a in seqs] + [np.ascontiguousarray(a) for a in states + rest]
    step = compile_step(optimize(Graph(list(op.body.inputs), list(op.body.outputs))), len(op.body.outputs))
    try:
        step(args)
    except AssertionError as e:
        inner = str(e).removeprefix("debug mode: ")
        return f" The loop first differs at step {first}; the step graph alone, on ref's inputs of that step: {inner}"
    return (f" The loop first differs at step {first}, but the step graph alone agrees with ref on that step's "
            "inputs: the loop's hand-over of states or its stacking of outputs is wrong.")
