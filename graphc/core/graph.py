"""The IR: Var, Node, Op, the leaf kinds, hash-consing and toposort.

Nodes are immutable and hash-consed: applying the same op (equal attributes) to the same input
Vars returns the existing node, so common subexpressions are shared as the graph is built.
An Op is a frozen dataclass; its attributes may be any hashable value, including a subgraph,
so control-flow ops (scan) fit without changing this module. Ops may have several outputs.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import TYPE_CHECKING

import numpy as np

from .dtypes import canonical_dtype
from .errors import DTypeError, ShapeError, user_frame
from .types import TensorType, matches

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


_operators = None


def register_operators(namespace) -> None:
    """Give Var its operators: `namespace` (graphc.ops, which calls this when it is imported) has
    the functions ``x + y``, ``x @ y``, ``x.sum()``, ... build (add, matmul, sum, ...). Core sits
    below the op library, so the op library plugs them in rather than core importing it."""
    global _operators
    _operators = namespace


def _ops():
    if _operators is None:
        raise RuntimeError("Var operators come from graphc.ops, which is not imported yet: import graphc")
    return _operators


class Var:
    """A symbolic tensor: a leaf (placeholder, constant, shared) or output `index` of `owner`."""

    __slots__ = ("type", "owner", "index", "name", "__weakref__")
    __array_ufunc__ = None  # make `ndarray + Var` defer to Var.__radd__

    def __init__(self, type: TensorType, owner: Node | None = None, index: int = 0, name: str | None = None):
        self.type = type
        self.owner = owner
        self.index = index
        self.name = name

    shape = property(lambda self: self.type.shape, doc="tuple of int | None")
    dtype = property(lambda self: self.type.dtype, doc="dtype name, e.g. 'float32'")
    ndim = property(lambda self: self.type.ndim)

    def __repr__(self) -> str:
        what = self.owner.op.name if self.owner is not None else type(self).__name__.lower()
        label = f" {self.name!r}" if self.name else ""
        return f"<Var{label} {self.type} from {what}>"

    def __bool__(self):
        raise TypeError("a symbolic Var has no truth value; use gc.where(...) for data-dependent choices")

    def __iter__(self):
        raise TypeError("a symbolic Var cannot be iterated; index it or use gc.split-style ops")

    def __len__(self):
        if not self.shape or self.shape[0] is None:
            raise TypeError(f"len() needs a static first dimension, {self} has shape {self.shape}")
        return self.shape[0]

    # arithmetic -------------------------------------------------------------------------------
    def __add__(self, o): return _ops().add(self, o)
    def __radd__(self, o): return _ops().add(o, self)
    def __sub__(self, o): return _ops().subtract(self, o)
    def __rsub__(self, o): return _ops().subtract(o, self)
    def __mul__(self, o): return _ops().multiply(self, o)
    def __rmul__(self, o): return _ops().multiply(o, self)
    def __truediv__(self, o): return _ops().divide(self, o)
    def __rtruediv__(self, o): return _ops().divide(o, self)
    def __pow__(self, o): return _ops().power(self, o)
    def __rpow__(self, o): return _ops().power(o, self)
    def __matmul__(self, o): return _ops().matmul(self, o)
    def __rmatmul__(self, o): return _ops().matmul(o, self)
    def __neg__(self): return _ops().negative(self)
    def __pos__(self): return self
    def __abs__(self): return _ops().abs(self)
    def __lt__(self, o): return _ops().less(self, o)
    def __le__(self, o): return _ops().less_equal(self, o)
    def __gt__(self, o): return _ops().greater(self, o)
    def __ge__(self, o): return _ops().greater_equal(self, o)
    # == and != stay identity comparisons (Vars are dict keys); use gc.equal / gc.not_equal.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __getitem__(self, index): return _ops().getitem(self, index)

    @property
    def T(self) -> Var:
        return _ops().transpose(self)

    def sum(self, axis=None, keepdims=False): return _ops().sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _ops().mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _ops().max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return _ops().min(self, axis, keepdims)
    def reshape(self, *shape): return _ops().reshape(self, shape[0] if len(shape) == 1 else shape)
    def transpose(self, *axes): return _ops().transpose(self, (axes[0] if len(axes) == 1 else axes) or None)
    def astype(self, dtype): return _ops().cast(self, dtype)


class Placeholder(Var):
    """A function input, bound to an array at call time."""

    __slots__ = ()


class Constant(Var):
    """A read-only array baked into the graph. Equal small constants are one Var."""

    __slots__ = ("value",)

    def __init__(self, value: np.ndarray, name: str | None = None):
        super().__init__(TensorType(value.dtype.name, value.shape), name=name)
        self.value = value


class SharedVar(Var):
    """State that persists across calls (weights, optimizer slots, RNG counters)."""

    __slots__ = ("_storage", "lock")
    _ids = itertools.count()

    def __init__(self, value: np.ndarray, name: str | None = None):
        super().__init__(TensorType(value.dtype.name, value.shape), name=name or f"shared{next(self._ids)}")
        self._storage = np.array(value, copy=True, order="C")
        #: held by every compiled call that reads or updates this variable (graphc.function takes
        #: the locks of all its shared variables in one global order), so that two functions
        #: updating it from two threads never interleave their writes
        self.lock = threading.Lock()

    def get_value(self) -> np.ndarray:
        """Return a copy of the current value.

        >>> import graphc as gc
        >>> gc.shared(np.ones(2, "float32")).get_value()
        array([1., 1.], dtype=float32)
        """
        with self.lock:  # never half of a concurrent call's update
            for obs in _storage_observers:
                obs.pull(self)
            return self._storage.copy()

    def set_value(self, value) -> None:
        """Replace the value (copied). The shape and dtype must match the variable's type.
        Takes the variable's lock, like every compiled call that uses it."""
        arr = np.asarray(value)
        if not matches(self.shape, arr.shape):
            raise ShapeError(f"set_value of {self.name!r}: expected shape {self.shape}, got {arr.shape}")
        if arr.dtype.name != self.dtype:
            if not np.can_cast(arr.dtype, self.dtype, "same_kind"):
                raise DTypeError(f"set_value of {self.name!r}: expected {self.dtype}, got {arr.dtype.name}")
            if arr.dtype.kind in "iu" and self.dtype.startswith("int") and arr.size:
                info = np.iinfo(self.dtype)
                if arr.min() < info.min or arr.max() > info.max:
                    raise DTypeError(f"set_value of {self.name!r}: values of the {arr.dtype.name} array do not "
                                     f"fit in {self.dtype}")
            if arr.dtype.kind == "f" and self.dtype.startswith("float") and arr.size:
                # a finite value beyond the target's range would silently become inf
                big = np.finfo(self.dtype).max
                finite = np.abs(arr[np.isfinite(arr)])
                if finite.size and finite.max() > big:
                    raise DTypeError(f"set_value of {self.name!r}: {finite.max():.6g} overflows {self.dtype} "
                                     f"(largest finite value {float(big):.6g})")
            arr = arr.astype(self.dtype)
        with self.lock:  # a concurrent call sees the old value or the new one, never a mix
            self._storage[...] = arr
            for obs in _storage_observers:
                obs.host_changed(self)

    @property
    def storage(self) -> np.ndarray:
        """The live array (no copy). Backends read and update it in place."""
        for obs in _storage_observers:  # the caller may read it (refresh it) and write it (upload again)
            obs.pull(self)
            obs.host_changed(self)
        return self._storage

    @property
    def host_array(self) -> np.ndarray:
        """The live host array, without telling the storage observers: for an observer itself
        (a backend keeping a device copy), which knows whether the array is current."""
        return self._storage


# Backends that keep copies of shared values elsewhere (the CUDA backend's device memory).
_storage_observers: list = []


def add_storage_observer(observer) -> None:
    """Register a keeper of copies of shared values: ``observer.pull(sv)`` must bring
    ``sv.host_array`` up to date before the host array is read, ``observer.host_changed(sv)``
    learns that it may have been written. The CUDA backend registers its device mirrors."""
    if observer not in _storage_observers:
        _storage_observers.append(observer)


class Node:
    """One application of an op to input Vars; produces ``op.nout`` output Vars."""

    __slots__ = ("op", "inputs", "outputs", "origin", "__weakref__")

    def __init__(self, op: Op, inputs: tuple[Var, ...], out_types: Sequence[TensorType]):
        self.op = op
        self.inputs = inputs
        self.outputs = tuple(Var(t, self, i) for i, t in enumerate(out_types))
        #: (file, line) of the user code that built this node, for call-time error messages
        self.origin = user_frame()

    def __repr__(self) -> str:
        return f"<Node {self.op.name}({', '.join(str(i.type) for i in self.inputs)})>"


_interned_nodes: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_interned_constants: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_CONSTANT_INTERN_LIMIT = 4096  # bytes; larger constants are compared by identity


class Op:
    """Base class of every operation. Subclasses are ``@dataclass(frozen=True)``.

    Everything about an op lives in its class: `infer` (types, raising ShapeError/DTypeError),
    `perform` (the NumPy reference), `vjp` (the gradient, built from graph ops) and
    `infer_shape` (call-time shapes, for backends that bind dimensions at run time).
    Passes read the facts an op declares below, never its name.
    """

    nout = 1
    #: True when output 0 is input 0's data seen differently (reshape, expand_dims, ...): no
    #: kernel runs, and the scheduler treats the output as an alias of the input's buffer.
    is_view = False
    #: True when output element i depends only on element i of each (broadcast) input: fusable
    #: into one elementwise loop.
    elementwise = False
    #: True when the output's shape is the (broadcast) shape of the inputs: output axis k is axis
    #: k of each input of the same rank (elementwise ops, cast, softmax, stop_gradient).
    keeps_shape = False
    #: How many leading inputs are read for their values; the rest only for their (call-time)
    #: shapes, like broadcast_like's `like`. None: every input is read.
    value_inputs = None
    #: False for ops whose output carries no gradient (comparisons, argmax, shape queries).
    differentiable = True
    #: False for ops with hidden state (random draws): never folded at compile time.
    foldable = True
    #: True for ops that hold a step graph (scan): their vjp takes ``vjp=`` (autodiff's primitive)
    inner_graph = False

    def rng_counters(self, node: Node) -> list:
        """The hidden call counters (int64 shared scalars) this node draws with; a function
        advances each by one per call, so every call draws fresh numbers."""
        return []

    @property
    def name(self) -> str:
        n = type(self).__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in n).lstrip("_")

    def inner_outputs(self) -> tuple:
        """The outputs of the graph this op holds (scan's step graph); () for ordinary ops."""
        return ()

    def with_inner_outputs(self, outputs: Sequence[Var]) -> Op:
        """This op holding a graph with `outputs` (same inner inputs, same types) instead: the
        rewrite engine uses it to optimise the step graph of a loop like the graph around it."""
        raise TypeError(f"{self.name} holds no inner graph")

    def attrs(self) -> dict:
        from dataclasses import fields, is_dataclass

        return {f.name: getattr(self, f.name) for f in fields(self)} if is_dataclass(self) else {}

    def infer(self, *types: TensorType) -> tuple[TensorType, ...]:
        raise NotImplementedError

    def perform(self, node: Node, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def vjp(self, node: Node, cotangents: Sequence[Var | None]) -> list[Var | None]:
        raise NotImplementedError(f"{self.name} has no gradient")

    def infer_shape(self, node: Node, shapes: Sequence[tuple]) -> list[tuple]:
        """Call-time output shapes from call-time input shapes (default: re-run `infer`)."""
        types = [TensorType(v.dtype, s) for v, s in zip(node.inputs, shapes)]
        return [t.shape for t in self.infer(*types)]

    def __call__(self, *inputs: Var):
        node = apply(self, inputs)
        return node.outputs[0] if self.nout == 1 else node.outputs


def apply(op: Op, inputs: Iterable[Var]) -> Node:
    """The node for `op` applied to `inputs`: the existing one when it was built before."""
    inputs = tuple(inputs)
    for v in inputs:
        if not isinstance(v, Var):
            raise TypeError(f"{op.name}: inputs must be Vars, got {type(v).__name__}")
    key = (op, inputs)
    node = _interned_nodes.get(key)
    if node is None:
        out_types = op.infer(*(v.type for v in inputs))
        node = Node(op, inputs, out_types)
        _interned_nodes[key] = node
    return node


def constant(value, dtype=None, name: str | None = None) -> Constant:
    """A constant Var. Python floats become float32 and ints int32 unless `dtype` says otherwise.

    >>> import graphc as gc
    >>> gc.constant(2.0).dtype
    'float32'
    """
    if isinstance(value, Var):
        raise TypeError("constant() takes a value, not a Var")
    if dtype is None and isinstance(value, (bool, np.bool_)):
        dtype = "bool"
    elif dtype is None and isinstance(value, float):
        dtype = "float32"
    elif dtype is None and isinstance(value, int):
        dtype = "int32"
    arr = np.asarray(value) if dtype is None else np.asarray(value, dtype=canonical_dtype(dtype))
    if arr.dtype.name not in ("float32", "float64", "int32", "int64", "bool"):
        arr = arr.astype(canonical_dtype(arr.dtype))
    arr = np.array(arr, order="C", copy=True)  # ascontiguousarray would make 0-d arrays 1-d
    arr.flags.writeable = False
    if arr.nbytes > _CONSTANT_INTERN_LIMIT or name is not None:
        return Constant(arr, name)
    key = (arr.dtype.name, arr.shape, arr.tobytes())
    c = _interned_constants.get(key)
    if c is None:
        c = Constant(arr)
        _interned_constants[key] = c
    return c


def unique(vs: Iterable) -> list:
    """`vs` without repeats (by identity), in first-seen order.

    >>> a = constant(1.0, name="a")
    >>> unique([a, a]) == [a]
    True
    """
    seen, out = set(), []
    for v in vs:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def toposort(outputs: Iterable[Var]) -> list[Node]:
    """Every node the outputs depend on, each after its inputs' nodes (iterative, no recursion)."""
    order: list[Node] = []
    done: set[int] = set()
    stack = [(v.owner, False) for v in outputs if v.owner is not None]
    while stack:
        node, expanded = stack.pop()
        if id(node) in done:
            continue
        if expanded:
            done.add(id(node))
            order.append(node)
            continue
        stack.append((node, True))
        for v in reversed(node.inputs):
            if v.owner is not None and id(v.owner) not in done:
                stack.append((v.owner, False))
    return order


def leaves(outputs: Iterable[Var]) -> list[Var]:
    """The leaf Vars (placeholders, constants, shared) the outputs depend on, in first-use order."""
    seen: dict[int, Var] = {}
    for v in outputs:
        if v.owner is None:
            seen.setdefault(id(v), v)
    for node in toposort(outputs):
        for v in node.inputs:
            if v.owner is None:
                seen.setdefault(id(v), v)
    return list(seen.values())


def clone_replace(outputs: Sequence[Var], replace: dict[Var, Var]) -> list[Var]:
    """The outputs recomputed with some Vars replaced by others (types are re-inferred).

    Ops that hold a subgraph (scan, composites) use this to inline their body.

    >>> import graphc as gc
    >>> x, y = gc.placeholder("x", (2,)), gc.placeholder("y", (2,))
    >>> (out,) = clone_replace([gc.exp(x) + 1.0], {x: y})
    >>> out.owner.inputs[0].owner.inputs[0] is y
    True
    """
    memo: dict[int, Var] = {id(k): v for k, v in replace.items()}
    for node in toposort(outputs):
        inputs = [memo.get(id(v), v) for v in node.inputs]
        if any(a is not b for a, b in zip(inputs, node.inputs)):
            for old, new in zip(node.outputs, apply(node.op, inputs).outputs):
                memo[id(old)] = new
    return [memo.get(id(o), o) for o in outputs]
