"""Counter-based random numbers (Philox 4x32-10), identical on every backend.

Element ``i`` of the `k`-th call of a function is drawn from Philox with key = seed and
counter = (i low, i high, k low, k high). Each random op owns a hidden int64 shared counter `k`,
which every call of a function advances by one (an implicit update): each call draws fresh
numbers, and the same seed gives the same sequence of draws on ref, C and CUDA. Two random ops
with the same seed and shape draw the same numbers; give independent streams different seeds.

Bits to floats: a float32 uniform is ``(w0 >> 8) * 2**-24``; a float64 uniform takes 53 bits from
(w0, w1). A normal is Box-Muller in float64 with u1 from (w0, w1) in (0, 1] and u2 from (w2, w3),
rounded to the output dtype. bernoulli(p) is ``(w0 >> 8) * 2**-24 < p``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core import Op, SharedVar, TensorType, Var, canonical_dtype, is_float, normalize_shape, shape_error
from .registry import Case, register

PHILOX_M = (0xD2511F53, 0xCD9E8D57)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)


def philox4x32(counter: tuple, key: tuple, rounds: int = 10) -> tuple:
    """Philox 4x32 on arrays of 32-bit words held in uint64 (vectorised, NumPy).

    >>> [hex(int(w)) for w in philox4x32((0, 0, 0, 0), (0, 0))]
    ['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
    """
    c0, c1, c2, c3 = (np.asarray(c, np.uint64) & _MASK for c in counter)
    k0, k1 = (np.uint64(k) & _MASK for k in key)
    m0, m1 = np.uint64(PHILOX_M[0]), np.uint64(PHILOX_M[1])
    for r in range(rounds):
        if r:
            k0 = (k0 + np.uint64(PHILOX_W[0])) & _MASK
            k1 = (k1 + np.uint64(PHILOX_W[1])) & _MASK
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _MASK, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _MASK)
    return c0, c1, c2, c3


def _bits(n: int, seed: int, call: int) -> tuple:
    i = np.arange(n, dtype=np.uint64)
    return philox4x32((i, i >> np.uint64(32), call & 0xFFFFFFFF, (call >> 32) & 0xFFFFFFFF),
                      (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF))


def _u53(hi, lo):
    return ((hi >> np.uint64(5)).astype(np.float64) * 67108864.0 + (lo >> np.uint64(6)).astype(np.float64)) \
        * (1.0 / 9007199254740992.0)


def draw(dist: str, shape: tuple, dtype: str, seed: int, call: int, p: float = 0.5) -> np.ndarray:
    """The reference draw: the numbers every backend must produce for this (seed, call)."""
    n = int(np.prod(shape, dtype=np.int64))
    w0, w1, w2, w3 = _bits(n, seed, call)
    if dist == "uniform":
        out = (w0 >> np.uint64(8)).astype(np.float64) * 2.0**-24 if dtype == "float32" else _u53(w0, w1)
    elif dist == "normal":
        u1 = _u53(w0, w1) + 2.0**-53
        u2 = _u53(w2, w3)
        # log and cos through the C library, element by element, as the C backend's gc_normal
        # calls them: NumPy's SIMD float64 log/cos (AVX-512 builds) differ from libm in the last
        # bit for ~0.15% of the draws, which broke "identical draws on every backend"
        log_u1 = np.fromiter(map(math.log, u1.tolist()), np.float64, count=n)
        cos_u2 = np.fromiter(map(math.cos, (2.0 * np.pi * u2).tolist()), np.float64, count=n)
        out = np.sqrt(-2.0 * log_u1) * cos_u2
    elif dist == "bernoulli":
        out = (w0 >> np.uint64(8)).astype(np.float64) * 2.0**-24 < p
    else:
        raise ValueError(f"unknown distribution {dist!r}")
    return out.astype(dtype).reshape(shape)


@dataclass(frozen=True)
class Random(Op):
    """A draw of `dist` with a static `shape`, or the shape of the optional second input.

    Input 0 is the op's hidden call counter (an int64 shared scalar)."""

    dist: str
    shape: tuple | None
    dtype: str
    seed: int
    p: float = 0.5
    differentiable = False
    foldable = False

    @property
    def name(self):
        return f"random_{self.dist}"

    def infer(self, counter, like=None):
        return (TensorType(self.dtype, self.shape if like is None else like.shape),)

    def perform(self, node, counter, like=None):
        shape = self.shape if like is None else like.shape
        return (draw(self.dist, shape, self.dtype, self.seed, int(counter), self.p),)

    def vjp(self, node, cotangents):
        return [None] * len(node.inputs)

    def rng_counters(self, node):
        return [node.inputs[0]]


def counter_of(node) -> SharedVar:
    """The hidden call counter of a random node (its implicit update is ``counter + 1``)."""
    return node.inputs[0]


def _random(dist, shape, seed, dtype, like, p=0.5):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise ValueError(f"random.{dist}: seed must be an int in [0, 2**64), got {seed!r}")
    dtype = canonical_dtype(dtype)
    if dist != "bernoulli" and not is_float(dtype):
        raise ValueError(f"random.{dist}: dtype must be float32 or float64, got {dtype}")
    counter = SharedVar(np.zeros((), "int64"), name=f"rng_{dist}_{seed}_calls")
    if like is not None:
        if not isinstance(like, Var):
            raise TypeError(f"random.{dist}: like= must be a Var")
        return Random(dist, None, dtype, int(seed), float(p))(counter, like)
    if shape is None:
        raise shape_error(f"random.{dist}", "give a static shape or like=<Var>")
    shape = normalize_shape(shape)
    if None in shape:
        raise shape_error(f"random.{dist}", f"shape {shape} has unknown dimensions; pass like=<Var> instead")
    return Random(dist, shape, dtype, int(seed), float(p))(counter)


def uniform(shape=None, seed: int = 0, dtype: str = "float32", low: float = 0.0, high: float = 1.0,
            like: Var | None = None) -> Var:
    """Uniform numbers in [low, high); fresh at every call of the compiled function.

    >>> import graphc as gc
    >>> gc.random.uniform((2, 3), seed=1).shape
    (2, 3)
    """
    u = _random("uniform", shape, seed, dtype, like)
    return u if (low, high) == (0.0, 1.0) else u * (high - low) + low


def normal(shape=None, seed: int = 0, dtype: str = "float32", mean: float = 0.0, std: float = 1.0,
           like: Var | None = None) -> Var:
    """Normal numbers N(mean, std^2) (Box-Muller over Philox); fresh at every call.

    >>> import graphc as gc
    >>> x = gc.placeholder("x", (None, 4))
    >>> gc.random.normal(like=x, seed=7).shape
    (None, 4)
    """
    z = _random("normal", shape, seed, dtype, like)
    return z if (mean, std) == (0.0, 1.0) else z * std + mean


def bernoulli(p: float = 0.5, shape=None, seed: int = 0, dtype: str = "float32", like: Var | None = None) -> Var:
    """1 with probability `p`, else 0 (as `dtype`; "bool" allowed), fresh at every call.

    >>> import graphc as gc
    >>> gc.random.bernoulli(0.8, (10,), seed=3).dtype
    'float32'
    """
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"random.bernoulli: p must be in [0, 1], got {p}")
    return _random("bernoulli", shape, seed, dtype, like, p)


@register("random_uniform", differentiable=False)
def _sample_uniform(d):
    return Case(lambda x: x + uniform(like=x, seed=5, dtype="float64"), [d.array(d.shape())])


@register("random_normal", differentiable=False)
def _sample_normal(d):
    return Case(lambda x: x * normal(like=x, seed=9, dtype="float64"), [d.array(d.shape())])


@register("random_bernoulli", differentiable=False)
def _sample_bernoulli(d):
    return Case(lambda x: x * bernoulli(0.3, like=x, seed=2, dtype="float64"), [d.array(d.shape())])
