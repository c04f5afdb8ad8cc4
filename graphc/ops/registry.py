"""The op registry: one sampling recipe per public op, so tests cover a new op automatically.

An op family registers, next to its definition, a recipe that draws a random test case through
a small `Draw` interface (shapes, axes, arrays). The test suite implements `Draw` with
hypothesis and runs every registered case through gradient checks, backend agreement and the
pass-soundness checks; library code never imports hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Draw(Protocol):
    """What a sampling recipe may ask for. Tests implement it on top of hypothesis."""

    def shape(self, min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4) -> tuple: ...
    def broadcast_shapes(self, n: int, min_dims: int = 0, max_dims: int = 3) -> list[tuple]: ...
    def integers(self, lo: int, hi: int) -> int: ...
    def boolean(self) -> bool: ...
    def choice(self, options: Sequence): ...
    def array(self, shape: tuple, lo: float = -2.0, hi: float = 2.0, avoid: Sequence[float] = ()) -> np.ndarray: ...
    def int_array(self, shape: tuple, lo: int, hi: int) -> np.ndarray: ...


@dataclass
class Case:
    """One test case: `build(*vars)` applied to placeholders bound to `args`."""

    build: Callable
    args: list[np.ndarray]
    #: indices of args to differentiate; None = every float arg
    wrt: tuple[int, ...] | None = None
    #: finite differences need smooth points; recipes keep values away from kinks and ties
    notes: dict = field(default_factory=dict)


@dataclass
class OpEntry:
    name: str
    sample: Callable[[Draw], Case]
    differentiable: bool = True
    second_order: bool = True


REGISTRY: dict[str, OpEntry] = {}


def register(name: str, differentiable: bool = True, second_order: bool = True):
    """Decorator: register `sample(draw) -> Case` as the test recipe of public op `name`."""

    def deco(sample: Callable[[Draw], Case]):
        if name in REGISTRY:
            raise ValueError(f"op {name!r} registered twice")
        REGISTRY[name] = OpEntry(name, sample, differentiable, second_order)
        return sample

    return deco
