"""What a backend can do, stated once, so that lowering chooses for it.

The schedule asks the Target before folding an epilogue into a gemm record; the memory plan
aligns workspace blocks to its `alignment`. A new backend describes itself with one Target
instead of teaching the passes about its library.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the gemm epilogues lowering knows how to fold
EPILOGUES = frozenset({"bias", "accumulate"})


@dataclass(frozen=True)
class Target:
    """A backend's capabilities as lowering sees them.

    gemm_epilogues: which of "bias" (C starts as bias rows, beta = 1) and "accumulate"
    (C starts as W, alpha = -lr: W - lr * a @ b in one gemm) the gemm records may carry.
    runtime_alpha: whether the gemm can take a scale computed at call time (a shared learning
    rate); without it only constant scales fold. alignment: byte alignment of every workspace
    block (a cache line on a CPU, a transaction segment on a GPU).

    >>> t = Target("c", frozenset({"bias"}))
    >>> t.folds("bias"), t.folds("accumulate")
    (True, False)
    """

    name: str
    gemm_epilogues: frozenset[str] = EPILOGUES
    runtime_alpha: bool = True
    alignment: int = 64

    def __post_init__(self) -> None:
        unknown = set(self.gemm_epilogues) - EPILOGUES
        if unknown:
            raise ValueError(f"Target {self.name!r}: unknown gemm epilogue(s) {sorted(unknown)}; "
                             f"known: {sorted(EPILOGUES)}")
        if self.alignment < 1 or self.alignment & (self.alignment - 1):
            raise ValueError(f"Target {self.name!r}: alignment must be a power of two, got {self.alignment}")

    def folds(self, epilogue: str) -> bool:
        """Whether gemm records for this target may carry `epilogue`."""
        return epilogue in self.gemm_epilogues


#: the default: everything folds (the C backend's OpenBLAS takes both epilogues)
DEFAULT_TARGET = Target("default")
