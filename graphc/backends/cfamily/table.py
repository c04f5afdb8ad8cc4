"""Op class -> kernel function, looked up along the class hierarchy."""

from __future__ import annotations

from collections.abc import Callable


class KernelTable:
    """Kernel functions registered by op class (never by name string).

    >>> from graphc.ops.shape import Dim
    >>> table = KernelTable("C", {Dim: lambda *a: "dim kernel"})
    >>> table.lookup(Dim(axis=0))()
    'dim kernel'
    """

    def __init__(self, backend: str, entries: dict[type, Callable] | None = None):
        self.backend = backend
        self.entries: dict[type, Callable] = dict(entries or {})

    def __or__(self, other: KernelTable | dict) -> KernelTable:
        extra = other.entries if isinstance(other, KernelTable) else other
        return KernelTable(self.backend, {**self.entries, **extra})

    def lookup(self, op) -> Callable:
        """The kernel function for `op` (its class or the nearest base class registered)."""
        for cls in type(op).__mro__:
            fn = self.entries.get(cls)
            if fn is not None:
                return fn
        raise NotImplementedError(f"{self.backend} backend: no kernel for op {op.name} ({type(op).__name__})")
