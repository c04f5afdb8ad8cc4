"""Runtime semantics of compiled functions (ref backend): arguments, outputs, Theano-style
updates, shared storage, symbolic batch sizes, random numbers, dtype promotion and debug output.

Expected values come from NumPy or from the documented formulas, never from graphc itself.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ops.random import philox4x32

# every test here runs on the reference backend and on the C backend
pytestmark = pytest.mark.usefixtures("backend")


def ph(name, shape, dtype="float32"):
    return gc.placeholder(name, shape, dtype)


# -- arguments and outputs ---------------------------------------------------------------------


def test_positional_and_keyword_arguments():
    x, y = ph("x", (None, 2)), ph("y", (None, 2))
    f = gc.function([x, y], x - 2.0 * y)
    a = np.array([[1.0, 2.0], [3.0, 4.0]], "float32")
    b = np.array([[0.5, -1.0], [2.0, 0.25]], "float32")
    expected = a - 2 * b
    np.testing.assert_array_equal(f(a, b), expected)
    np.testing.assert_array_equal(f(x=a, y=b), expected)
    np.testing.assert_array_equal(f(y=b, x=a), expected)
    np.testing.assert_array_equal(f(a, y=b), expected)


def test_single_output_returns_an_array_and_a_list_returns_a_list():
    x = ph("x", (3,))
    a = np.array([1.0, 2.0, 3.0], "float32")
    single = gc.function([x], x.sum())(a)
    assert isinstance(single, np.ndarray) and single.shape == () and float(single) == 6.0
    one = gc.function([x], [x.sum()])(a)
    assert isinstance(one, list) and len(one) == 1 and float(one[0]) == 6.0
    two = gc.function([x], [x.sum(), x * 2.0])(a)
    assert isinstance(two, list) and len(two) == 2
    np.testing.assert_array_equal(two[1], a * 2)
    assert isinstance(gc.function([x], x * 2.0)(a), np.ndarray)


def test_outputs_empty_with_only_updates():
    x = ph("x", ())
    total = gc.shared(np.zeros((), "float32"), name="total")
    f = gc.function([x], [], updates=[(total, total + x)])
    assert f(np.float32(1.5)) == []
    assert f(np.float32(2.0)) == []
    assert float(total.get_value()) == 3.5


def test_function_without_inputs():
    W = gc.shared(np.array([1.0, -2.0], "float32"), name="W")
    f = gc.function([], gc.square(W).sum())
    assert float(f()) == 5.0


def test_updates_given_as_a_dict():
    c = gc.shared(np.zeros((), "int64"), name="c")
    f = gc.function([], [], updates={c: c + 2})
    f()
    f()
    assert int(c.get_value()) == 4


def test_output_of_an_input_and_of_a_constant():
    x = ph("x", (2,))
    a = np.array([1.0, 2.0], "float32")
    out = gc.function([x], [x, gc.constant(np.array([7.0, 8.0], "float32"))])(a)
    np.testing.assert_array_equal(out[0], a)
    np.testing.assert_array_equal(out[1], [7.0, 8.0])


# -- Theano update semantics -------------------------------------------------------------------


def test_updates_swap_two_shared_variables():
    a = gc.shared(np.array([1.0, 2.0], "float32"), name="a")
    b = gc.shared(np.array([3.0, 4.0], "float32"), name="b")
    swap = gc.function([], [], updates=[(a, b), (b, a)])
    swap()
    np.testing.assert_array_equal(a.get_value(), [3.0, 4.0])
    np.testing.assert_array_equal(b.get_value(), [1.0, 2.0])
    swap()
    np.testing.assert_array_equal(a.get_value(), [1.0, 2.0])
    np.testing.assert_array_equal(b.get_value(), [3.0, 4.0])


def test_every_update_reads_pre_call_values():
    a = gc.shared(np.array(1.0, "float64"), name="a")
    b = gc.shared(np.array(0.0, "float64"), name="b")
    c = gc.shared(np.array(0.0, "float64"), name="c")
    # b and c read a before a's update is written, whatever the order of the pairs.
    f = gc.function([], [a * 1.0, b * 1.0], updates=[(b, a * 10.0), (a, a + 1.0), (c, a + b)])
    out_a, out_b = f()
    assert float(out_a) == 1.0 and float(out_b) == 0.0  # outputs also see pre-call values
    assert (float(a.get_value()), float(b.get_value()), float(c.get_value())) == (2.0, 10.0, 1.0)
    out_a, out_b = f()
    assert float(out_a) == 2.0 and float(out_b) == 10.0
    assert (float(a.get_value()), float(b.get_value()), float(c.get_value())) == (3.0, 20.0, 12.0)


def test_output_of_a_shared_variable_is_its_pre_call_value():
    W = gc.shared(np.array([1.0, 2.0], "float32"), name="W")
    f = gc.function([], W, updates=[(W, W * 3.0)])
    first = f()
    np.testing.assert_array_equal(first, [1.0, 2.0])
    second = f()
    np.testing.assert_array_equal(second, [3.0, 6.0])
    np.testing.assert_array_equal(first, [1.0, 2.0])  # the earlier result was not overwritten
    np.testing.assert_array_equal(W.get_value(), [9.0, 18.0])


def test_sgd_step_matches_numpy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 3)).astype("float32")
    T = rng.normal(size=(8, 2)).astype("float32")
    W0 = rng.normal(size=(3, 2)).astype("float32")
    x, t = ph("x", (None, 3)), ph("t", (None, 2))
    W = gc.shared(W0, name="W")
    loss = gc.mean(gc.square(x @ W - t))
    gW = gc.grad(loss, W)
    step = gc.function([x, t], loss, updates=[(W, W - 0.1 * gW)])
    Wn = W0.astype("float64")
    for lo, hi in ((0, 5), (5, 6), (5, 8)):  # batch sizes 5, 1, 3
        xb, tb = X[lo:hi], T[lo:hi]
        r = xb.astype("float64") @ Wn - tb
        expected_loss = np.mean(r**2)
        Wn = Wn - 0.1 * (2.0 / r.size) * xb.astype("float64").T @ r
        np.testing.assert_allclose(float(step(xb, tb)), expected_loss, rtol=1e-5)
        np.testing.assert_allclose(W.get_value(), Wn, rtol=1e-5, atol=1e-6)


# -- shared storage copies ---------------------------------------------------------------------


def test_get_value_returns_a_copy():
    W = gc.shared(np.ones(3, "float32"), name="W")
    v = W.get_value()
    v[:] = 42.0
    np.testing.assert_array_equal(W.get_value(), np.ones(3, "float32"))


def test_set_value_and_shared_copy_their_argument():
    src = np.ones(3, "float32")
    W = gc.shared(src, name="W")
    src[:] = 5.0
    np.testing.assert_array_equal(W.get_value(), np.ones(3, "float32"))
    new = np.array([1.0, 2.0, 3.0], "float32")
    W.set_value(new)
    new[:] = -1.0
    np.testing.assert_array_equal(W.get_value(), [1.0, 2.0, 3.0])


def test_set_value_is_seen_by_compiled_functions():
    W = gc.shared(np.ones(2, "float32"), name="W")
    f = gc.function([], W.sum())
    assert float(f()) == 2.0
    W.set_value(np.array([4.0, 5.0], "float32"))
    assert float(f()) == 9.0


def test_returned_outputs_do_not_alias_shared_storage():
    W = gc.shared(np.array([1.0, 2.0], "float32"), name="W")
    f = gc.function([], W)
    out = f()
    out[:] = 99.0
    np.testing.assert_array_equal(W.get_value(), [1.0, 2.0])
    np.testing.assert_array_equal(f(), [1.0, 2.0])


def test_arguments_are_not_modified():
    x = ph("x", (None, 2))
    W = gc.shared(np.zeros((1, 2), "float32"), name="W")
    f = gc.function([x], x * 2.0, updates=[(W, W + x.sum(axis=0, keepdims=True))])
    a = np.array([[1.0, 2.0]], "float32")
    f(a)
    np.testing.assert_array_equal(a, [[1.0, 2.0]])


# -- symbolic batch sizes ----------------------------------------------------------------------


def test_one_function_many_batch_sizes():
    rng = np.random.default_rng(1)
    W0 = rng.normal(size=(3, 2)).astype("float32")
    b0 = rng.normal(size=(2,)).astype("float32")
    x = ph("x", (None, 3))
    W, b = gc.shared(W0, name="W"), gc.shared(b0, name="b")
    h = gc.tanh(x @ W + b)
    f = gc.function([x], [h, h.sum(axis=1), h.mean(), gc.softmax(h)])
    for n in (4, 1, 7, 1, 2):
        a = rng.normal(size=(n, 3)).astype("float32")
        ref = np.tanh(a.astype("float64") @ W0 + b0)
        e = np.exp(ref - ref.max(axis=1, keepdims=True))
        outs = f(a)
        assert [o.shape for o in outs] == [(n, 2), (n,), (), (n, 2)]
        np.testing.assert_allclose(outs[0], ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(outs[1], ref.sum(axis=1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(outs[2], ref.mean(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(outs[3], e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_gradient_with_several_batch_sizes():
    x = ph("x", (None, 2), "float64")
    W = gc.shared(np.array([[1.0, -1.0], [0.5, 2.0]]), name="W")
    loss = gc.mean(gc.square(x @ W))
    f = gc.function([x], gc.grad(loss, W))
    for n in (1, 3, 6):
        a = np.arange(2.0 * n).reshape(n, 2) / 3.0
        expected = 2.0 / (n * 2) * a.T @ (a @ W.get_value())
        np.testing.assert_allclose(f(a), expected, rtol=1e-12)


def test_batch_of_size_zero():
    x = ph("x", (None, 3))
    f = gc.function([x], [x * 2.0, x.sum(axis=1)])
    a, s = f(np.zeros((0, 3), "float32"))
    assert a.shape == (0, 3) and s.shape == (0,)


# -- random numbers ----------------------------------------------------------------------------

PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, expected", PHILOX_KAT)
def test_philox4x32_10_known_answers(counter, key, expected):
    # Known-answer vectors of Philox4x32-10 from Random123 (kat_vectors).
    assert tuple(int(w) for w in philox4x32(counter, key)) == expected


def test_philox4x32_is_vectorised():
    counters = [c for c, _, _ in PHILOX_KAT[:2]]
    cols = tuple(np.array([c[j] for c in counters], np.uint64) for j in range(4))
    out = philox4x32(cols, (0, 0))
    assert [int(o[0]) for o in out] == list(PHILOX_KAT[0][2])
    assert [int(o[1]) for o in out] == [int(w) for w in philox4x32(counters[1], (0, 0))]


def _documented_uniform32(n, seed, call):
    """random.py: element i of call k uses counter (i lo, i hi, k lo, k hi), key (seed lo, seed hi);
    a float32 uniform is (w0 >> 8) * 2**-24."""
    i = np.arange(n, dtype=np.uint64)
    w0, _, _, _ = philox4x32((i & np.uint64(0xFFFFFFFF), i >> np.uint64(32), call & 0xFFFFFFFF, call >> 32),
                             (seed & 0xFFFFFFFF, seed >> 32))
    return ((w0 >> np.uint64(8)).astype(np.float64) * 2.0**-24).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 12345, 2**40 + 7])
def test_uniform_follows_the_documented_philox_recipe(seed):
    f = gc.function([], gc.random.uniform((6,), seed=seed))
    for call in range(3):
        np.testing.assert_array_equal(f(), _documented_uniform32(6, seed, call))


def test_bernoulli_follows_the_documented_recipe():
    f = gc.function([], gc.random.bernoulli(0.3, (50,), seed=4, dtype="bool"))
    for call in range(2):
        np.testing.assert_array_equal(f(), _documented_uniform32(50, 4, call) < 0.3)


def test_fresh_numbers_each_call():
    f = gc.function([], [gc.random.uniform((8,), seed=3), gc.random.normal((8,), seed=5)])
    (u1, n1), (u2, n2) = f(), f()
    assert not np.array_equal(u1, u2)
    assert not np.array_equal(n1, n2)


def test_same_seed_same_sequence_in_a_fresh_function():
    def build():
        return gc.function([], [gc.random.uniform((5,), seed=42), gc.random.normal((3,), seed=43)])

    f, g = build(), build()
    for _ in range(3):
        (a1, b1), (a2, b2) = f(), g()
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(b1, b2)


def test_different_seeds_differ():
    a = gc.function([], gc.random.uniform((16,), seed=1))()
    b = gc.function([], gc.random.uniform((16,), seed=2))()
    assert not np.array_equal(a, b)
    c = gc.function([], gc.random.normal((16,), seed=1))()
    d = gc.function([], gc.random.normal((16,), seed=2))()
    assert not np.array_equal(c, d)


def test_one_draw_per_call_even_when_used_twice():
    u = gc.random.uniform((4,), seed=9)
    f = gc.function([], [u, u + 0.0, u * 2.0])
    a, b, c = f()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, a * np.float32(2.0))


def test_random_like_follows_the_batch_size():
    x = ph("x", (None, 3))
    f = gc.function([x], x + gc.random.uniform(like=x, seed=8))
    for n in (2, 1, 5):
        out = f(np.zeros((n, 3), "float32"))
        assert out.shape == (n, 3) and out.dtype == np.float32
        assert ((out >= 0) & (out < 1)).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_range_and_moments(dtype):
    u = gc.function([], gc.random.uniform((100_000,), seed=17, dtype=dtype))()
    assert u.dtype == np.dtype(dtype)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01
    assert abs(u.var() - 1.0 / 12.0) < 0.005
    assert len(np.unique(u)) > 99_000


def test_uniform_low_high():
    u = gc.function([], gc.random.uniform((10_000,), seed=2, low=-3.0, high=-1.0))()
    assert u.min() >= -3.0 and u.max() <= -1.0
    assert abs(u.mean() + 2.0) < 0.05


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normal_moments(dtype):
    z = gc.function([], gc.random.normal((100_000,), seed=23, dtype=dtype))()
    assert z.dtype == np.dtype(dtype)
    assert np.isfinite(z).all()
    assert abs(z.mean()) < 0.02
    assert abs(z.std() - 1.0) < 0.02
    assert abs(np.mean(z**3)) < 0.05  # symmetric
    assert abs(np.mean(z**4) - 3.0) < 0.1  # Gaussian kurtosis
    assert abs(np.mean(np.abs(z) < 1.0) - 0.6827) < 0.01


def test_normal_mean_std():
    z = gc.function([], gc.random.normal((50_000,), seed=5, mean=3.0, std=0.5))()
    assert abs(z.mean() - 3.0) < 0.02
    assert abs(z.std() - 0.5) < 0.02


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_bernoulli_frequency(p):
    b = gc.function([], gc.random.bernoulli(p, (100_000,), seed=31))()
    assert b.dtype == np.float32
    assert set(np.unique(b)) <= {0.0, 1.0}
    assert abs(b.mean() - p) < 0.01


def test_bernoulli_extremes():
    f = gc.function([], [gc.random.bernoulli(0.0, (1000,), seed=1), gc.random.bernoulli(1.0, (1000,), seed=1)])
    zeros, ones = f()
    assert not zeros.any() and ones.all()


# -- dtype promotion (NumPy 2, weak Python scalars) ---------------------------------------------


def _numpy_result(fn, *dtypes):
    return fn(*(np.ones(2, d) for d in dtypes)).dtype.name


PROMOTIONS = [
    ("f32 * 2.0", lambda a: a * 2.0, ["float32"]),
    ("2.0 * f32", lambda a: 2.0 * a, ["float32"]),
    ("f32 / 2", lambda a: a / 2, ["float32"]),
    ("i32 * 0.5", lambda a: a * 0.5, ["int32"]),
    ("i32 + 1", lambda a: a + 1, ["int32"]),
    ("i32 / 2", lambda a: a / 2, ["int32"]),
    ("i64 * 2.5", lambda a: a * 2.5, ["int64"]),
    ("f32 + f64", lambda a, b: a + b, ["float32", "float64"]),
    ("f32 * i32", lambda a, b: a * b, ["float32", "int32"]),
    ("i32 + i64", lambda a, b: a + b, ["int32", "int64"]),
    ("f32 + f64 array", lambda a: a + np.ones(2, "float64"), ["float32"]),
]


@pytest.mark.parametrize("label, fn, dtypes", PROMOTIONS, ids=[p[0] for p in PROMOTIONS])
def test_weak_scalar_promotion_matches_numpy(label, fn, dtypes):
    want = _numpy_result(fn, *dtypes)
    vs = [ph(f"v{i}", (2,), d) for i, d in enumerate(dtypes)]
    out = fn(*vs)
    assert out.dtype == want, label
    args = [np.array([3, 5], d) for d in dtypes]
    result = gc.function(vs, out)(*args)
    assert result.dtype.name == want
    np.testing.assert_array_equal(result, fn(*args))


def test_weak_scalar_promotion_explicit_cases():
    assert (ph("x", (2,)) * 2.0).dtype == "float32"
    assert (ph("i", (2,), "int32") * 0.5).dtype == "float64"
    assert (ph("x", (2,)) + ph("y", (2,), "float64")).dtype == "float64"


# -- debug output and graph text ---------------------------------------------------------------


def test_graphc_debug_prints_the_optimised_graph(monkeypatch, capsys):
    x = ph("x", (None, 3))
    monkeypatch.delenv("GRAPHC_DEBUG", raising=False)
    gc.function([x], gc.exp(x) * 1.0)
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out == ""
    monkeypatch.setenv("GRAPHC_DEBUG", "1")
    f = gc.function([x], gc.exp(x) * 1.0)
    err = capsys.readouterr().err
    assert str(f.graph) in err
    assert "exp" in err
    # The optimised graph: multiplication by 1 is gone.
    assert "multiply" not in err


def test_graph_prints_as_readable_text(capsys):
    x = ph("x", (None, 3))
    W = gc.shared(np.ones((3, 2), "float32"), name="W")
    f = gc.function([x], gc.tanh(x @ W).sum(axis=1))
    print(f.graph)
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    assert lines[0].startswith("graph(") and "x" in lines[0]
    assert len(lines) == 1 + len(f.graph.nodes)  # a header, then one line per node
    for op in ("matmul", "tanh", "sum"):
        assert op in text
    assert "W" in text  # shared variables appear by name
    assert "float32" in text
    assert "object at 0x" not in text and "<" not in text
    assert str(f.graph) == repr(f.graph)


def test_byte_swapped_and_strided_arguments_are_read_by_value():
    """A big-endian float32 array is also dtype 'float32' by name: it must be converted, not
    handed to the kernel as little-endian bytes."""
    x = gc.placeholder("x", (3,))
    f = gc.function([x], x * 2.0)
    np.testing.assert_array_equal(f(np.array([1.0, 2.0, 3.0], dtype=">f4")), [2.0, 4.0, 6.0])
    i = gc.placeholder("i", (3,), "int32")
    g = gc.function([i], i + 1)
    np.testing.assert_array_equal(g(np.array([1, 2, 3], dtype=">i4")), [2, 3, 4])
    np.testing.assert_array_equal(f(np.arange(6, dtype="float32")[::2]), [0.0, 4.0, 8.0])
