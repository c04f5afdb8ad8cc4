"""The IR: types, Vars, nodes, ops, graphs and errors. Depends on nothing else in graphc."""

from .broadcast import broadcast_concrete, broadcast_static
from .constructors import placeholder, shared
from .dtypes import DTYPES, FLOAT_DTYPES, INT_DTYPES, canonical_dtype, is_float, is_int, result_dtype
from .errors import CompileError, DTypeError, GradError, ShapeError, dtype_error, shape_error, user_line
from .fgraph import Graph
from .graph import (
    Constant,
    Node,
    Op,
    Placeholder,
    SharedVar,
    Var,
    add_storage_observer,
    apply,
    clone_replace,
    constant,
    leaves,
    register_operators,
    toposort,
    unique,
)
from .types import TensorType, compatible, format_shape, matches, normalize_shape

__all__ = [
    "DTYPES", "FLOAT_DTYPES", "INT_DTYPES", "CompileError", "Constant", "DTypeError", "GradError", "Graph",
    "Node", "Op", "Placeholder", "ShapeError", "SharedVar", "TensorType", "Var", "apply", "unique",
    "broadcast_concrete",
    "clone_replace", "broadcast_static", "canonical_dtype", "constant", "dtype_error", "format_shape", "is_float",
    "is_int",
    "compatible", "leaves", "matches", "normalize_shape", "result_dtype", "shape_error", "toposort", "user_line",
    "add_storage_observer", "placeholder", "register_operators", "shared",
]
