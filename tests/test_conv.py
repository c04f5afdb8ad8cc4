"""Convolutions and pooling (issue 5): the lecture's size examples, Keras parameter counts,
agreement with PyTorch (forward and both gradients) on random configurations, second-order
gradients through the gradient ops, the C kernels on shapes that take their threaded paths, and
the errors for impossible configurations.

C == ref and finite-difference gradients for every op also run from the op registry
(tests/test_ops_registry.py, tests/test_c_backend.py). Several configurations share one compiled
function here, so the C backend's compiler runs only a few times.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import graphc as gc
from graphc.nn import (
    AveragePooling2D,
    BatchNormalization,
    Conv1D,
    Conv2D,
    Conv2DTranspose,
    Dense,
    Flatten,
    GlobalAveragePooling2D,
    MaxPool2D,
    Sequential,
    UpSampling2D,
)

from .conftest import numeric_grad

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def _ph(name, a):
    return gc.placeholder(name, a.shape, a.dtype.name)


# -- sizes from the lecture notes ----------------------------------------------------------------


@pytest.mark.parametrize("size, f, s, p, expected", [
    (7, 3, 1, 0, 5),      # "a 7x7 input and a 3x3 filter with stride 1 and pad 0 ... a 5x5 output"
    (7, 3, 2, 0, 3),      # "With stride 2 we would get a 3x3 output"
    (227, 11, 4, 0, 55),  # AlexNet: (227 - 11)/4 + 1 = 55
    (32, 3, 2, 1, 16),    # 32x32x3, 3x3 filters, stride 2: 16x16 (the lecture pads by 1)
    (32, 3, 1, 1, 32),    # f = 3, s = 1, p = 1 keeps the size
])
def test_output_size_rule(size, f, s, p, expected):
    x = gc.placeholder("x", (None, 3, size, size))
    w = gc.placeholder("w", (5, 3, f, f))
    y = gc.conv2d(x, w, stride=s, padding=p)
    assert y.shape == (None, 5, expected, expected)
    if (size, f, s) == (32, 3, 2):
        assert int(np.prod(y.shape[1:])) == 1280  # "16 x 16 x 5 = 1280" units


def test_size_rule_with_dilation_and_same_padding():
    x = gc.placeholder("x", (2, 1, 10, 9))
    assert gc.conv2d(x, gc.placeholder("w", (1, 1, 3, 3)), dilation=2).shape == (2, 1, 6, 5)  # f_eff = 5
    assert gc.conv2d(x, gc.placeholder("w", (1, 1, 4, 2)), padding="same").shape == (2, 1, 10, 9)
    assert gc.conv2d(x, gc.placeholder("w", (1, 1, 3, 3)), stride=2, padding="same").shape == (2, 1, 5, 5)
    assert gc.max_pool2d(x, 2, padding="same").shape == (2, 1, 5, 5)
    assert gc.conv1d(gc.placeholder("s", (None, 2, 11)), gc.placeholder("k", (4, 2, 3)), stride=2).shape == \
        (None, 4, 5)


# -- Keras parameter counts ----------------------------------------------------------------------


def test_keras_parameter_counts():
    conv = Conv2D(32, (3, 3))
    assert conv(gc.placeholder("x", (None, 1, 28, 28))).shape == (None, 32, 26, 26)
    assert conv.count_params() == 320
    alex = Conv2D(96, 11, strides=4)
    assert alex(gc.placeholder("img", (None, 3, 227, 227))).shape == (None, 96, 55, 55)
    assert alex.count_params() == 34944
    assert alex.kernel.shape == (96, 3, 11, 11)  # OIHW
    nob = Conv2D(8, 3, use_bias=False)
    nob(gc.placeholder("x", (None, 4, 9, 9)))
    assert nob.count_params() == 8 * 4 * 9
    c1 = Conv1D(16, 5)
    assert c1(gc.placeholder("s", (None, 3, 50))).shape == (None, 16, 46)
    assert c1.count_params() == 16 * 3 * 5 + 16
    tr = Conv2DTranspose(3, 4, strides=2)
    assert tr(gc.placeholder("z", (None, 8, 7, 7))).shape == (None, 3, 16, 16)  # 7*2 + max(4 - 2, 0)
    assert tr.count_params() == 8 * 3 * 16 + 3 and tr.kernel.shape == (8, 3, 4, 4)


def test_lenet_summary():
    model = Sequential([Conv2D(6, 5, padding="same", activation="relu"), MaxPool2D(2),
                        Conv2D(16, 5, activation="relu"), AveragePooling2D(2), Flatten(),
                        Dense(120, activation="relu"), Dense(84, activation="relu"), Dense(10)],
                       input_shape=(1, 28, 28))
    text = model.summary(print_fn=None)
    for count in ("156", "2,416", "48,120", "10,164", "850", "Total params: 61,706"):
        assert count in text
    assert "(None, 6, 28, 28)" in text and "(None, 16, 5, 5)" in text


def test_layer_shapes_and_fans():
    x = gc.placeholder("x", (None, 4, 10, 10))
    assert Conv2D(6, 3, strides=2, padding="same")(x).shape == (None, 6, 5, 5)
    assert Conv2D(6, 4, padding="same", dilation_rate=2)(x).shape == (None, 6, 10, 10)
    assert Conv2DTranspose(2, 3, strides=2, padding="same")(x).shape == (None, 2, 20, 20)
    assert Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1)(x).shape == (None, 2, 20, 20)
    assert Conv2DTranspose(2, 3, strides=2, output_padding=1)(x).shape == (None, 2, 22, 22)
    assert MaxPool2D(3, strides=2, padding="same")(x).shape == (None, 4, 5, 5)
    assert GlobalAveragePooling2D()(x).shape == (None, 4)
    assert UpSampling2D((2, 3))(x).shape == (None, 4, 20, 30)
    he = Conv2D(64, 3, kernel_initializer="he_uniform", seed=0)
    he(gc.placeholder("x", (None, 32, 8, 8)))
    limit = np.sqrt(6 / (32 * 9))  # fan_in from OIHW: in * kh * kw
    w = he.kernel.get_value()
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit


def test_batch_norm_normalises_each_channel_of_nchw_inputs():
    rng = np.random.default_rng(0)
    x = gc.placeholder("x", (None, 3, 4, 5))
    bn = BatchNormalization(momentum=0.5, epsilon=1e-3)
    step = gc.function([x], bn(x, training=True), updates=bn.updates)
    scale = np.array([1.0, 3.0, 0.5], "float32").reshape(1, 3, 1, 1)
    xv = (rng.normal(size=(8, 3, 4, 5)) * scale + np.array([2.0, -1.0, 5.0]).reshape(1, 3, 1, 1)).astype("float32")
    out = step(xv)
    mean, var = xv.mean(axis=(0, 2, 3)), xv.var(axis=(0, 2, 3))
    np.testing.assert_allclose(out, (xv - mean.reshape(1, 3, 1, 1)) / np.sqrt(var.reshape(1, 3, 1, 1) + 1e-3),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert bn.count_params() == 4 * 3 and bn.gamma.shape == (3,)
    np.testing.assert_allclose(bn.moving_mean.get_value(), 0.5 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.get_value(), 0.5 + 0.5 * var, rtol=1e-5)
    evaluate = gc.function([x], bn(x, training=False))
    mm, mv = bn.moving_mean.get_value(), bn.moving_variance.get_value()
    np.testing.assert_allclose(evaluate(xv), (xv - mm.reshape(1, 3, 1, 1)) / np.sqrt(mv.reshape(1, 3, 1, 1) + 1e-3),
                               rtol=1e-4, atol=1e-4)


# -- errors for impossible configurations ----------------------------------------------------------


def test_kernel_larger_than_input_is_a_shape_error_naming_the_sizes():
    x = gc.placeholder("x", (None, 1, 3, 3))
    with pytest.raises(gc.ShapeError, match=r"conv2d: the kernel 5 does not fit an input height of 3 .*"
                                            r"\(3 - 5 \+ 0\) // 1 \+ 1 = -1 < 1"):
        gc.conv2d(x, gc.placeholder("w", (4, 1, 5, 5)))
    with pytest.raises(gc.ShapeError, match=r"dilated by 3 \(effective 7\)"):
        gc.conv2d(gc.placeholder("x", (1, 1, 6, 9)), gc.placeholder("w", (1, 1, 3, 3)), dilation=3)
    with pytest.raises(gc.ShapeError, match=r"conv1d: .*input length of 4"):
        gc.conv1d(gc.placeholder("s", (None, 2, 4)), gc.placeholder("k", (3, 2, 6)))


def test_other_impossible_configurations():
    x = gc.placeholder("x", (None, 3, 8, 8))
    with pytest.raises(gc.ShapeError, match=r"conv2d: the input has 3 channels but the weights \(OIHW\) expect 2"):
        gc.conv2d(x, gc.placeholder("w", (4, 2, 3, 3)))
    with pytest.raises(gc.ShapeError, match="must be static"):
        gc.conv2d(gc.placeholder("x", (None, 3, None, 8)), gc.placeholder("w", (4, 3, 3, 3)))
    with pytest.raises(gc.ShapeError, match="must be 4-D NCHW"):
        gc.conv2d(gc.placeholder("x", (3, 8, 8)), gc.placeholder("w", (4, 3, 3, 3)))
    with pytest.raises(gc.ShapeError, match="stride must be an int >= 1"):
        gc.conv2d(x, gc.placeholder("w", (4, 3, 3, 3)), stride=0)
    with pytest.raises(gc.ShapeError, match="padding must be"):
        gc.conv2d(x, gc.placeholder("w", (4, 3, 3, 3)), padding="full")
    with pytest.raises(gc.ShapeError, match="output_padding must be smaller than the stride"):
        gc.conv_transpose2d(x, gc.placeholder("w", (3, 2, 3, 3)), stride=2, output_padding=2)
    with pytest.raises(gc.ShapeError, match=r"max_pool2d: padding 2\+2 leaves windows with no input element"):
        gc.max_pool2d(x, 2, padding=2)
    with pytest.raises(gc.ShapeError, match=r"avg_pool2d: the kernel 9 does not fit an input height of 8"):
        gc.avg_pool2d(x, 9)
    with pytest.raises(gc.DTypeError, match="float32 or float64"):
        gc.conv2d(gc.placeholder("i", (1, 3, 8, 8), "int32"), gc.placeholder("w", (4, 3, 3, 3)))


def test_layers_name_themselves_in_shape_errors():
    layer = Conv2D(8, 7, name="conv_big")
    with pytest.raises(gc.ShapeError, match=r"conv_big \(Conv2D\): conv2d: the kernel 7 does not fit an input "
                                            r"height of 5"):
        layer(gc.placeholder("x", (None, 1, 5, 5)))
    with pytest.raises(gc.ShapeError, match="channels-first"):
        Conv2D(8, 3)(gc.placeholder("x", (None, 28, 28)))
    with pytest.raises(gc.ShapeError, match=r"pool_1 \(MaxPool2D\): max_pool2d"):
        MaxPool2D(4, name="pool_1")(gc.placeholder("x", (None, 1, 3, 3)))
    with pytest.raises(ValueError, match="padding must be one of"):
        Conv2D(8, 3, padding=1)


# -- agreement with PyTorch ------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def _random_conv_configs(rng, n):
    out = []
    while len(out) < n:
        kh, kw = rng.integers(1, 4, 2)
        sh, sw = rng.integers(1, 3, 2)
        dh, dw = rng.integers(1, 3, 2)
        ph, pw = rng.integers(0, 3, 2)
        h = int(rng.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 9))
        w = int(rng.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 9))
        if (h + 2 * ph - dh * (kh - 1) - 1) < 0 or (w + 2 * pw - dw * (kw - 1) - 1) < 0:
            continue
        out.append(dict(n=int(rng.integers(1, 4)), c=int(rng.integers(1, 4)), o=int(rng.integers(1, 4)), h=h, w=w,
                        k=(int(kh), int(kw)), s=(int(sh), int(sw)), p=(int(ph), int(pw)), d=(int(dh), int(dw))))
    return out


def _compare_with_torch(build_gc, build_torch, arrays, backends, rtol, atol):
    """build_gc(*vars) -> out; the outputs and the gradients of sum(out * r) for every input,
    on each backend, against PyTorch's."""
    t = _torch()
    rng = np.random.default_rng(5)
    vars_ = [_ph(f"a{i}", a) for i, a in enumerate(arrays)]
    out = build_gc(*vars_)
    r = rng.normal(size=out.shape)
    grads = gc.grad(gc.sum(out * gc.constant(r.astype(out.dtype))), vars_)
    tv = [t.tensor(a, requires_grad=True) for a in arrays]
    tout = build_torch(*tv)
    tout.backward(t.tensor(r.astype(arrays[0].dtype)))
    want = [tout.detach().numpy()] + [v.grad.numpy() for v in tv]
    for backend in backends:
        got = gc.function(vars_, [out, *grads], backend=backend)(*arrays)
        for g, w_, what in zip(got, want, ["forward"] + [f"d/d arg{i}" for i in range(len(arrays))]):
            np.testing.assert_allclose(g, w_, rtol=rtol, atol=atol, err_msg=f"{backend}: {what}")


def _multi(build_one, configs):
    """One graph computing several configurations (concatenated flat), so one compile covers them."""
    def build(*vars_):
        return gc.concatenate([gc.reshape(build_one(cfg, *vars_[2 * i:2 * i + 2]), (-1,))
                               for i, cfg in enumerate(configs)])
    return build


def _torch_multi(build_one, configs):
    def build(*vars_):
        t = _torch()
        return t.cat([build_one(cfg, *vars_[2 * i:2 * i + 2]).reshape(-1) for i, cfg in enumerate(configs)])
    return build


BACKENDS = ["ref", pytest.param("c", marks=needs_gcc)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_matches_torch_on_random_configurations(backend):
    F = _torch().nn.functional
    rng = np.random.default_rng(0)
    configs = _random_conv_configs(rng, 12)
    arrays = []
    for c in configs:
        arrays += [rng.normal(size=(c["n"], c["c"], c["h"], c["w"])), rng.normal(size=(c["o"], c["c"], *c["k"]))]
    _compare_with_torch(_multi(lambda c, x, w: gc.conv2d(x, w, c["s"], c["p"], c["d"]), configs),
                        _torch_multi(lambda c, x, w: F.conv2d(x, w, None, c["s"], c["p"], c["d"]), configs),
                        arrays, [backend], 1e-9, 1e-9)


@needs_gcc
def test_conv2d_float32_in_c_matches_torch():
    F = _torch().nn.functional
    rng = np.random.default_rng(1)
    configs = _random_conv_configs(rng, 6) + [dict(n=3, c=5, o=7, h=12, w=10, k=(3, 3), s=(1, 1), p=(1, 1),
                                                   d=(1, 1))]
    arrays = []
    for c in configs:
        arrays += [rng.normal(size=(c["n"], c["c"], c["h"], c["w"])).astype("float32"),
                   rng.normal(size=(c["o"], c["c"], *c["k"])).astype("float32")]
    _compare_with_torch(_multi(lambda c, x, w: gc.conv2d(x, w, c["s"], c["p"], c["d"]), configs),
                        _torch_multi(lambda c, x, w: F.conv2d(x, w, None, c["s"], c["p"], c["d"]), configs),
                        arrays, ["c"], 1e-4, 1e-4)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("backend", BACKENDS)
def test_same_padding_matches_torch(backend):
    """padding="same" at stride 1, odd and even kernels (PyTorch puts the extra row below too)."""
    F = _torch().nn.functional
    rng = np.random.default_rng(2)
    configs = [dict(k=(3, 3), d=(1, 1)), dict(k=(2, 4), d=(1, 1)), dict(k=(3, 2), d=(2, 3))]
    arrays = []
    for c in configs:
        arrays += [rng.normal(size=(2, 2, 7, 6)), rng.normal(size=(3, 2, *c["k"]))]
    _compare_with_torch(_multi(lambda c, x, w: gc.conv2d(x, w, 1, "same", c["d"]), configs),
                        _torch_multi(lambda c, x, w: F.conv2d(x, w, None, 1, "same", c["d"]), configs),
                        arrays, [backend], 1e-9, 1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_transpose2d_matches_torch(backend):
    F = _torch().nn.functional
    rng = np.random.default_rng(3)
    configs = []
    for c in _random_conv_configs(rng, 20):
        c["op"] = (int(rng.integers(0, c["s"][0])), int(rng.integers(0, c["s"][1])))
        out = [(n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, s, p, d, k, op in
               zip((c["h"], c["w"]), c["s"], c["p"], c["d"], c["k"], c["op"])]
        if min(out) >= 1:
            configs.append(c)
    configs = configs[:10]
    arrays = []
    for c in configs:
        arrays += [rng.normal(size=(c["n"], c["c"], c["h"], c["w"])), rng.normal(size=(c["c"], c["o"], *c["k"]))]
    _compare_with_torch(
        _multi(lambda c, x, w: gc.conv_transpose2d(x, w, c["s"], c["p"], c["op"], c["d"]), configs),
        _torch_multi(lambda c, x, w: F.conv_transpose2d(x, w, None, c["s"], c["p"], c["op"], 1, c["d"]), configs),
        arrays, [backend], 1e-9, 1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv1d_matches_torch(backend):
    F = _torch().nn.functional
    rng = np.random.default_rng(4)
    configs = [dict(s=1, p=0, d=1, k=3), dict(s=2, p=1, d=1, k=4), dict(s=1, p=2, d=2, k=3), dict(s=3, p=0, d=1, k=1)]
    arrays = []
    for c in configs:
        arrays += [rng.normal(size=(2, 3, 11)), rng.normal(size=(4, 3, c["k"]))]
    _compare_with_torch(_multi(lambda c, x, w: gc.conv1d(x, w, c["s"], c["p"], c["d"]), configs),
                        _torch_multi(lambda c, x, w: F.conv1d(x, w, None, c["s"], c["p"], c["d"]), configs),
                        arrays, [backend], 1e-9, 1e-9)


def _pool_configs(rng, n):
    out = []
    for _ in range(n):
        kh, kw = (int(v) for v in rng.integers(1, 4, 2))
        out.append(dict(k=(kh, kw), s=tuple(int(v) for v in rng.integers(1, 3, 2)),
                        p=(int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))),
                        shape=(int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(kh, 8)),
                               int(rng.integers(kw, 8)))))
    return out


def _pool_multi(build_one, configs, torch_side=False):
    def build(*vars_):
        parts = [build_one(cfg, v).reshape(-1) if torch_side else gc.reshape(build_one(cfg, v), (-1,))
                 for cfg, v in zip(configs, vars_)]
        return _torch().cat(parts) if torch_side else gc.concatenate(parts)
    return build


def _distinct(rng, shape):
    return rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0 - 3.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_pooling_matches_torch(backend):
    F = _torch().nn.functional
    rng = np.random.default_rng(6)
    configs = _pool_configs(rng, 8)
    arrays = [_distinct(rng, c["shape"]) for c in configs]  # no ties: the max's gradient is unique
    _compare_with_torch(_pool_multi(lambda c, x: gc.max_pool2d(x, c["k"], c["s"], c["p"]), configs),
                        _pool_multi(lambda c, x: F.max_pool2d(x, c["k"], c["s"], c["p"]), configs, True),
                        arrays, [backend], 1e-12, 1e-12)
    for include in (True, False):
        _compare_with_torch(
            _pool_multi(lambda c, x, inc=include: gc.avg_pool2d(x, c["k"], c["s"], c["p"], inc), configs),
            _pool_multi(lambda c, x, inc=include: F.avg_pool2d(x, c["k"], c["s"], c["p"], count_include_pad=inc),
                        configs, True),
            arrays, [backend], 1e-9, 1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pool1d_upsample_and_global_pool_match_torch(backend):
    t = _torch()
    F = t.nn.functional
    rng = np.random.default_rng(7)
    a = _distinct(rng, (2, 3, 9))
    b = rng.normal(size=(2, 3, 4, 5))
    _compare_with_torch(
        lambda x, y: gc.concatenate([gc.reshape(gc.max_pool1d(x, 3, 2, 1), (-1,)),
                                     gc.reshape(gc.upsample2d(y, (2, 3)), (-1,)),
                                     gc.reshape(gc.global_avg_pool2d(y), (-1,))]),
        lambda x, y: t.cat([F.max_pool1d(x, 3, 2, 1).reshape(-1),
                            F.interpolate(y, scale_factor=(2, 3), mode="nearest").reshape(-1),
                            F.adaptive_avg_pool2d(y, 1).reshape(-1)]),
        [a, b], [backend], 1e-12, 1e-12)


# -- second order: through Conv2DGradInput and Conv2DGradWeight ------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_order_gradients_through_the_gradient_ops(backend):
    """Mixed and pure second derivatives of a conv net's loss (d/dw of dL/dx, d/dx of dL/dw, ...)
    match finite differences of the compiled first gradients."""
    rng = np.random.default_rng(8)
    xv, wv = rng.normal(size=(2, 2, 6, 5)), rng.normal(size=(3, 2, 3, 2))
    x, w = _ph("x", xv), _ph("w", wv)
    y = gc.conv2d(x, w, stride=(2, 1), padding=((1, 0), (1, 1)), dilation=(1, 2))
    loss = gc.sum(gc.tanh(y) * gc.constant(rng.normal(size=y.shape)))
    gx, gw = gc.grad(loss, [x, w])
    vx, vw = rng.normal(size=xv.shape), rng.normal(size=wv.shape)
    for first, v in ((gx, vx), (gw, vw)):
        proj = gc.sum(first * gc.constant(v))
        second = gc.grad(proj, [x, w])
        f_proj = gc.function([x, w], proj, backend=backend)
        got = gc.function([x, w], second, backend=backend)(xv, wv)
        for i, g in enumerate(got):
            np.testing.assert_allclose(g, numeric_grad(f_proj, [xv, wv], i, eps=1e-5), rtol=1e-4, atol=1e-6)


def test_second_order_through_conv_transpose_and_pooling():
    rng = np.random.default_rng(9)
    xv, wv = rng.normal(size=(1, 2, 3, 3)), rng.normal(size=(2, 2, 3, 3))
    x, w = _ph("x", xv), _ph("w", wv)
    y = gc.avg_pool2d(gc.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1), 2, 1, 1, False)
    loss = gc.sum(gc.square(y))
    for first in gc.grad(loss, [x, w]):
        proj = gc.sum(first * gc.constant(rng.normal(size=first.shape)))
        f_proj = gc.function([x, w], proj)
        got = gc.function([x, w], gc.grad(proj, [x, w]))(xv, wv)
        for i, g in enumerate(got):
            np.testing.assert_allclose(g, numeric_grad(f_proj, [xv, wv], i, eps=1e-5), rtol=1e-4, atol=1e-6)


# -- the C kernels on larger shapes (threaded paths, 1x1 kernels, several batch sizes) --------------


@needs_gcc
@pytest.mark.parametrize("schedule", ["batch", "sequential"])
def test_c_kernels_on_larger_shapes_and_every_batch_size(schedule, monkeypatch):
    """Shapes big enough for the OpenMP paths (images across threads, or channels across threads
    with BLAS-threaded gemms), a 1x1 convolution (no im2col), max/avg pooling with padding, and
    one compiled step called with batch sizes 7, 1, 16 and 0."""
    monkeypatch.setenv("GRAPHC_CONV_SCHEDULE", schedule)
    rng = np.random.default_rng(10)
    x = gc.placeholder("x", (None, 5, 17, 15))
    w1 = gc.shared(rng.normal(size=(12, 5, 3, 4)).astype("float32") * 0.2, name="w1")
    w2 = gc.shared(rng.normal(size=(8, 12, 1, 1)).astype("float32") * 0.2, name="w2")
    w3 = gc.shared(rng.normal(size=(8, 4, 3, 3)).astype("float32") * 0.2, name="w3")
    h = gc.relu(gc.conv2d(x, w1, stride=(1, 2), padding=(2, 1), dilation=(2, 1)))
    h = gc.conv2d(h, w2)
    p = gc.max_pool2d(h, 3, 2, 1) + gc.avg_pool2d(h, 3, 2, 1, count_include_pad=False)
    u = gc.conv_transpose2d(p, w3, stride=2, padding=1, output_padding=1)
    loss = gc.sum(gc.square(u)) + gc.sum(gc.upsample2d(p, 2) * 0.5)
    outs = [u, *gc.grad(loss, [x, w1, w2, w3])]
    f_c = gc.function([x], outs, backend="c")
    f_ref = gc.function([x], outs, backend="ref")
    for n in (7, 1, 16, 0):
        xv = rng.normal(size=(n, 5, 17, 15)).astype("float32")
        for a, b in zip(f_c(xv), f_ref(xv)):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4 * max(1.0, float(np.abs(b).max(initial=0))))


@needs_gcc
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_direct_convolution_kernels(dtype, monkeypatch):
    """Rows at least one vector wide take the direct kernels (forward, and the input gradient as a
    convolution with flipped weights); with GRAPHC_CONV_DIRECT=0 the same graph uses im2col + gemm.
    Both agree with the reference backend."""
    rng = np.random.default_rng(13)
    xv = rng.normal(size=(3, 5, 9, 21)).astype(dtype)
    wv = rng.normal(size=(7, 5, 3, 3)).astype(dtype)
    x, w = _ph("x", xv), _ph("w", wv)
    y = gc.conv2d(x, w, stride=1, padding=((1, 0), (2, 1)), dilation=(1, 2))
    outs = [y, *gc.grad(gc.sum(gc.square(y)), [x, w])]
    want = gc.function([x, w], outs, backend="ref")(xv, wv)
    tol = 2e-4 if dtype == "float32" else 1e-10
    for direct in ("1", "0"):
        monkeypatch.setenv("GRAPHC_CONV_DIRECT", direct)
        f = gc.function([x, w], outs, backend="c")
        assert (f.source.count("_direct(const") == 2) == (direct == "1")
        for a, b in zip(f(xv, wv), want):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max())))


@needs_gcc
@pytest.mark.parametrize("direct", ["1", "0"])
def test_batch_smaller_than_the_threads_takes_the_sequential_schedule(direct, monkeypatch):
    """Per-image work big enough for OpenBLAS to thread: with fewer images than threads, the
    kernels loop over images and split channels (or rows) across threads instead."""
    monkeypatch.setenv("GRAPHC_CONV_DIRECT", direct)
    rng = np.random.default_rng(14)
    x = gc.placeholder("x", (None, 16, 20, 20))
    w = gc.shared(rng.normal(size=(32, 16, 3, 3)).astype("float32") * 0.1, name="w")
    y = gc.conv2d(x, w, padding=1)
    outs = [y, *gc.grad(gc.sum(gc.square(y)), [x, w])]
    f_c, f_ref = gc.function([x], outs, backend="c"), gc.function([x], outs, backend="ref")
    assert "if (N >= omp_max_threads_())" in f_c.source
    for n in (1, 3):
        xv = rng.normal(size=(n, 16, 20, 20)).astype("float32")
        for a, b in zip(f_c(xv), f_ref(xv)):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4 * float(np.abs(b).max()))


@needs_gcc
def test_threaded_weight_gradient_is_deterministic():
    """Images go to threads dynamically, but the weight gradient's partial sums are added in a
    fixed order: repeated calls give bitwise equal results."""
    rng = np.random.default_rng(15)
    x = gc.placeholder("x", (None, 6, 14, 14))
    w = gc.shared(rng.normal(size=(16, 6, 5, 5)).astype("float32"), name="w")
    f = gc.function([x], gc.grad(gc.sum(gc.square(gc.conv2d(x, w))), w), backend="c")
    xv = rng.normal(size=(64, 6, 14, 14)).astype("float32")
    first = f(xv).copy()
    for _ in range(5):
        np.testing.assert_array_equal(f(xv), first)


@needs_gcc
def test_max_pool_nan_and_infinity_agree_between_c_and_ref():
    xv = np.array([[[[np.nan, np.nan, -np.inf, -np.inf],
                     [2.0, 3.0, -np.inf, -np.inf],
                     [0.5, 0.5, 3.0, 3.0],
                     [0.5, 0.5, 1.0, 3.0]]]], "float32")
    x = _ph("x", xv)
    y, idx = gc.ops.max_pool2d_with_argmax(x, 2, padding=1)
    yr, ir = gc.function([x], [y, idx], backend="ref")(xv)
    yc, ic = gc.function([x], [y, idx], backend="c")(xv)
    np.testing.assert_array_equal(ic, ir)
    np.testing.assert_array_equal(yc, yr)
    assert np.isnan(yr[0, 0, 0, 1]) and ir[0, 0, 0, 1] == 1  # a NaN wins
    assert yr[0, 0, 0, 2] == -np.inf and ir[0, 0, 0, 2] == 3  # an all -inf window keeps its first input element
    assert yr[0, 0, 1, 1] == 3 and ir[0, 0, 1, 1] == 5  # the first of two equal maxima


@needs_gcc
def test_conv_output_feeds_the_fused_bias_activation_kernel():
    x = gc.placeholder("x", (None, 3, 8, 8))
    layer = Conv2D(4, 3, activation="relu")
    f = gc.function([x], layer(x), backend="c")
    labels = [k.label for k in f._program.schedule.kernels]
    assert labels == ["op[conv2d]", "elementwise[add, relu]"]
    xv = np.random.default_rng(11).normal(size=(2, 3, 8, 8)).astype("float32")
    np.testing.assert_allclose(f(xv), gc.function([x], layer(x), backend="ref")(xv), rtol=1e-5, atol=1e-5)


def test_training_a_small_cnn_lowers_the_loss(backend):
    rng = np.random.default_rng(12)
    xs = rng.normal(size=(32, 1, 8, 8)).astype("float32")
    ys = (xs[:, 0, :4].sum(axis=(1, 2)) > xs[:, 0, 4:].sum(axis=(1, 2))).astype("int32")
    model = Sequential([Conv2D(4, 3, activation="relu", seed=1), MaxPool2D(2), Flatten(), Dense(2, seed=2)],
                       input_shape=(1, 8, 8))
    hist = gc.train.fit(model, xs, ys, optimizer=gc.optim.Adam(0.02), epochs=15, batch_size=8, verbose=0)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
