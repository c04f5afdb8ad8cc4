"""Shape ops: reshape, transpose, expand/squeeze, broadcast, concatenate/split, indexing, take,
one_hot, shape queries, stop_gradient; and `unbroadcast`, which every gradient uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import (
    Op,
    ShapeError,
    TensorType,
    Var,
    broadcast_static,
    constant,
    dtype_error,
    is_int,
    shape_error,
)
from ._base import as_var, normalize_axes, normalize_axis, promote
from .registry import Case, register


def _prod(dims):
    out = 1
    for d in dims:
        out *= d
    return out


# -- reshape -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reshape(Op):
    """NumPy reshape to `shape` (ints, at most one -1)."""

    is_view = True

    shape: tuple

    def infer(self, x):
        return (TensorType(x.dtype, self._resolve(x.shape, static=True)),)

    def infer_shape(self, node, shapes):
        return [self._resolve(shapes[0], static=False)]

    def _resolve(self, in_shape, static):
        if None in in_shape:  # only static
            return tuple(None if d == -1 else d for d in self.shape)
        total = _prod(in_shape)
        known = _prod(d for d in self.shape if d != -1)
        if -1 in self.shape:
            if known == 0 or total % known:
                raise (shape_error if static else _call_error)("reshape",
                       f"cannot reshape {tuple(in_shape)} into {self.shape}")
            return tuple(total // known if d == -1 else d for d in self.shape)
        if known != total:
            raise (shape_error if static else _call_error)("reshape",
                   f"cannot reshape {tuple(in_shape)} ({total} elements) into {self.shape} ({known} elements)")
        return self.shape

    def perform(self, node, x):
        return (x.reshape(node_shape(self, x)),)

    def vjp(self, node, cotangents):
        return [reshape_like(cotangents[0], node.inputs[0])]


def node_shape(op: Reshape, x: np.ndarray) -> tuple:
    return op._resolve(x.shape, static=False)


def _call_error(op, msg):
    return ShapeError(f"{op}: {msg}")


@dataclass(frozen=True)
class ReshapeLike(Op):
    """Reshape the first input to the (call-time) shape of the second; used by gradients when a
    shape has several unknown dimensions."""

    is_view = True
    value_inputs = 1  # `like` gives its shape only

    def infer(self, x, like):
        return (TensorType(x.dtype, like.shape),)

    def infer_shape(self, node, shapes):
        if _prod(shapes[0]) != _prod(shapes[1]):
            raise ShapeError(f"reshape_like: cannot reshape {tuple(shapes[0])} into {tuple(shapes[1])}")
        return [tuple(shapes[1])]

    def perform(self, node, x, like):
        return (x.reshape(like.shape),)

    def vjp(self, node, cotangents):
        return [reshape_like(cotangents[0], node.inputs[0]), None]


def reshape(x, shape) -> Var:
    """NumPy ``reshape``; one entry may be -1.

    >>> import graphc as gc
    >>> gc.reshape(gc.placeholder("x", (None, 28, 28)), (-1, 784)).shape
    (None, 784)
    """
    x = as_var(x)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < -1 for d in shape) \
            or shape.count(-1) > 1:
        raise shape_error("reshape", f"shape must be ints >= 0 with at most one -1, got {shape}")
    shape = tuple(int(d) for d in shape)
    if shape == x.shape:
        return x
    return Reshape(shape)(x)


def reshape_like(x: Var, like: Var) -> Var:
    """Reshape `x` to `like`'s shape (static when possible, else bound at call time)."""
    if x.shape == like.shape and None not in x.shape:
        return x
    if like.shape.count(None) == 0:
        return Reshape(like.shape)(x)
    if like.shape.count(None) == 1:
        return Reshape(tuple(-1 if d is None else d for d in like.shape))(x)
    return ReshapeLike()(x, like)


# -- axes permutations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Transpose(Op):
    """Permute axes (NumPy ``transpose``)."""

    perm: tuple

    def infer(self, x):
        return (TensorType(x.dtype, tuple(x.shape[p] for p in self.perm)),)

    def infer_shape(self, node, shapes):
        return [tuple(shapes[0][p] for p in self.perm)]

    def perform(self, node, x):
        return (np.transpose(x, self.perm),)

    def vjp(self, node, cotangents):
        return [transpose(cotangents[0], tuple(np.argsort(self.perm)))]


def transpose(x, axes=None) -> Var:
    """Permute axes; with no `axes`, reverse them (so ``x.T`` of a matrix is its transpose).

    >>> import graphc as gc
    >>> gc.transpose(gc.placeholder("x", (2, 3, 4)), (2, 0, 1)).shape
    (4, 2, 3)
    """
    x = as_var(x)
    perm = tuple(reversed(range(x.ndim))) if axes is None else tuple(normalize_axis(a, x.shape, "transpose")
                                                                      for a in axes)
    if sorted(perm) != list(range(x.ndim)):
        raise shape_error("transpose", f"axes {axes} are not a permutation of {x.ndim} axes")
    if perm == tuple(range(x.ndim)):
        return x
    return Transpose(tuple(int(p) for p in perm))(x)


def swap_last(x: Var) -> Var:
    perm = list(range(x.ndim))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return transpose(x, perm)


@dataclass(frozen=True)
class ExpandDims(Op):
    """Insert size-1 axes at `axes` (positions in the output)."""

    is_view = True

    axes: tuple

    def infer(self, x):
        return (TensorType(x.dtype, self._shape(x.shape)),)

    def infer_shape(self, node, shapes):
        return [self._shape(shapes[0])]

    def _shape(self, shape):
        out, it = [], iter(shape)
        for i in range(len(shape) + len(self.axes)):
            out.append(1 if i in self.axes else next(it))
        return tuple(out)

    def perform(self, node, x):
        return (np.expand_dims(x, self.axes),)

    def vjp(self, node, cotangents):
        return [Squeeze(self.axes)(cotangents[0])]


@dataclass(frozen=True)
class Squeeze(Op):
    """Remove size-1 axes `axes`."""

    is_view = True

    axes: tuple

    def infer(self, x):
        for a in self.axes:
            if x.shape[a] != 1:
                raise shape_error("squeeze", f"axis {a} of shape {x.shape} is not statically 1")
        return (TensorType(x.dtype, tuple(d for i, d in enumerate(x.shape) if i not in self.axes)),)

    def infer_shape(self, node, shapes):
        return [tuple(d for i, d in enumerate(shapes[0]) if i not in self.axes)]

    def perform(self, node, x):
        return (np.squeeze(x, self.axes),)

    def vjp(self, node, cotangents):
        return [ExpandDims(self.axes)(cotangents[0])]


def expand_dims(x, axis) -> Var:
    """Insert size-1 axes (NumPy ``expand_dims``).

    >>> import graphc as gc
    >>> gc.expand_dims(gc.placeholder("x", (3,)), 0).shape
    (1, 3)
    """
    x = as_var(x)
    axes = normalize_axes(axis, x.ndim + (1 if isinstance(axis, (int, np.integer)) else len(axis)),
                          "expand_dims")
    return ExpandDims(axes)(x)


def squeeze(x, axis=None) -> Var:
    """Remove size-1 axes; with no `axis`, every statically-1 axis.

    >>> import graphc as gc
    >>> gc.squeeze(gc.placeholder("x", (1, 3, 1))).shape
    (3,)
    """
    x = as_var(x)
    axes = tuple(i for i, d in enumerate(x.shape) if d == 1) if axis is None else \
        normalize_axes(axis, x.shape, "squeeze")
    return Squeeze(axes)(x) if axes else x


# -- broadcasting ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BroadcastTo(Op):
    """Broadcast to a static `shape` (NumPy ``broadcast_to``)."""

    elementwise = True

    shape: tuple

    def infer(self, x):
        out = broadcast_static([x.shape, self.shape], "broadcast_to")
        if out != self.shape or x.ndim > len(self.shape):
            raise shape_error("broadcast_to", f"cannot broadcast {x.shape} to {self.shape}")
        return (TensorType(x.dtype, self.shape),)

    def perform(self, node, x):
        return (np.broadcast_to(x, self.shape),)

    def vjp(self, node, cotangents):
        return [unbroadcast(cotangents[0], node.inputs[0])]


@dataclass(frozen=True)
class BroadcastLike(Op):
    """Broadcast the first input to the shape of the second (bound at call time)."""

    elementwise = True
    value_inputs = 1  # `like` gives its shape only

    def infer(self, x, like):
        if x.ndim > like.ndim:
            raise shape_error("broadcast_like", f"cannot broadcast {x.shape} to {like.shape}")
        broadcast_static([x.shape, like.shape], "broadcast_like")
        return (TensorType(x.dtype, like.shape),)

    def infer_shape(self, node, shapes):
        return [tuple(shapes[1])]

    def perform(self, node, x, like):
        return (np.broadcast_to(x, like.shape),)

    def vjp(self, node, cotangents):
        return [unbroadcast(cotangents[0], node.inputs[0]), None]


def broadcast_to(x, shape) -> Var:
    """Broadcast `x` to a static shape.

    >>> import graphc as gc
    >>> gc.broadcast_to(gc.placeholder("x", (3,)), (2, 3)).shape
    (2, 3)
    """
    x = as_var(x)
    shape = tuple(int(d) for d in shape)
    return x if x.shape == shape else BroadcastTo(shape)(x)


def broadcast_like(x, like: Var) -> Var:
    x = as_var(x, like.dtype) if not isinstance(x, Var) else x
    return x if x.shape == like.shape and None not in x.shape else BroadcastLike()(x, like)


def zeros_like(x: Var, dtype: str | None = None) -> Var:
    """Zeros with `x`'s (call-time) shape."""
    return broadcast_like(constant(0, dtype or x.dtype), x)


def unbroadcast(g: Var, x: Var) -> Var:
    """Sum `g` over the axes along which `x` was broadcast, giving `x`'s shape and dtype."""
    from .elementwise import cast
    from .reduce import sum as reduce_sum

    lead = g.ndim - x.ndim
    axes = list(range(lead)) + [lead + i for i, d in enumerate(x.shape) if d == 1 and g.shape[lead + i] != 1]
    if axes:
        g = reduce_sum(g, tuple(axes), keepdims=True)
    if lead:
        g = Squeeze(tuple(range(lead)))(g)
    return cast(g, x.dtype) if g.dtype != x.dtype else g


# -- concatenate / split -----------------------------------------------------------------------


@dataclass(frozen=True)
class Concatenate(Op):
    """Join along `axis` (NumPy ``concatenate``)."""

    axis: int

    def infer(self, *xs):
        ndims = {x.ndim for x in xs}
        if len(ndims) != 1:
            raise shape_error("concatenate", f"inputs have different ranks: {[x.shape for x in xs]}")
        if len({x.dtype for x in xs}) != 1:
            raise dtype_error("concatenate", f"inputs must share a dtype, got {[x.dtype for x in xs]}")
        out = []
        for a in range(xs[0].ndim):
            dims = [x.shape[a] for x in xs]
            if a == self.axis:
                out.append(None if None in dims else sum(dims))
                continue
            known = {d for d in dims if d is not None}
            if len(known) > 1:
                raise shape_error("concatenate", f"shapes {[x.shape for x in xs]} differ on axis {a}, "
                                  f"not only on the concatenation axis {self.axis}")
            out.append(known.pop() if known else None)
        return (TensorType(xs[0].dtype, tuple(out)),)

    def infer_shape(self, node, shapes):
        for a in range(len(shapes[0])):
            if a != self.axis and len({s[a] for s in shapes}) > 1:
                raise ShapeError(f"concatenate: call-time shapes {[tuple(s) for s in shapes]} differ on axis {a}")
        out = list(shapes[0])
        out[self.axis] = sum(s[self.axis] for s in shapes)
        return [tuple(out)]

    def perform(self, node, *xs):
        return (np.concatenate(xs, self.axis),)

    def vjp(self, node, cotangents):
        return list(Split(self.axis, len(node.inputs))(cotangents[0], *node.inputs))


@dataclass(frozen=True)
class Split(Op):
    """Cut the first input along `axis` into pieces shaped like the other `n` inputs
    (a multi-output op; the gradient of concatenate)."""

    value_inputs = 1

    axis: int
    n: int

    @property
    def nout(self):
        return self.n

    def infer(self, x, *likes):
        return tuple(TensorType(x.dtype, like.shape) for like in likes)

    def infer_shape(self, node, shapes):
        return [tuple(s) for s in shapes[1:]]

    def perform(self, node, x, *likes):
        cuts = np.cumsum([like.shape[self.axis] for like in likes])[:-1]
        return tuple(np.split(x, cuts, self.axis))

    def vjp(self, node, cotangents):
        parts = [g if g is not None else zeros_like(o) for g, o in zip(cotangents, node.outputs)]
        return [concatenate(parts, self.axis)] + [None] * self.n


def split(x, sizes, axis: int = -1) -> list[Var]:
    """Cut `x` along `axis` into pieces of the given static `sizes` (one kernel; its gradient is
    one concatenate). The pieces' other dimensions follow `x`, bound at call time.

    >>> import graphc as gc
    >>> a, b = gc.split(gc.placeholder("z", (None, 6)), [2, 4], axis=1)
    >>> a.shape, b.shape
    ((None, 2), (None, 4))
    """
    x = as_var(x)
    axis = normalize_axis(axis, x.shape, "split")
    sizes = [int(n) for n in sizes]
    if not sizes or any(n <= 0 for n in sizes):
        raise shape_error("split", f"sizes must be positive ints, got {sizes}")
    if x.shape[axis] is not None and sum(sizes) != x.shape[axis]:
        raise shape_error("split", f"sizes {sizes} add up to {sum(sizes)}, but axis {axis} of {x.shape} has "
                                   f"{x.shape[axis]}")
    # the pieces' shapes come from slices that are only read for their shapes (never computed)
    likes, start = [], 0
    for n in sizes:
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(start, start + n)
        likes.append(getitem(x, tuple(idx)))
        start += n
    if len(sizes) == 1:
        return [x]
    return list(Split(axis, len(sizes))(x, *likes))


def concatenate(xs, axis: int = 0) -> Var:
    """Join a sequence of tensors along an existing axis.

    >>> import graphc as gc
    >>> a = gc.placeholder("a", (2, 3))
    >>> gc.concatenate([a, a], axis=1).shape
    (2, 6)
    """
    xs = [as_var(x) for x in xs]
    if not xs:
        raise shape_error("concatenate", "needs at least one input")
    dtype = promote(*xs)
    from .elementwise import cast

    xs = [cast(x, dtype) for x in xs]
    if len(xs) == 1:
        return xs[0]
    return Concatenate(normalize_axis(axis, xs[0].shape, "concatenate"))(*xs)


def stack(xs, axis: int = 0) -> Var:
    """Join tensors of equal shape along a new axis.

    >>> import graphc as gc
    >>> a = gc.placeholder("a", (2, 3))
    >>> gc.stack([a, a, a], axis=1).shape
    (2, 3, 3)
    """
    xs = [as_var(x) for x in xs]
    if not xs:
        raise shape_error("stack", "needs at least one input")
    shapes = [x.shape for x in xs]
    for s in shapes[1:]:
        if len(s) != len(shapes[0]) or any(a is not None and b is not None and a != b for a, b in zip(s, shapes[0])):
            raise shape_error("stack", f"inputs must have the same shape, got {', '.join(map(str, shapes))}")
    axis = normalize_axis(axis, xs[0].ndim + 1, "stack")
    return concatenate([ExpandDims((axis,))(x) for x in xs], axis)


# -- basic indexing ----------------------------------------------------------------------------


def _normalize_index(index, shape, op="getitem"):
    """Expand Ellipsis and pad with full slices; entries are ints, slices and None."""
    if not isinstance(index, tuple):
        index = (index,)
    for e in index:
        if isinstance(e, Var) or isinstance(e, (list, np.ndarray)):
            raise TypeError(f"{op}: only ints, slices, None and ... are supported as indices "
                            f"(got {type(e).__name__}); use gc.take for integer-array indexing")
        if not (e is None or e is Ellipsis or isinstance(e, slice) or
                (isinstance(e, (int, np.integer)) and not isinstance(e, bool))):
            raise TypeError(f"{op}: unsupported index {e!r}")
        if isinstance(e, slice):
            for part in (e.start, e.stop, e.step):
                if part is not None and not isinstance(part, (int, np.integer)):
                    raise TypeError(f"{op}: slice bounds must be ints or None, got {e!r}")
            if e.step == 0:
                raise shape_error(op, "slice step cannot be zero")
    n_ell = sum(e is Ellipsis for e in index)
    if n_ell > 1:
        raise shape_error(op, "an index can only have a single ellipsis")
    used = sum(1 for e in index if e is not None and e is not Ellipsis)
    if used > len(shape):
        raise shape_error(op, f"too many indices ({used}) for a tensor of shape {shape}")
    fill = (slice(None),) * (len(shape) - used)
    if n_ell:
        k = index.index(Ellipsis)
        index = index[:k] + fill + index[k + 1:]
    else:
        index = index + fill
    out = []
    for e in index:
        if isinstance(e, slice):
            out.append(("slice", e.start, e.stop, e.step))
        elif e is None:
            out.append(None)
        else:
            out.append(int(e))
    return tuple(out)


def _index_shape(idx, shape, op, static):
    out, axis = [], 0
    for e in idx:
        if e is None:
            out.append(1)
            continue
        d = shape[axis]
        axis += 1
        if isinstance(e, int):
            if d is not None and not -d <= e < d:
                err = shape_error if static else _call_error
                raise err(op, f"index {e} is out of bounds for axis {axis - 1} with size {d} "
                              f"(tensor shape {tuple(shape)})")
            continue
        out.append(None if d is None else len(range(*slice(*e[1:]).indices(d))))
    return tuple(out)


def _np_index(idx):
    return tuple(slice(*e[1:]) if isinstance(e, tuple) else e for e in idx)


@dataclass(frozen=True)
class Subtensor(Op):
    """Basic indexing ``x[idx]`` with ints, slices and new axes."""

    idx: tuple

    @property
    def name(self):
        return "getitem"

    def infer(self, x):
        return (TensorType(x.dtype, _index_shape(self.idx, x.shape, "getitem", True)),)

    def infer_shape(self, node, shapes):
        return [_index_shape(self.idx, shapes[0], "getitem", False)]

    def perform(self, node, x):
        return (np.array(x[_np_index(self.idx)], copy=True),)

    def vjp(self, node, cotangents):
        return [SubtensorGrad(self.idx)(cotangents[0], node.inputs[0])]


@dataclass(frozen=True)
class SubtensorGrad(Op):
    """Zeros shaped like the second input, with the first written at ``[idx]``."""

    value_inputs = 1  # the rest give the shape of x

    idx: tuple

    def infer(self, g, like):
        return (TensorType(g.dtype, like.shape),)

    def infer_shape(self, node, shapes):
        return [tuple(shapes[1])]

    def perform(self, node, g, like):
        out = np.zeros(like.shape, g.dtype)
        out[_np_index(self.idx)] = g
        return (out,)

    def vjp(self, node, cotangents):
        return [Subtensor(self.idx)(cotangents[0]), None]


def getitem(x, index) -> Var:
    """``x[index]`` for ints, slices, None (new axis) and Ellipsis.

    >>> import graphc as gc
    >>> gc.placeholder("x", (None, 5))[:, 1:4].shape
    (None, 3)
    """
    x = as_var(x)
    idx = _normalize_index(index, x.shape)
    if all(e == ("slice", None, None, None) for e in idx):
        return x
    return Subtensor(idx)(x)


# -- take / one_hot ----------------------------------------------------------------------------


def _check_indices(op, indices, size, axis):
    if indices.size and (indices.min() < -size or indices.max() >= size):
        bad = indices[(indices < -size) | (indices >= size)].flat[0]
        raise IndexError(f"{op}: index {bad} is out of range for axis {axis} of size {size}")


@dataclass(frozen=True)
class Take(Op):
    """NumPy ``take(x, indices, axis)``: gather along one axis with an integer index tensor."""

    axis: int

    def infer(self, x, idx):
        if not is_int(idx.dtype):
            raise dtype_error("take", f"indices must be int32 or int64, got {idx.dtype}")
        a = self.axis
        return (TensorType(x.dtype, x.shape[:a] + idx.shape + x.shape[a + 1:]),)

    def perform(self, node, x, idx):
        _check_indices("take", idx, x.shape[self.axis], self.axis)
        return (np.take(x, idx, axis=self.axis),)

    def vjp(self, node, cotangents):
        x, idx = node.inputs
        return [TakeGrad(self.axis)(cotangents[0], idx, x), None]


@dataclass(frozen=True)
class TakeGrad(Op):
    """Scatter-add the first input into zeros shaped like the third, at `indices` along `axis`."""

    value_inputs = 2  # the gradient and the indices; the rest give the shape

    axis: int

    def infer(self, g, idx, like):
        return (TensorType(g.dtype, like.shape),)

    def infer_shape(self, node, shapes):
        return [tuple(shapes[2])]

    def perform(self, node, g, idx, like):
        out = np.zeros(like.shape, g.dtype)
        np.add.at(out, (slice(None),) * self.axis + (idx,), g)
        return (out,)

    def vjp(self, node, cotangents):
        return [Take(self.axis)(cotangents[0], node.inputs[1]), None, None]


def take(x, indices, axis: int = 0) -> Var:
    """Gather entries of `x` along `axis` (NumPy ``take``); indices must be in range.

    >>> import graphc as gc
    >>> E = gc.placeholder("E", (100, 8))
    >>> gc.take(E, gc.placeholder("i", (None, 5), "int32")).shape
    (None, 5, 8)
    """
    x = as_var(x)
    indices = as_var(indices) if isinstance(indices, Var) else as_var(np.asarray(indices))
    return Take(normalize_axis(axis, x.shape, "take"))(x, indices)


@dataclass(frozen=True)
class OneHot(Op):
    """``one_hot(indices, depth)``: a new last axis of length `depth`; out-of-range rows are 0."""

    depth: int
    dtype: str

    def infer(self, idx):
        if not is_int(idx.dtype):
            raise dtype_error("one_hot", f"indices must be int32 or int64, got {idx.dtype}")
        return (TensorType(self.dtype, idx.shape + (self.depth,)),)

    def perform(self, node, idx):
        return ((idx[..., None] == np.arange(self.depth)).astype(self.dtype),)

    differentiable = False

    def vjp(self, node, cotangents):
        return [None]


def one_hot(indices, depth: int, dtype: str = "float32") -> Var:
    """One-hot encode integer `indices` into a new last axis of length `depth`.

    >>> import graphc as gc
    >>> gc.one_hot(gc.placeholder("t", (None,), "int32"), 10).shape
    (None, 10)
    """
    from ..core import canonical_dtype

    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth <= 0:
        raise shape_error("one_hot", f"depth must be a positive int, got {depth!r}")
    idx = as_var(indices) if isinstance(indices, Var) else as_var(np.asarray(indices))
    return OneHot(int(depth), canonical_dtype(dtype))(idx)


# -- shape queries and gradient control --------------------------------------------------------


@dataclass(frozen=True)
class Dim(Op):
    """The size of `axis` as an int64 scalar (static sizes are folded to constants)."""

    value_inputs = 0  # reads only the input's shape

    axis: int
    differentiable = False

    def infer(self, x):
        return (TensorType("int64", ()),)

    def perform(self, node, x):
        return (np.array(x.shape[self.axis], "int64"),)

    def vjp(self, node, cotangents):
        return [None]


def dim(x: Var, axis: int) -> Var:
    """The size of one axis of `x`, as an int64 scalar Var (a constant when it is static)."""
    axis = normalize_axis(axis, x.shape, "dim")
    d = x.shape[axis]
    return constant(d, "int64") if d is not None else Dim(axis)(x)


@dataclass(frozen=True)
class StopGradient(Op):
    """Identity whose gradient is zero."""

    is_view = True
    keeps_shape = True

    def infer(self, x):
        return (x,)

    def perform(self, node, x):
        return (x,)

    def vjp(self, node, cotangents):
        return [None]


def stop_gradient(x) -> Var:
    """Pass `x` through unchanged, but let no gradient flow back into it.

    >>> import graphc as gc
    >>> gc.stop_gradient(gc.placeholder("x", (2,))).shape
    (2,)
    """
    return StopGradient()(as_var(x))


# -- test recipes ------------------------------------------------------------------------------


@register("reshape")
def _sample_reshape(d):
    shape = d.shape(1, 3)
    return Case(lambda x: reshape(x, (-1,)) * 1.5, [d.array(shape)])


@register("transpose")
def _sample_transpose(d):
    shape = d.shape(2, 3)
    perm = d.choice([tuple(reversed(range(len(shape)))), tuple(range(1, len(shape))) + (0,)])
    return Case(lambda x: transpose(x, perm), [d.array(shape)])


@register("expand_dims")
def _sample_expand(d):
    shape = d.shape(0, 2)
    axis = d.integers(0, len(shape))
    return Case(lambda x: expand_dims(x, axis), [d.array(shape)])


@register("squeeze")
def _sample_squeeze(d):
    shape = d.shape(0, 2) + (1,)
    return Case(lambda x: squeeze(x), [d.array(shape)])


@register("broadcast_to")
def _sample_broadcast(d):
    shape = d.shape(0, 2)
    return Case(lambda x: broadcast_to(x, (3,) + shape), [d.array(shape)])


@register("concatenate")
def _sample_concat(d):
    shape = d.shape(1, 3)
    axis = d.integers(0, len(shape) - 1)
    other = tuple(s + 1 if i == axis else s for i, s in enumerate(shape))
    return Case(lambda a, b: concatenate([a, b], axis), [d.array(shape), d.array(other)])


@register("split")
def _sample_split(d):
    shape = d.shape(1, 3, min_side=2)
    axis = d.integers(0, len(shape) - 1)
    first = d.integers(1, shape[axis] - 1)

    def build(a):
        p, q = split(a, [first, shape[axis] - first], axis)
        return concatenate([q * 2.0, p], axis)  # both pieces reach the output

    return Case(build, [d.array(shape)])


@register("stack")
def _sample_stack(d):
    shape = d.shape(0, 2)
    axis = d.integers(0, len(shape))
    return Case(lambda a, b: stack([a, b], axis), [d.array(shape), d.array(shape)])


@register("getitem")
def _sample_getitem(d):
    shape = d.shape(1, 3, min_side=2)
    index = d.choice([(0,), (slice(1, None),), (slice(None, None, -1),), (Ellipsis, slice(0, 1)),
                      (None, -1), (slice(None, None, 2), None)])
    return Case(lambda x: getitem(x, index), [d.array(shape)])


@register("take")
def _sample_take(d):
    shape = d.shape(1, 3)
    axis = d.integers(0, len(shape) - 1)
    idx = d.int_array(d.shape(0, 2), 0, shape[axis] - 1)
    return Case(lambda x, i: take(x, i, axis), [d.array(shape), idx.astype("int32")], wrt=(0,))


@register("one_hot", differentiable=False)
def _sample_one_hot(d):
    idx = d.int_array(d.shape(0, 2), -1, 5)
    return Case(lambda i: one_hot(i, 5, "float64"), [idx.astype("int64")])


@register("stop_gradient", differentiable=False)
def _sample_stop(d):
    return Case(lambda x: stop_gradient(x) * 2.0, [d.array(d.shape())])
