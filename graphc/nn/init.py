"""Weight initializers: ``init(shape, rng) -> np.ndarray`` (float32), looked up by Keras name with `get`.

`rng` is a ``np.random.Generator`` or an int seed (the same seed gives the same array); None draws
from a fresh, unseeded generator. Fans come from the shape (`compute_fans`): a Dense kernel is
``(in, out)``; a convolution kernel is OIHW ``(out, in, kh, kw)``, so ``fan_in = in * kh * kw`` and
``fan_out = out * kh * kw``.

The variance-scaling initializers draw from the plain (untruncated) normal with the formula's
standard deviation, as in the lecture notes and PyTorch (Keras truncates at two standard
deviations and rescales, which gives the same standard deviation):

=================  =========================================
glorot_uniform     U(-a, a), a = sqrt(6 / (fan_in + fan_out))
glorot_normal      N(0, s^2), s = sqrt(2 / (fan_in + fan_out))
he_uniform         U(-a, a), a = sqrt(6 / fan_in)
he_normal          N(0, s^2), s = sqrt(2 / fan_in)
lecun_uniform      U(-a, a), a = sqrt(3 / fan_in)
lecun_normal       N(0, s^2), s = sqrt(1 / fan_in)
=================  =========================================

>>> import numpy as np
>>> w = get("glorot_uniform")((784, 10), np.random.default_rng(0))
>>> w.dtype, w.shape, bool(np.abs(w).max() <= np.sqrt(6 / 794))
(dtype('float32'), (784, 10), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Initializer = Callable[..., np.ndarray]

__all__ = [
    "compute_fans", "constant", "get", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "identity",
    "lecun_normal", "lecun_uniform", "normal", "ones", "orthogonal", "uniform", "zeros",
]


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        out = tuple(shape)
    except TypeError:
        raise TypeError(f"initializer: shape must be a tuple of ints, got {shape!r}") from None
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in out):
        raise ValueError(f"initializer: shape must contain non-negative ints (static sizes), got {shape!r}")
    return tuple(int(d) for d in out)


def _rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"initializer: rng must be a numpy.random.Generator, an int seed or None, got {rng!r}")


def compute_fans(shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of `shape`.

    ``()`` -> (1, 1); ``(n,)`` -> (n, n); Dense ``(in, out)`` -> (in, out); OIHW (and any rank >= 3,
    ``(out, in, *kernel)``) -> (in * prod(kernel), out * prod(kernel)).

    >>> compute_fans((784, 10)), compute_fans((32, 16, 3, 3))
    ((784, 10), (144, 288))
    """
    shape = _shape(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _uniform(shape, rng, limit: float) -> np.ndarray:
    return _rng(rng).uniform(-limit, limit, size=_shape(shape)).astype(np.float32)


def _normal(shape, rng, std: float) -> np.ndarray:
    return (_rng(rng).standard_normal(size=_shape(shape)) * std).astype(np.float32)


def _fan_avg(shape) -> float:
    fan_in, fan_out = compute_fans(shape)
    return max(1.0, (fan_in + fan_out) / 2.0)


def _fan_in(shape) -> float:
    return float(max(1, compute_fans(shape)[0]))


def zeros(shape, rng=None) -> np.ndarray:
    """All zeros (Keras ``"zeros"``; the default bias initializer).

    >>> zeros((2, 3)).sum(), zeros((2, 3)).dtype
    (np.float32(0.0), dtype('float32'))
    """
    return np.zeros(_shape(shape), np.float32)


def ones(shape, rng=None) -> np.ndarray:
    """All ones (Keras ``"ones"``; batch normalisation's scale).

    >>> ones(3).tolist()
    [1.0, 1.0, 1.0]
    """
    return np.ones(_shape(shape), np.float32)


def constant(value: float = 0.0) -> Initializer:
    """An initializer filling every entry with `value`.

    >>> constant(0.1)((2,), None).tolist() == [np.float32(0.1)] * 2
    True
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"constant: value must be a number, got {value!r}")

    def init(shape, rng=None) -> np.ndarray:
        return np.full(_shape(shape), value, np.float32)

    init.__name__ = f"constant({value!r})"
    return init


def normal(std: float = 0.05, mean: float = 0.0) -> Initializer:
    """An initializer drawing from ``N(mean, std**2)`` (Keras ``"random_normal"``: std 0.05).

    >>> normal(0.01)((1000, 100), 0).std().round(3)
    np.float32(0.01)
    """
    if not (isinstance(std, (int, float)) and std >= 0 and math.isfinite(std)):
        raise ValueError(f"normal: std must be a non-negative finite number, got {std!r}")

    def init(shape, rng=None) -> np.ndarray:
        return (_normal(shape, rng, std) + np.float32(mean)).astype(np.float32)

    init.__name__ = f"normal(std={std!r})"
    return init


def uniform(limit: float = 0.05) -> Initializer:
    """An initializer drawing from ``U(-limit, limit)`` (Keras ``"random_uniform"``/``"uniform"``: 0.05).

    >>> bool(np.abs(uniform(0.1)((100,), 0)).max() <= 0.1)
    True
    """
    if not (isinstance(limit, (int, float)) and limit >= 0 and math.isfinite(limit)):
        raise ValueError(f"uniform: limit must be a non-negative finite number, got {limit!r}")

    def init(shape, rng=None) -> np.ndarray:
        return _uniform(shape, rng, limit)

    init.__name__ = f"uniform(limit={limit!r})"
    return init


def glorot_uniform(shape, rng=None) -> np.ndarray:
    """Glorot/Xavier uniform: ``U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))`` (Keras' Dense default).

    >>> bool(np.abs(glorot_uniform((20, 30), 0)).max() <= np.sqrt(6 / 50))
    True
    """
    return _uniform(shape, rng, math.sqrt(3.0 / _fan_avg(shape)))


def glorot_normal(shape, rng=None) -> np.ndarray:
    """Glorot/Xavier normal: ``N(0, s**2)`` with ``s = sqrt(2 / (fan_in + fan_out))``.

    >>> glorot_normal((400, 600), 0).std().round(3)
    np.float32(0.045)
    """
    return _normal(shape, rng, math.sqrt(1.0 / _fan_avg(shape)))


def he_uniform(shape, rng=None) -> np.ndarray:
    """He/Kaiming uniform (for ReLU): ``U(-a, a)`` with ``a = sqrt(6 / fan_in)``.

    >>> bool(np.abs(he_uniform((24, 5), 0)).max() <= 0.5)
    True
    """
    return _uniform(shape, rng, math.sqrt(6.0 / _fan_in(shape)))


def he_normal(shape, rng=None) -> np.ndarray:
    """He/Kaiming normal (for ReLU): ``N(0, s**2)`` with ``s = sqrt(2 / fan_in)``.

    >>> he_normal((200, 1000), 0).std().round(2)
    np.float32(0.1)
    """
    return _normal(shape, rng, math.sqrt(2.0 / _fan_in(shape)))


def lecun_uniform(shape, rng=None) -> np.ndarray:
    """LeCun uniform: ``U(-a, a)`` with ``a = sqrt(3 / fan_in)``.

    >>> bool(np.abs(lecun_uniform((12, 5), 0)).max() <= 0.5)
    True
    """
    return _uniform(shape, rng, math.sqrt(3.0 / _fan_in(shape)))


def lecun_normal(shape, rng=None) -> np.ndarray:
    """LeCun normal (the lecture notes' "Xavier for tanh"): ``N(0, s**2)`` with ``s = sqrt(1 / fan_in)``.

    >>> lecun_normal((100, 1000), 0).std().round(2)
    np.float32(0.1)
    """
    return _normal(shape, rng, math.sqrt(1.0 / _fan_in(shape)))


def orthogonal(shape, rng=None, gain: float = 1.0) -> np.ndarray:
    """A (semi-)orthogonal matrix times `gain` (Keras ``"orthogonal"``, the recurrent-kernel default).
    Ranks above 2 are flattened to ``(prod(shape[:-1]), shape[-1])``.

    >>> q = orthogonal((4, 4), 0); bool(np.allclose(q.T @ q, np.eye(4), atol=1e-6))
    True
    """
    shape = _shape(shape)
    if len(shape) < 2:
        raise ValueError(f"orthogonal: needs a shape of rank >= 2, got {shape}")
    rows, cols = math.prod(shape[:-1]), shape[-1]
    a = _rng(rng).standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape).astype(np.float32)


def identity(shape, rng=None, gain: float = 1.0) -> np.ndarray:
    """`gain` times the identity matrix (2-D shapes only; Keras ``"identity"``).

    >>> identity((2, 3)).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    shape = _shape(shape)
    if len(shape) != 2:
        raise ValueError(f"identity: needs a 2-D shape, got {shape}")
    return (gain * np.eye(*shape)).astype(np.float32)


_BY_NAME: dict[str, Initializer] = {
    "zeros": zeros, "ones": ones, "constant": constant(0.0),
    "random_normal": normal(), "normal": normal(), "random_uniform": uniform(), "uniform": uniform(),
    "glorot_uniform": glorot_uniform, "glorot_normal": glorot_normal,
    "xavier_uniform": glorot_uniform, "xavier_normal": glorot_normal,
    "he_uniform": he_uniform, "he_normal": he_normal, "lecun_uniform": lecun_uniform, "lecun_normal": lecun_normal,
    "orthogonal": orthogonal, "identity": identity,
}


def _key(name: str) -> str:
    return name.replace("_", "").lower()


_KEYS = {_key(k): v for k, v in _BY_NAME.items()}


def get(initializer) -> Initializer:
    """An initializer by Keras name (``"glorot_uniform"``, ``"he_normal"``, ``"zeros"``, ``"GlorotUniform"``,
    ...) or a callable ``(shape, rng) -> array``, returned as is.

    >>> get("he_normal") is he_normal, get("HeNormal") is he_normal
    (True, True)
    """
    if callable(initializer):
        return initializer
    if isinstance(initializer, str) and _key(initializer) in _KEYS:
        return _KEYS[_key(initializer)]
    raise ValueError(f"unknown initializer {initializer!r}; choose one of {', '.join(sorted(_BY_NAME))} "
                     "or pass a callable (shape, rng) -> array")
