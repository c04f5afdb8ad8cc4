"""TensorType: a dtype plus a shape whose dimensions are ints, or None when bound at call time."""

from __future__ import annotations

from dataclasses import dataclass

from .dtypes import canonical_dtype
from .errors import ShapeError

Shape = tuple  # tuple[int | None, ...]


def normalize_shape(shape) -> Shape:
    """Check a user's shape: a tuple of non-negative ints or None.

    >>> normalize_shape([None, 3])
    (None, 3)
    """
    if isinstance(shape, int):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError as e:
        raise ShapeError(f"shape must be a tuple of ints or None, got {shape!r}") from e
    for d in dims:
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 0):
            raise ShapeError(f"shape must hold non-negative ints or None, got {shape!r}")
    return tuple(None if d is None else int(d) for d in dims)


def format_shape(shape: Shape) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


@dataclass(frozen=True)
class TensorType:
    """The static type of a Var. ``None`` in ``shape`` is a dimension bound at call time.

    >>> str(TensorType("float32", (None, 784)))
    'float32[?,784]'
    """

    dtype: str
    shape: Shape

    def __post_init__(self):
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        object.__setattr__(self, "shape", normalize_shape(self.shape))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(d is not None for d in self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}{format_shape(self.shape)}"


def compatible(a: Shape, b: Shape) -> bool:
    """Whether two static shapes can be the same at call time: equal rank, equal where both are known.

    >>> compatible((None, 3), (5, 3)), compatible((2, 3), (5, 3))
    (True, False)
    """
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def matches(static: Shape, concrete: tuple) -> bool:
    """Whether a concrete shape is an instance of a static (possibly partly unknown) shape."""
    return len(static) == len(concrete) and all(s is None or s == c for s, c in zip(static, concrete))
