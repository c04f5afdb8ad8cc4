"""Hypothesis strategies for graphc graphs and input arrays: the ones graphc's own op-registry
tests use, public for users' property tests (needs hypothesis: ``pip install graphc[testing]``).

- `shapes`, `arrays`: shapes (small sides, for finite differences) and float64 arrays on them;
- `HypothesisDraw`: the registry's `Draw` protocol on hypothesis' ``data.draw``; `op_cases` gives
  the registry's sampled `Case` of an op (graph builder + arguments);
- `graphs`: random elementwise/broadcast/reduction graphs, as (build, args) pairs, for backend
  agreement and pass-soundness tests.

>>> import graphc as gc
>>> from hypothesis import given, settings
>>> from graphc import testing
>>> from graphc.testing import strategies as gst
>>> @settings(max_examples=5, deadline=None)
... @given(gst.arrays(gst.shapes(min_dims=1)))
... def test_softplus_grad(x):
...     testing.verify_grad(lambda v: gc.log(1 + gc.exp(v)), [x], n_tests=1)
>>> test_softplus_grad()
"""

from __future__ import annotations

try:
    from hypothesis import strategies as st
except ImportError as e:  # hypothesis is optional for graphc, needed only here
    raise ImportError("graphc.testing.strategies needs hypothesis: pip install 'graphc[testing]' "
                      "(or pip install hypothesis)") from e

from collections.abc import Callable

import numpy as np

from .. import ops
from ..ops import REGISTRY
from ..ops.registry import Case


class HypothesisDraw:
    """Implements graphc.ops.registry.Draw with hypothesis' `data.draw`.

    Array values come from a NumPy generator seeded by hypothesis: well spread (no accidental
    ties or all-zero arrays that make finite differences meaningless) yet reproducible.

    >>> from hypothesis import given, settings, strategies as st
    >>> @settings(max_examples=3, deadline=None)
    ... @given(st.data())
    ... def t(data):
    ...     assert len(HypothesisDraw(data).shape(min_dims=2, max_dims=2)) == 2
    >>> t()
    """

    def __init__(self, data):
        self.data = data
        self.rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))

    def shape(self, min_dims=0, max_dims=3, min_side=1, max_side=4):
        n = self.data.draw(st.integers(min_dims, max_dims), label="ndim")
        return tuple(self.data.draw(st.integers(min_side, max_side), label="side") for _ in range(n))

    def broadcast_shapes(self, n, min_dims=0, max_dims=3):
        base = self.shape(min_dims, max_dims)
        out = []
        for _ in range(n):
            drop = self.data.draw(st.integers(0, len(base)), label="drop leading")
            s = list(base[drop:])
            for i in range(len(s)):
                if self.data.draw(st.booleans(), label="to one"):
                    s[i] = 1
            out.append(tuple(s))
        return out

    def integers(self, lo, hi):
        return self.data.draw(st.integers(lo, hi))

    def boolean(self):
        return self.data.draw(st.booleans())

    def choice(self, options):
        return self.data.draw(st.sampled_from(list(options)))

    def array(self, shape, lo=-2.0, hi=2.0, avoid=()):
        x = self.rng.uniform(lo, hi, size=shape)
        for p in avoid:  # push values out of a 0.1-neighbourhood of kinks
            x = np.where(np.abs(x - p) < 0.1, p + np.where(x >= p, 0.15, -0.15), x)
        return np.asarray(x, dtype="float64")

    def int_array(self, shape, lo, hi):
        return self.rng.integers(lo, hi + 1, size=shape)


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4) -> st.SearchStrategy:
    """Shapes with small sides (finite differences cost one evaluation per element)."""
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def arrays(shape, lo: float = -2.0, hi: float = 2.0, dtype: str = "float64") -> st.SearchStrategy:
    """float arrays on `shape` (a tuple or a strategy of shapes), values uniform in [lo, hi)
    from a NumPy generator seeded by hypothesis (well spread, reproducible)."""
    shape_st = shape if isinstance(shape, st.SearchStrategy) else st.just(tuple(shape))
    return st.tuples(shape_st, st.integers(0, 2**32 - 1)).map(
        lambda t: np.random.default_rng(t[1]).uniform(lo, hi, size=t[0]).astype(dtype))


@st.composite
def op_cases(draw, name: str | None = None) -> Case:
    """A registered op's sampled `Case` (``case.build(*vars)``, ``case.args``); any op if `name`
    is None."""
    n = name if name is not None else draw(st.sampled_from(sorted(REGISTRY)))
    return REGISTRY[n].sample(HypothesisDraw(draw(st.data())))


_UNARY = ("negative", "exp", "tanh", "sigmoid", "softplus", "sin", "cos", "square", "abs", "relu")
_BINARY = ("add", "subtract", "multiply", "maximum", "minimum")


@st.composite
def graphs(draw, max_ops: int = 6, max_inputs: int = 3, shape=None, dtype: str = "float64",
           reductions: bool = True) -> tuple[Callable, list[np.ndarray]]:
    """A random graph as ``(build, args)``: ``build(*vars)`` applies a random chain of unary,
    broadcasting binary ops and (optionally) reductions over an axis to placeholders for
    `args`. `shape` fixes the inputs' broadcast shape (else small random shapes); large shapes
    exercise the C backend's threaded loops."""
    base = tuple(shape) if shape is not None else draw(shapes(1, 3, 1, 5))
    n_in = draw(st.integers(1, max_inputs))
    in_shapes = []
    for _ in range(n_in):
        drop = draw(st.integers(0, len(base) - 1))
        in_shapes.append(tuple(1 if draw(st.booleans()) and d > 1 and shape is None else d for d in base[drop:]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-2, 2, s).astype(dtype) for s in in_shapes]
    steps = []
    for _ in range(draw(st.integers(1, max_ops))):
        kind = draw(st.sampled_from(["unary", "binary", "reduce"] if reductions else ["unary", "binary"]))
        if kind == "unary":
            steps.append(("unary", draw(st.sampled_from(_UNARY)), None))
        elif kind == "binary":
            steps.append(("binary", draw(st.sampled_from(_BINARY)), draw(st.integers(0, n_in - 1))))
        else:
            steps.append(("reduce", draw(st.sampled_from(["sum", "max", "mean"])), draw(st.integers(-1, 2))))

    def build(*vs):
        x, cur = vs[0], in_shapes[0]  # `cur`: x's concrete shape, so every step is valid NumPy
        for kind, name, extra in steps:
            if kind == "unary":
                x = getattr(ops, name)(x)
            elif kind == "binary":
                try:
                    cur = np.broadcast_shapes(cur, in_shapes[extra])
                except ValueError:  # a reduction changed x's shape: this operand no longer fits
                    continue
                x = getattr(ops, name)(x, vs[extra])
            elif x.ndim > 0:
                axis = extra % x.ndim if extra >= 0 else None
                x = getattr(ops, name)(x, axis=axis)
                cur = () if axis is None else cur[:axis] + cur[axis + 1:]
        return x

    build.steps = steps  # for the failure report
    return build, args
