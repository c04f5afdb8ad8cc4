"""Convolutional layers with Keras' names and arguments, on channels-first (NCHW / NCL) tensors.

Weights follow PyTorch's layouts: Conv2D kernels are OIHW ``(filters, in_channels, kh, kw)``,
Conv1D kernels ``(filters, in_channels, k)`` and Conv2DTranspose kernels
``(in_channels, filters, kh, kw)``; the initializers take their fans from these shapes, which
gives the same fans as Keras' HWIO kernels. Parameter counts match Keras.

>>> import graphc as gc
>>> from graphc.nn import Conv2D, MaxPool2D
>>> x = gc.placeholder("x", (None, 1, 28, 28))
>>> conv = Conv2D(32, 3, activation="relu")
>>> h = MaxPool2D(2)(conv(x))
>>> h.shape, conv.count_params()
((None, 32, 13, 13), 320)
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..core import ShapeError, Var, shape_error
from ..ops.conv import Conv2DGradInput, same_pads
from .layers import Layer, get_activation


def _tuple(value, n: int, what: str, layer: str) -> tuple:
    vals = (value,) * n if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else tuple(value)
    if len(vals) != n or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in vals):
        raise ValueError(f"{layer}: {what} must be a positive int or {n} of them, got {value!r}")
    return tuple(int(v) for v in vals)


def _mode(padding, layer: str, allowed=("valid", "same")) -> str:
    mode = padding.lower() if isinstance(padding, str) else None
    if mode not in allowed:
        raise ValueError(f"{layer}: padding must be one of {', '.join(repr(a) for a in allowed)}, got {padding!r}")
    return mode


class _Named:
    """Re-raise a ShapeError from the ops with the layer's name in front."""

    def __init__(self, layer: Layer):
        self.layer = layer

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if kind is not None and issubclass(kind, ShapeError) and not str(err).startswith(self.layer.name):
            raise ShapeError(f"{self.layer.name} ({type(self.layer).__name__}): {err}") from None
        return False


class _ConvBase(Layer):
    rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1, activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 name: str | None = None, seed: int | None = None):
        super().__init__(name, seed)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError(f"{self.name}: filters must be a positive int, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = _tuple(kernel_size, self.rank, "kernel_size", self.name)
        self.strides = _tuple(strides, self.rank, "strides", self.name)
        self.dilation_rate = _tuple(dilation_rate, self.rank, "dilation_rate", self.name)
        self.padding = padding
        self.activation = get_activation(activation)
        self.use_bias, self.kernel_initializer, self.bias_initializer = use_bias, kernel_initializer, bias_initializer

    def _check_input(self, input_shape):
        if len(input_shape) != self.rank + 2:
            layout = "(batch, channels, height, width)" if self.rank == 2 else "(batch, channels, length)"
            raise shape_error(self.name, f"expects {self.rank + 2}-D channels-first inputs {layout}, "
                                         f"got shape {input_shape}")
        if any(d is None for d in input_shape[1:]):
            raise shape_error(self.name, f"channel and spatial sizes must be static, got {input_shape}")

    def _bias_act(self, y: Var) -> Var:
        if self.bias is not None:
            y = y + ops.reshape(self.bias, (1, self.filters) + (1,) * self.rank)
        return self.activation(y)


class Conv2D(_ConvBase):
    """2-D convolution layer: ``activation(conv2d(x, kernel) + bias)`` on NCHW inputs.

    filters, kernel_size (int or pair), strides, padding ("valid" or "same"), dilation_rate,
    activation, use_bias, kernel_initializer (default Glorot uniform, as Keras), bias_initializer.

    >>> import graphc as gc
    >>> layer = Conv2D(96, 11, strides=4)      # AlexNet's first layer
    >>> layer(gc.placeholder("x", (None, 3, 227, 227))).shape, layer.count_params()
    ((None, 96, 55, 55), 34944)
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", dilation_rate=(1, 1), activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 name: str | None = None, seed: int | None = None):
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                         kernel_initializer, bias_initializer, name, seed)
        self.padding = _mode(padding, self.name)

    def build(self, input_shape):
        self._check_input(input_shape)
        self.kernel = self.add_weight("kernel", (self.filters, input_shape[1], *self.kernel_size),
                                      self.kernel_initializer)
        self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer) if self.use_bias else None

    def call(self, x, training):
        with _Named(self):
            y = ops.conv2d(x, self.kernel, self.strides, self.padding, self.dilation_rate)
        return self._bias_act(y)


class Conv1D(_ConvBase):
    """1-D convolution layer on NCL inputs; kernel (filters, in_channels, k). padding "valid",
    "same" or "causal" (left padding only, so an output never sees later inputs).

    >>> import graphc as gc
    >>> layer = Conv1D(8, 5, padding="causal", dilation_rate=2)
    >>> layer(gc.placeholder("x", (None, 4, 40))).shape, layer.count_params()
    ((None, 8, 40), 168)
    """

    rank = 1

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1, activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 name: str | None = None, seed: int | None = None):
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                         kernel_initializer, bias_initializer, name, seed)
        self.padding = _mode(padding, self.name, ("valid", "same", "causal"))

    def build(self, input_shape):
        self._check_input(input_shape)
        self.kernel = self.add_weight("kernel", (self.filters, input_shape[1], *self.kernel_size),
                                      self.kernel_initializer)
        self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer) if self.use_bias else None

    def call(self, x, training):
        (k,), (s,), (d,) = self.kernel_size, self.strides, self.dilation_rate
        padding = (d * (k - 1), 0) if self.padding == "causal" else self.padding
        with _Named(self):
            y = ops.conv1d(x, self.kernel, s, padding, d)
        return self._bias_act(y)


class Conv2DTranspose(_ConvBase):
    """Transposed 2-D convolution ("deconvolution") on NCHW inputs; kernel
    ``(in_channels, filters, kh, kw)`` (PyTorch's layout). The output size follows Keras:
    "valid" gives ``H * s + max(k - s, 0)``, "same" gives ``H * s``; with `output_padding`
    it is ``(H - 1) * s + k - 2 * pad + output_padding`` (pad = k // 2 for "same", else 0).

    >>> import graphc as gc
    >>> layer = Conv2DTranspose(16, 3, strides=2, padding="same")
    >>> layer(gc.placeholder("x", (None, 32, 7, 7))).shape, layer.count_params()
    ((None, 16, 14, 14), 4624)
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None,
                 dilation_rate=(1, 1), activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", name: str | None = None, seed: int | None = None):
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                         kernel_initializer, bias_initializer, name, seed)
        self.padding = _mode(padding, self.name)
        self.output_padding = None if output_padding is None else \
            tuple(int(v) for v in ((output_padding,) * 2 if isinstance(output_padding, int) else output_padding))

    def build(self, input_shape):
        self._check_input(input_shape)
        self.kernel = self.add_weight("kernel", (input_shape[1], self.filters, *self.kernel_size),
                                      self.kernel_initializer)
        self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer) if self.use_bias else None

    def call(self, x, training):
        with _Named(self):
            if self.output_padding is not None:
                pad = tuple((d * (k - 1) + 1) // 2 if self.padding == "same" else 0
                            for k, d in zip(self.kernel_size, self.dilation_rate))
                y = ops.conv_transpose2d(x, self.kernel, self.strides, pad, self.output_padding, self.dilation_rate)
            else:
                out, pads = [], []
                for n, k, s, d in zip(x.shape[2:], self.kernel_size, self.strides, self.dilation_rate):
                    ek = d * (k - 1) + 1
                    size = n * s + max(ek - s, 0) if self.padding == "valid" else n * s
                    out.append(size)
                    pads.append((0, 0) if self.padding == "valid" else same_pads(size, k, s, d))
                y = Conv2DGradInput(self.strides, (*pads[0], *pads[1]), self.dilation_rate, tuple(out))(x, self.kernel)
        return self._bias_act(y)


class _Pool2D(Layer):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", name: str | None = None):
        super().__init__(name)
        self.pool_size = _tuple(pool_size, 2, "pool_size", self.name)
        self.strides = self.pool_size if strides is None else _tuple(strides, 2, "strides", self.name)
        self.padding = _mode(padding, self.name)


class MaxPool2D(_Pool2D):
    """Max pooling over `pool_size` windows (strides default to the pool size); "same" pads with
    -inf so the padding never wins.

    >>> import graphc as gc
    >>> MaxPool2D(2)(gc.placeholder("x", (None, 6, 28, 28))).shape
    (None, 6, 14, 14)
    """

    def call(self, x, training):
        with _Named(self):
            return ops.max_pool2d(x, self.pool_size, self.strides, self.padding)


class AveragePooling2D(_Pool2D):
    """Average pooling; with padding "same" each window is divided by the number of input
    elements it covers (Keras' behaviour, ``count_include_pad=False``)."""

    def call(self, x, training):
        with _Named(self):
            return ops.avg_pool2d(x, self.pool_size, self.strides, self.padding, count_include_pad=False)


class MaxPool1D(Layer):
    """Max pooling of NCL inputs along the last axis."""

    def __init__(self, pool_size=2, strides=None, padding="valid", name: str | None = None):
        super().__init__(name)
        (self.pool_size,) = _tuple(pool_size, 1, "pool_size", self.name)
        (self.strides,) = (self.pool_size,) if strides is None else _tuple(strides, 1, "strides", self.name)
        self.padding = _mode(padding, self.name)

    def call(self, x, training):
        with _Named(self):
            return ops.max_pool1d(x, self.pool_size, self.strides, self.padding)


class GlobalAveragePooling2D(Layer):
    """Mean over the spatial axes: (N, C, H, W) -> (N, C), or (N, C, 1, 1) with keepdims."""

    def __init__(self, keepdims: bool = False, name: str | None = None):
        super().__init__(name)
        self.keepdims = keepdims

    def call(self, x, training):
        with _Named(self):
            return ops.global_avg_pool2d(x, self.keepdims)


class UpSampling2D(Layer):
    """Nearest-neighbour upsampling by `size` (an int or (sh, sw))."""

    def __init__(self, size=(2, 2), interpolation: str = "nearest", name: str | None = None):
        super().__init__(name)
        if interpolation != "nearest":
            raise ValueError(f"{self.name}: only interpolation='nearest' is implemented, got {interpolation!r}")
        self.size = _tuple(size, 2, "size", self.name)

    def call(self, x, training):
        with _Named(self):
            return ops.upsample2d(x, self.size)


# Keras' aliases
MaxPooling2D = MaxPool2D
AvgPool2D = AveragePooling2D
MaxPooling1D = MaxPool1D
