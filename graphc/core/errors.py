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


def user_line() -> str:
    """Return ``file:line: code`` of the innermost stack frame outside the graphc package.

    >>> isinstance(user_line(), str)
    True
    """
    frame = sys._getframe(1)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not path.startswith(_PACKAGE_DIR + os.sep):
            import linecache

            code = linecache.getline(path, frame.f_lineno).strip()
            return f"{path}:{frame.f_lineno}: {code}" if code else f"{path}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


def shape_error(op: str, message: str) -> ShapeError:
    """Build a ShapeError that names the op, the problem and the user's line."""
    return ShapeError(f"{op}: {message}\n  at {user_line()}")


def dtype_error(op: str, message: str) -> DTypeError:
    """Build a DTypeError that names the op, the problem and the user's line."""
    return DTypeError(f"{op}: {message}\n  at {user_line()}")
