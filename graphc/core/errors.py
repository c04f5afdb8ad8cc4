"""graphc's exceptions, and the helper that points an error at the user's own source line."""

from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ShapeError(ValueError):
    """A shape that cannot work: raised while the graph is built, or at call time for bound dims."""


class DTypeError(TypeError):
    """A dtype that an op or a function argument does not accept."""


class CompileError(RuntimeError):
    """A backend failed to build generated code; carries the compiler's message and the source path."""

    def __init__(self, message: str, source_path: str | None = None, log: str = ""):
        super().__init__(message)
        self.source_path = source_path
        self.log = log


class GradError(ValueError):
    """`grad` was asked for something that has no gradient (non-scalar cost, integer wrt, ...)."""


def user_frame() -> tuple[str, int] | None:
    """(file, line) of the innermost stack frame outside the graphc package (cheap: no I/O)."""
    frame = sys._getframe(1)
    prefix = _PACKAGE_DIR + os.sep
    while frame is not None:
        path = frame.f_code.co_filename
        if not os.path.abspath(path).startswith(prefix):
            return path, frame.f_lineno
        frame = frame.f_back
    return None


def format_origin(origin: tuple[str, int] | None) -> str:
    """``file:line: code`` for a frame found by `user_frame`."""
    if origin is None:
        return "<unknown>"
    import linecache

    path, line = origin
    code = linecache.getline(path, line).strip()
    return f"{path}:{line}: {code}" if code else f"{path}:{line}"


def user_line() -> str:
    """Return ``file:line: code`` of the innermost stack frame outside the graphc package.

    >>> isinstance(user_line(), str)
    True
    """
    return format_origin(user_frame())


def shape_error(op: str, message: str) -> ShapeError:
    """Build a ShapeError that names the op, the problem and the user's line."""
    return ShapeError(f"{op}: {message}\n  at {user_line()}")


def dtype_error(op: str, message: str) -> DTypeError:
    """Build a DTypeError that names the op, the problem and the user's line."""
    return DTypeError(f"{op}: {message}\n  at {user_line()}")
