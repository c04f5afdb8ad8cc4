"""Function: compiles a graph once, then checks arguments and runs the backend's program.

Argument checks name the offending input. Updates follow Theano: every update expression is
computed from the values before the call, then all are written. Random ops' call counters are
advanced by implicit updates, so each call draws fresh numbers.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping, Sequence

import numpy as np

from .backends import compile_graph, resolve_backend
from .backends.args import convert_arg
from .core import DTypeError, Graph, Placeholder, ShapeError, SharedVar, Var, constant, leaves, matches, toposort

# placeholder and shared are IR constructors (graphc.core); re-exported where they used to live
from .core import placeholder as placeholder
from .core import shared as shared
from .passes import optimize


class Function:
    """A compiled graph. Call it with arrays for `inputs` (positionally or by name).

    Attributes: `graph` (the optimised Graph; print it), `source` (generated code, "" for ref),
    `inputs`, `outputs`, `updates`.
    """

    def __init__(self, inputs: Sequence[Var], outputs, updates=None, backend: str | None = None,
                 exclude_passes: Sequence[str] = (), allow_input_downcast: bool = False, debug: bool = False,
                 to_host: bool = False):
        self.inputs = _check_inputs(inputs)
        # per input: (placeholder, NumPy dtype, static shape, whether every dimension is static)
        self._arg_specs = [(p, np.dtype(p.dtype), tuple(p.shape), None not in p.shape) for p in self.inputs]
        self._single = isinstance(outputs, Var)
        outs = [outputs] if self._single else list(outputs) if isinstance(outputs, (list, tuple)) else None
        if outs is None:
            raise TypeError(f"function: outputs must be a Var or a list of Vars, got {type(outputs).__name__}")
        for i, o in enumerate(outs):
            if not isinstance(o, Var):
                raise TypeError(f"function: outputs[{i}] is {type(o).__name__}, not a Var")
        self.outputs = outs
        self.updates = _check_updates(updates)
        self.updates += _rng_updates(outs + [e for _, e in self.updates], {id(t) for t, _ in self.updates})
        backend = resolve_backend(backend)
        self.backend = backend
        self.allow_input_downcast = allow_input_downcast
        self.debug = debug
        targets = [t for t, _ in self.updates]
        exprs = outs + [e for _, e in self.updates]
        _check_missing_inputs(self.inputs, exprs)
        self.graph = optimize(Graph(self.inputs, exprs), exclude=exclude_passes)
        self._program = compile_graph(backend, self.graph, len(outs), targets, debug=debug, to_host=to_host)
        # Thread safety: a call holds this function's lock and the lock of every shared variable
        # it reads or updates, taken in one global order (by id), so no two calls can deadlock
        # and no update is lost or torn. Calls of functions without common state run in parallel.
        self._call_lock = threading.Lock()
        shared_vars = {id(t): t for t in targets}
        shared_vars.update((id(v), v) for v in leaves(self.graph.outputs) if isinstance(v, SharedVar))
        self._var_locks = [shared_vars[k].lock for k in sorted(shared_vars)]
        # The backend's path for a repeat call with ready arrays (C: `CProgram.fast_call`): it
        # checks what it relies on and returns None for anything else, which then takes the
        # checking path below. Not in debug mode, which compares every call with the reference.
        self._fast = None if debug else getattr(self._program, "fast_call", None)
        if os.environ.get("GRAPHC_DEBUG", "0") not in ("", "0"):
            print(f"[graphc] optimised graph ({backend}):\n{self.graph}", file=sys.stderr)
            if self.source:
                print(f"[graphc] generated source:\n{self.source}", file=sys.stderr)

    @property
    def source(self) -> str:
        """The generated source text ("" for the reference backend)."""
        return self._program.source

    @property
    def memory_bytes(self) -> int:
        """Bytes of workspace (intermediates) held now: one buffer shared by every input shape,
        the size of the largest call so far; 0 before the first call and for the reference
        backend."""
        held = getattr(self._program, "held_bytes", None)
        if held is not None:
            return held
        sizes = getattr(self._program, "memory_bytes", {})
        return max(sizes.values(), default=0)

    def __call__(self, *args, **kwargs):
        fast, outs = self._fast, None
        if fast is not None and not kwargs:
            # no shared state: the program's own lock serialises what its calls share
            outs = self._locked(fast, args) if self._var_locks else fast(args)
        if outs is None:
            outs = self._locked(self._program, self._bind_args(args, kwargs))
        return outs[0] if self._single else outs

    def _locked(self, run, values):
        """`run(values)` holding this function's lock and the locks of its shared variables."""
        with self._call_lock:
            for lock in self._var_locks:
                lock.acquire()
            try:
                return run(values)
            finally:
                for lock in reversed(self._var_locks):
                    lock.release()

    def _bind_args(self, args, kwargs) -> list[np.ndarray]:
        convert = getattr(self._program, "convert_arg", convert_arg)  # the cuda backend also takes CuPy arrays
        if not kwargs and len(args) == len(self.inputs):  # every argument by position: the common case
            downcast, out = self.allow_input_downcast, []
            for (p, dtype, shape, static), v in zip(self._arg_specs, args):
                # an array of the right dtype and shape passes as is (convert_arg would say the same)
                if type(v) is np.ndarray and v.dtype == dtype and (v.shape == shape if static else
                                                                  matches(shape, v.shape)):
                    out.append(v)
                else:
                    out.append(convert(p, v, downcast))
            return out
        names = [p.name for p in self.inputs]
        if len(args) > len(self.inputs):
            raise TypeError(f"function takes {len(self.inputs)} argument(s) ({', '.join(names)}), got {len(args)}")
        values = list(args) + [None] * (len(self.inputs) - len(args))
        given = [True] * len(args) + [False] * (len(self.inputs) - len(args))
        for key, val in kwargs.items():
            if key not in names:
                raise TypeError(f"function got an unexpected argument {key!r}; inputs are {', '.join(names)}")
            k = names.index(key)
            if given[k]:
                raise TypeError(f"function got argument {key!r} twice")
            values[k], given[k] = val, True
        missing = [n for n, g in zip(names, given) if not g]
        if missing:
            raise TypeError(f"function takes {len(self.inputs)} argument(s) ({', '.join(names)}); "
                            f"missing {', '.join(missing)}")
        return [convert(p, v, self.allow_input_downcast) for p, v in zip(self.inputs, values)]


def function(inputs: Sequence[Var], outputs, updates=None, backend: str | None = None, **options) -> Function:
    """Compile `outputs` (a Var or a list) as a function of the placeholders `inputs`.

    `updates` is a list of ``(shared_var, new_value_expr)`` pairs (or a dict), applied after
    each call from the values before it. `backend` is "c" (the default; ``$GRAPHC_BACKEND``
    changes it), "ref" (NumPy, the oracle) or "cuda". Options: ``exclude_passes=("fold", ...)``,
    ``allow_input_downcast=True`` (accept float64 arrays for float32 inputs, etc.),
    ``debug=True`` (C, CUDA: run the reference backend beside it on every call and raise on the
    first kernel whose output differs), ``to_host=True`` (CUDA: return NumPy arrays; by default
    a CUDA function returns CuPy arrays and accepts NumPy or CuPy arguments).

    >>> import graphc as gc
    >>> x = gc.placeholder("x", (None, 2))
    >>> f = gc.function([x], (x * 2.0).sum())
    >>> float(f(np.ones((3, 2), "float32")))
    12.0
    """
    return Function(inputs, outputs, updates, backend, **options)


def _check_inputs(inputs) -> list[Placeholder]:
    if isinstance(inputs, Var):
        raise TypeError("function: inputs must be a list of placeholders, e.g. [x]")
    inputs = list(inputs)
    for i, v in enumerate(inputs):
        if isinstance(v, SharedVar):
            raise TypeError(f"function: inputs[{i}] ({v.name}) is a shared variable; shared values are "
                            "used implicitly, so leave them out of inputs")
        if not isinstance(v, Placeholder):
            raise TypeError(f"function: inputs[{i}] must be a placeholder, got {v!r}")
    if len({id(v) for v in inputs}) != len(inputs):
        raise ValueError("function: the same placeholder appears twice in inputs")
    names = [v.name for v in inputs]
    if len(set(names)) != len(names):
        raise ValueError(f"function: input names must be unique, got {names}")
    return inputs


def _check_updates(updates) -> list[tuple[SharedVar, Var]]:
    if updates is None:
        return []
    pairs = list(updates.items()) if isinstance(updates, Mapping) else list(updates)
    out, seen = [], set()
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"function: updates[{i}] must be a (shared_var, expression) pair")
        target, expr = pair
        if not isinstance(target, SharedVar):
            raise TypeError(f"function: updates[{i}] target must be a shared variable, got {target!r}")
        if id(target) in seen:
            raise ValueError(f"function: shared variable {target.name!r} is updated twice")
        seen.add(id(target))
        if not isinstance(expr, Var):
            expr = constant(np.asarray(expr, dtype=target.dtype))
        if expr.dtype != target.dtype:
            raise DTypeError(f"function: update of {target.name!r} ({target.dtype}) has dtype {expr.dtype}; "
                             f"cast it with .astype('{target.dtype}')")
        if not _fits(expr.shape, target.shape):
            raise ShapeError(f"function: update of {target.name!r} {target.shape} has shape {expr.shape}")
        out.append((target, expr))
    return out


def _fits(expr_shape, target_shape) -> bool:
    return len(expr_shape) == len(target_shape) and all(
        e is None or e == t for e, t in zip(expr_shape, target_shape))


def _rng_updates(exprs, already) -> list[tuple[SharedVar, Var]]:
    out = []
    for node in toposort(exprs):
        for counter in node.op.rng_counters(node):
            if id(counter) not in already:
                already.add(id(counter))
                out.append((counter, counter + 1))
    return out


def _check_missing_inputs(inputs, exprs) -> None:
    given = {id(v) for v in inputs}
    for v in leaves(exprs):
        if isinstance(v, Placeholder) and id(v) not in given:
            raise ValueError(f"function: the outputs depend on placeholder {v.name!r}, which is not in inputs "
                             f"({', '.join(p.name for p in inputs) or 'none'})")
