"""The IR's leaf constructors used by programs: `placeholder` (a function input) and `shared`
(state across calls). `constant` lives beside the Constant class in graph.py. Layers above core
(nn, optim, train) build their graphs with these; `graphc.runtime` re-exports them."""

from __future__ import annotations

from .dtypes import canonical_dtype
from .graph import Placeholder, SharedVar, Var, constant
from .types import TensorType, normalize_shape


def placeholder(name: str, shape=(), dtype="float32") -> Placeholder:
    """A function input. ``None`` in `shape` is a dimension bound at call time (usually the batch).

    >>> import graphc as gc
    >>> gc.placeholder("x", (None, 784)).shape
    (None, 784)
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"placeholder: name must be a non-empty str, got {name!r}")
    return Placeholder(TensorType(canonical_dtype(dtype), normalize_shape(shape)), name=name)


def shared(value, name: str | None = None, dtype=None) -> SharedVar:
    """State that persists across calls. The value is copied; Python floats become float32.

    >>> import numpy as np, graphc as gc
    >>> W = gc.shared(np.zeros((784, 10), "float32"), name="W")
    >>> W.shape, W.dtype
    ((784, 10), 'float32')
    """
    if isinstance(value, Var):
        raise TypeError("shared() takes an array, not a Var")
    return SharedVar(constant(value, dtype).value, name=name)
