"""Convolutions and pooling on NCHW tensors: conv2d, conv1d, conv_transpose2d, max_pool2d,
max_pool1d, avg_pool2d, global_avg_pool2d and nearest-neighbour upsample2d.

Layouts follow PyTorch: inputs are NCHW (NCL in 1-D), conv weights OIHW (``(out, in, kh, kw)``)
and transposed-conv weights ``(in, out, kh, kw)``. Channel and spatial sizes must be static; the
batch may be None (bound at call time). Output sizes use the lecture's rule
``(w - f + 2p) / s + 1`` with the effective kernel ``f = d * (k - 1) + 1`` (dilation ``d``),
rounded down as in PyTorch and Keras; a configuration whose output would be empty raises
`ShapeError` while the graph is built.

Padding (internally always ``(top, bottom, left, right)``) may be an int, a pair ``(ph, pw)``,
a pair of pairs ``((top, bottom), (left, right))``, ``"valid"`` (none) or ``"same"``. "same"
follows TensorFlow/Keras: the output has ``ceil(size / stride)`` positions and the total padding
``max((out - 1) * s + f - size, 0)`` is split with the odd row/column at the bottom/right (so an
even kernel, which cannot be padded symmetrically, gets one more row below than above; PyTorch's
``padding="same"`` does the same at stride 1).

The gradients are graphs of three ops, each the adjoint of another, so second-order
gradients come for free:

- ``Conv2D(x, w)``; its vjp is ``[Conv2DGradInput(g, w), Conv2DGradWeight(g, x)]``;
- ``Conv2DGradInput(g, w)`` (the transposed convolution; the spatial size of its output is a
  static attribute, the batch comes from `g`); vjp ``[conv2d(gg, w), Conv2DGradWeight(g, gg)]``;
- ``Conv2DGradWeight(g, x)``; vjp ``[conv2d(x, gw), Conv2DGradInput(g, gw)]``.

Max pooling is one two-output op, ``MaxPool2D(x) -> (y, argmax)``, whose int32 argmax (the flat
``h * W + w`` position of each window's maximum in its input plane) is kept for the backward op
``MaxPool2DGrad`` (a scatter-add); its adjoint is the gather ``MaxPool2DGather``. Ties go to the
first maximum in the window (row-major), and a NaN wins, as in PyTorch. Average pooling divides by
the whole window (``count_include_pad=True``, PyTorch's default) unless asked to count only the
elements inside the input (``count_include_pad=False``, what Keras' ``padding="same"`` does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import Op, TensorType, Var, dtype_error, is_float, shape_error
from ._base import as_var
from .registry import Case, register

# -- argument normalisation --------------------------------------------------------------------


def _ints(value, n: int, what: str, op: str, minimum: int = 1) -> tuple:
    """An int or a sequence of `n` ints (each >= minimum) as an n-tuple."""
    vals = (value,) * n if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        vals = tuple(vals)
    except TypeError:
        vals = None
    if vals is None or len(vals) != n or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                             or v < minimum for v in vals):
        raise shape_error(op, f"{what} must be an int >= {minimum} or {n} of them, got {value!r}")
    return tuple(int(v) for v in vals)


def same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one axis (size, kernel, stride, dilation): ceil(size / s)
    outputs, the odd padding row at the end.

    >>> same_pads(28, 5, 1, 1), same_pads(7, 2, 2, 1)
    ((2, 2), (0, 1))
    """
    out = -(-size // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def _padding(padding, in_hw, k_hw, stride, dilation, op: str) -> tuple:
    """(top, bottom, left, right) from an int, a pair, a pair of pairs, "valid" or "same"."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            (t, b), (left, right) = (same_pads(n, k, s, d) for n, k, s, d in zip(in_hw, k_hw, stride, dilation))
            return (t, b, left, right)
        raise shape_error(op, f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(isinstance(p, (tuple, list))
                                                                        for p in padding):
        (t, b), (left, right) = (_ints(p, 2, "padding", op, 0) for p in padding)
        return (t, b, left, right)
    ph, pw = _ints(padding, 2, "padding", op, 0)
    return (ph, ph, pw, pw)


def _out_len(n: int, k: int, s: int, p0: int, p1: int, d: int) -> int:
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


def _check_fit(op: str, axis: str, n, k, s, p0, p1, d, context: str) -> int:
    out = _out_len(n, k, s, p0, p1, d)
    if out < 1:
        ek = d * (k - 1) + 1
        kern = f"kernel {k}" + (f" dilated by {d} (effective {ek})" if d > 1 else "")
        raise shape_error(op, f"the {kern} does not fit an input {axis} of {n} padded by {p0}+{p1}: output {axis} "
                              f"(w - f + 2p)/s + 1 = ({n} - {ek} + {p0 + p1}) // {s} + 1 = {out} < 1 ({context})")
    return out


def _float_pair(op: str, x: Var, w: Var) -> tuple[Var, Var]:
    from .elementwise import cast

    x, w = as_var(x), as_var(w)
    for v, what in ((x, "input"), (w, "weights")):
        if not is_float(v.dtype):
            raise dtype_error(op, f"the {what} must be float32 or float64, got {v.dtype}")
    if x.dtype != w.dtype:
        x, w = cast(x, "float64"), cast(w, "float64")
    return x, w


def _float(op: str, x) -> Var:
    x = as_var(x)
    if not is_float(x.dtype):
        raise dtype_error(op, f"the input must be float32 or float64, got {x.dtype}")
    return x


def _need_nchw(op: str, v, what: str, ndim: int = 4):
    if v.ndim != ndim:
        layout = {4: "NCHW (batch, channels, height, width)", 3: "NCL (batch, channels, length)"}[ndim]
        raise shape_error(op, f"the {what} must be {ndim}-D {layout}, got shape {v.shape}")
    if any(d is None for d in v.shape[1:]):
        raise shape_error(op, f"the channel and spatial sizes of the {what} must be static (only the batch may "
                              f"be None), got shape {v.shape}")


def _same_batch(op: str, a, b):
    if a.shape[0] is not None and b.shape[0] is not None and a.shape[0] != b.shape[0]:
        raise shape_error(op, f"batch sizes differ: {a.shape} and {b.shape}")


# -- convolution ops ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Conv2D(Op):
    """Cross-correlation of NCHW `x` with OIHW `w` (PyTorch's conv2d, no groups)."""

    stride: tuple
    padding: tuple  # (top, bottom, left, right)
    dilation: tuple

    @property
    def name(self):
        return "conv2d"

    def context(self, x, w) -> str:
        return (f"x {x.shape}, w {w.shape}, stride {self.stride}, padding {self.padding}, "
                f"dilation {self.dilation}")

    def infer(self, x, w):
        _need_nchw("conv2d", x, "input")
        _need_nchw("conv2d", w, "weights (OIHW)")
        if x.dtype != w.dtype or not is_float(x.dtype):
            raise dtype_error("conv2d", f"input and weights must share a float dtype, got {x.dtype} and {w.dtype}")
        if x.shape[1] != w.shape[1]:
            raise shape_error("conv2d", f"the input has {x.shape[1]} channels but the weights (OIHW) expect "
                                        f"{w.shape[1]}: x {x.shape}, w {w.shape}")
        ctx = self.context(x, w)
        st, (pt, pb, pl, pr), dl = self.stride, self.padding, self.dilation
        ho = _check_fit("conv2d", "height", x.shape[2], w.shape[2], st[0], pt, pb, dl[0], ctx)
        wo = _check_fit("conv2d", "width", x.shape[3], w.shape[3], st[1], pl, pr, dl[1], ctx)
        return (TensorType(x.dtype, (x.shape[0], w.shape[0], ho, wo)),)

    def perform(self, node, x, w):
        ho, wo = node.outputs[0].shape[2:]
        v = _windows(_pad(x, self.padding), w.shape[2:], self.stride, self.dilation, (ho, wo))
        y = np.tensordot(v, w, axes=([1, 4, 5], [1, 2, 3]))  # (N, ho, wo, O)
        return (np.ascontiguousarray(y.transpose(0, 3, 1, 2), dtype=x.dtype),)

    def vjp(self, node, cotangents):
        (g,) = cotangents
        x, w = node.inputs
        gx = Conv2DGradInput(self.stride, self.padding, self.dilation, tuple(x.shape[2:]))(g, w)
        gw = Conv2DGradWeight(self.stride, self.padding, self.dilation, tuple(w.shape[2:]))(g, x)
        return [gx, gw]


@dataclass(frozen=True)
class Conv2DGradInput(Op):
    """The gradient of conv2d with respect to its input: ``(g (N,O,ho,wo), w (O,C,kh,kw)) ->
    (N, C, *in_hw)``. It is also the transposed convolution (conv_transpose2d)."""

    stride: tuple
    padding: tuple
    dilation: tuple
    in_hw: tuple

    @property
    def name(self):
        return "conv2d_grad_input"

    def infer(self, g, w):
        op = "conv_transpose2d"
        _need_nchw(op, g, "input")
        _need_nchw(op, w, "weights")
        if g.dtype != w.dtype or not is_float(g.dtype):
            raise dtype_error(op, f"input and weights must share a float dtype, got {g.dtype} and {w.dtype}")
        if g.shape[1] != w.shape[0]:
            raise shape_error(op, f"the input has {g.shape[1]} channels but the weights expect {w.shape[0]}: "
                                  f"input {g.shape}, w {w.shape}")
        st, (pt, pb, pl, pr), dl = self.stride, self.padding, self.dilation
        ctx = (f"input {g.shape}, w {w.shape}, output size {self.in_hw}, stride {st}, padding {self.padding}, "
               f"dilation {dl}")
        ho = _check_fit(op, "height", self.in_hw[0], w.shape[2], st[0], pt, pb, dl[0], ctx)
        wo = _check_fit(op, "width", self.in_hw[1], w.shape[3], st[1], pl, pr, dl[1], ctx)
        if (ho, wo) != tuple(g.shape[2:]):
            raise shape_error(op, f"an output of size {self.in_hw} convolves back to {(ho, wo)}, not to the "
                                  f"input's {tuple(g.shape[2:])} ({ctx})")
        return (TensorType(g.dtype, (g.shape[0], w.shape[1], *self.in_hw)),)

    def perform(self, node, g, w):
        n, c = g.shape[0], w.shape[1]
        (pt, pb, pl, pr), (sh, sw), (dh, dw) = self.padding, self.stride, self.dilation
        ho, wo = g.shape[2:]
        hp, wp = self.in_hw[0] + pt + pb, self.in_hw[1] + pl + pr
        out = np.zeros((n, c, hp, wp), g.dtype)
        for i in range(w.shape[2]):
            for j in range(w.shape[3]):
                part = np.tensordot(g, w[:, :, i, j], axes=([1], [0])).transpose(0, 3, 1, 2)
                out[:, :, i * dh:i * dh + (ho - 1) * sh + 1:sh, j * dw:j * dw + (wo - 1) * sw + 1:sw] += part
        return (np.ascontiguousarray(out[:, :, pt:pt + self.in_hw[0], pl:pl + self.in_hw[1]]),)

    def vjp(self, node, cotangents):
        (gg,) = cotangents
        g, w = node.inputs
        return [Conv2D(self.stride, self.padding, self.dilation)(gg, w),
                Conv2DGradWeight(self.stride, self.padding, self.dilation, tuple(w.shape[2:]))(g, gg)]


@dataclass(frozen=True)
class Conv2DGradWeight(Op):
    """The gradient of conv2d with respect to its weights: ``(g (N,O,ho,wo), x (N,C,H,W)) ->
    (O, C, *k_hw)``, summed over the batch."""

    stride: tuple
    padding: tuple
    dilation: tuple
    k_hw: tuple

    @property
    def name(self):
        return "conv2d_grad_weight"

    def infer(self, g, x):
        op = "conv2d_grad_weight"
        _need_nchw(op, g, "output gradient")
        _need_nchw(op, x, "input")
        _same_batch(op, g, x)
        if g.dtype != x.dtype or not is_float(g.dtype):
            raise dtype_error(op, f"operands must share a float dtype, got {g.dtype} and {x.dtype}")
        st, (pt, pb, pl, pr), dl = self.stride, self.padding, self.dilation
        ctx = f"g {g.shape}, x {x.shape}, kernel {self.k_hw}, stride {st}, padding {self.padding}, dilation {dl}"
        ho = _check_fit(op, "height", x.shape[2], self.k_hw[0], st[0], pt, pb, dl[0], ctx)
        wo = _check_fit(op, "width", x.shape[3], self.k_hw[1], st[1], pl, pr, dl[1], ctx)
        if (ho, wo) != tuple(g.shape[2:]):
            raise shape_error(op, f"the input convolves to {(ho, wo)}, not to the gradient's {tuple(g.shape[2:])} "
                                  f"({ctx})")
        return (TensorType(g.dtype, (g.shape[1], x.shape[1], *self.k_hw)),)

    def perform(self, node, g, x):
        v = _windows(_pad(x, self.padding), self.k_hw, self.stride, self.dilation, g.shape[2:])
        gw = np.tensordot(g, v, axes=([0, 2, 3], [0, 2, 3]))  # (O, C, kh, kw)
        return (np.ascontiguousarray(gw, dtype=g.dtype),)

    def vjp(self, node, cotangents):
        (gw,) = cotangents
        g, x = node.inputs
        return [Conv2D(self.stride, self.padding, self.dilation)(x, gw),
                Conv2DGradInput(self.stride, self.padding, self.dilation, tuple(x.shape[2:]))(g, gw)]


def _pad(x: np.ndarray, padding, value=0.0) -> np.ndarray:
    pt, pb, pl, pr = padding
    if not any(padding):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)


def _windows(xp: np.ndarray, k_hw, stride, dilation, out_hw) -> np.ndarray:
    """View (N, C, ho, wo, kh, kw) of the windows of padded `xp`."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = k_hw, stride, dilation, out_hw
    v = np.lib.stride_tricks.sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    return v[:, :, :(ho - 1) * sh + 1:sh, :(wo - 1) * sw + 1:sw, ::dh, ::dw]


# -- public convolution functions --------------------------------------------------------------


def conv2d(x, w, stride=1, padding=0, dilation=1) -> Var:
    """2-D convolution (cross-correlation, as in every DL framework) of NCHW `x` with OIHW `w`.

    stride, dilation: an int or (h, w). padding: an int, (ph, pw), ((top, bottom), (left, right)),
    "valid" or "same" (see the module docstring).

    >>> import graphc as gc
    >>> x = gc.placeholder("x", (None, 3, 227, 227))
    >>> gc.conv2d(x, gc.placeholder("w", (96, 3, 11, 11)), stride=4).shape     # AlexNet's first layer
    (None, 96, 55, 55)
    >>> gc.conv2d(gc.placeholder("x", (1, 1, 7, 7)), gc.placeholder("w", (1, 1, 3, 3)), stride=2).shape
    (1, 1, 3, 3)
    """
    op = "conv2d"
    x, w = _float_pair(op, x, w)
    _need_nchw(op, x, "input")
    _need_nchw(op, w, "weights (OIHW)")
    stride = _ints(stride, 2, "stride", op)
    dilation = _ints(dilation, 2, "dilation", op)
    pad = _padding(padding, x.shape[2:], w.shape[2:], stride, dilation, op)
    return Conv2D(stride, pad, dilation)(x, w)


def conv1d(x, w, stride=1, padding=0, dilation=1) -> Var:
    """1-D convolution of NCL `x` with OIK `w` (conv2d on an added unit height axis).
    padding: an int, (left, right), "valid" or "same".

    >>> import graphc as gc
    >>> gc.conv1d(gc.placeholder("x", (None, 4, 40)), gc.placeholder("w", (8, 4, 5)), padding="same").shape
    (None, 8, 40)
    """
    from .shape import ExpandDims, Squeeze

    op = "conv1d"
    x, w = _float_pair(op, x, w)
    _need_nchw(op, x, "input", 3)
    _need_nchw(op, w, "weights (OIK)", 3)
    (s,) = _ints(stride, 1, "stride", op)
    (d,) = _ints(dilation, 1, "dilation", op)
    if isinstance(padding, str):
        pad = _padding(padding, (1, x.shape[2]), (1, w.shape[2]), (1, s), (1, d), op)
    else:
        if isinstance(padding, (int, np.integer)):
            padding = (padding, padding)
        left, right = _ints(padding, 2, "padding", op, 0)
        pad = (0, 0, left, right)
    if x.shape[1] != w.shape[1]:
        raise shape_error(op, f"the input has {x.shape[1]} channels but the weights (OIK) expect {w.shape[1]}: "
                              f"x {x.shape}, w {w.shape}")
    _check_fit(op, "length", x.shape[2], w.shape[2], s, pad[2], pad[3], d,
               f"x {x.shape}, w {w.shape}, stride {s}, padding {pad[2:]}, dilation {d}")
    y = Conv2D((1, s), pad, (1, d))(ExpandDims((2,))(x), ExpandDims((2,))(w))
    return Squeeze((2,))(y)


def conv_transpose2d(x, w, stride=1, padding=0, output_padding=0, dilation=1) -> Var:
    """Transposed convolution (the gradient of conv2d with respect to its input), with PyTorch's
    weight layout ``(C_in, C_out, kh, kw)`` and output size
    ``(H - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``
    (``output_padding`` < stride). padding: an int, (ph, pw) or ((top, bottom), (left, right)).

    >>> import graphc as gc
    >>> gc.conv_transpose2d(gc.placeholder("x", (None, 8, 7, 7)), gc.placeholder("w", (8, 4, 4, 4)),
    ...                     stride=2, padding=1).shape
    (None, 4, 14, 14)
    """
    op = "conv_transpose2d"
    x, w = _float_pair(op, x, w)
    _need_nchw(op, x, "input")
    _need_nchw(op, w, "weights (C_in, C_out, kh, kw)")
    stride = _ints(stride, 2, "stride", op)
    dilation = _ints(dilation, 2, "dilation", op)
    if isinstance(padding, str):
        raise shape_error(op, f"padding must be an int, a pair or a pair of pairs, got {padding!r}")
    pad = _padding(padding, None, None, stride, dilation, op)
    opad = _ints(output_padding, 2, "output_padding", op, 0)
    for o, s, axis in zip(opad, stride, ("height", "width")):
        if o >= s:
            raise shape_error(op, f"output_padding must be smaller than the stride, got {o} >= {s} ({axis})")
    out_hw = tuple((n - 1) * s - p0 - p1 + d * (k - 1) + o + 1 for n, s, p0, p1, d, k, o in
                   zip(x.shape[2:], stride, pad[0::2], pad[1::2], dilation, w.shape[2:], opad))
    if min(out_hw) < 1:
        raise shape_error(op, f"output size (H - 1)*s - 2p + d*(k - 1) + output_padding + 1 = {out_hw} is empty "
                              f"(x {x.shape}, w {w.shape}, stride {stride}, padding {pad}, dilation {dilation})")
    return Conv2DGradInput(stride, pad, dilation, out_hw)(x, w)


# -- pooling -----------------------------------------------------------------------------------


def _pool_out(op: str, x_shape, size, stride, pad) -> tuple[int, int]:
    ctx = f"input {x_shape}, pool size {size}, stride {stride}, padding {pad}"
    out = []
    for axis, n, k, s, p0, p1 in zip(("height", "width"), x_shape[2:], size, stride, pad[0::2], pad[1::2]):
        o = _check_fit(op, axis, n, k, s, p0, p1, 1, ctx)
        # every window must hold at least one input element (the first and the last)
        if p0 > k - 1 or (o - 1) * s - p0 > n - 1:
            raise shape_error(op, f"padding {p0}+{p1} leaves windows with no input element along the {axis} "
                                  f"(padding must be smaller than the pool size; {ctx})")
        out.append(o)
    return tuple(out)


@dataclass(frozen=True)
class MaxPool2D(Op):
    """Max over each window: outputs (y, argmax). argmax (int32) is each maximum's flat position
    ``h * W + w`` in its input plane; the backward op scatters the gradient there."""

    size: tuple
    stride: tuple
    padding: tuple

    nout = 2

    @property
    def name(self):
        return "max_pool2d"

    def infer(self, x):
        _need_nchw("max_pool2d", x, "input")
        ho, wo = _pool_out("max_pool2d", x.shape, self.size, self.stride, self.padding)
        shape = (x.shape[0], x.shape[1], ho, wo)
        return (TensorType(x.dtype, shape), TensorType("int32", shape))

    def perform(self, node, x):
        n, c, h, w = x.shape
        ho, wo = node.outputs[0].shape[2:]
        kh, kw = self.size
        pt, pl = self.padding[0], self.padding[2]
        xp = _pad(x, self.padding, -np.inf)
        valid = _pad(np.ones((1, 1, h, w), bool), self.padding, False)
        v = _windows(xp, self.size, self.stride, (1, 1), (ho, wo)).reshape(n, c, ho, wo, kh * kw)
        vm = _windows(valid, self.size, self.stride, (1, 1), (ho, wo)).reshape(1, 1, ho, wo, kh * kw)
        a = np.argmax(v, axis=-1)
        # a window whose maximum is -inf may pick a padding position: take its first real element
        first = np.broadcast_to(np.argmax(vm, axis=-1), a.shape)
        a = np.where(np.take_along_axis(np.broadcast_to(vm, v.shape), a[..., None], -1)[..., 0], a, first)
        ih = np.arange(ho)[:, None] * self.stride[0] - pt + a // kw
        iw = np.arange(wo)[None, :] * self.stride[1] - pl + a % kw
        idx = (ih * w + iw).astype(np.int32)
        y = np.take_along_axis(x.reshape(n, c, h * w), idx.reshape(n, c, ho * wo), -1).reshape(idx.shape)
        return (y, idx)

    def vjp(self, node, cotangents):
        g = cotangents[0]
        if g is None:
            return [None]
        x = node.inputs[0]
        return [MaxPool2DGrad(tuple(x.shape[2:]))(g, node.outputs[1])]


@dataclass(frozen=True)
class MaxPool2DGrad(Op):
    """Scatter-add `g` (N, C, ho, wo) into zeros (N, C, *in_hw) at the argmax positions."""

    in_hw: tuple

    @property
    def name(self):
        return "max_pool2d_grad"

    def infer(self, g, idx):
        # an unknown (None) dimension matches any size: the cotangent may know the batch that
        # the input's placeholder leaves open; call-time shapes are checked exactly (infer_shape)
        same = len(g.shape) == len(idx.shape) and all(a is None or b is None or a == b
                                                      for a, b in zip(g.shape, idx.shape))
        if not same or idx.dtype != "int32":
            raise shape_error("max_pool2d_grad", f"gradient {g.shape} and int32 argmax {idx.shape} must match")
        n, c = (a if a is not None else b for a, b in zip(g.shape[:2], idx.shape[:2]))
        return (TensorType(g.dtype, (n, c, *self.in_hw)),)

    def perform(self, node, g, idx):
        n, c = g.shape[:2]
        h, w = self.in_hw
        out = np.zeros((n * c, h * w), g.dtype)
        rows = np.arange(n * c)[:, None]
        per = idx.shape[2] * idx.shape[3]
        np.add.at(out, (rows, idx.reshape(n * c, per)), g.reshape(n * c, per))
        return (out.reshape(n, c, h, w),)

    def vjp(self, node, cotangents):
        return [MaxPool2DGather()(cotangents[0], node.inputs[1]), None]


@dataclass(frozen=True)
class MaxPool2DGather(Op):
    """``x[n, c].flat[argmax[n, c]]``: the adjoint of MaxPool2DGrad (and max pooling itself when
    `x` is the pooled input)."""

    @property
    def name(self):
        return "max_pool2d_gather"

    def infer(self, x, idx):
        _same_batch("max_pool2d_gather", x, idx)
        if x.ndim != 4 or idx.ndim != 4 or x.shape[1] != idx.shape[1] or idx.dtype != "int32":
            raise shape_error("max_pool2d_gather", f"input {x.shape} and int32 argmax {idx.shape} do not match")
        return (TensorType(x.dtype, idx.shape),)

    def perform(self, node, x, idx):
        n, c = idx.shape[:2]
        flat = x.reshape(n, c, x.shape[2] * x.shape[3])
        return (np.take_along_axis(flat, idx.reshape(n, c, idx.shape[2] * idx.shape[3]), -1).reshape(idx.shape),)

    def vjp(self, node, cotangents):
        x, idx = node.inputs
        return [MaxPool2DGrad(tuple(x.shape[2:]))(cotangents[0], idx), None]


def _avg_divisor(in_hw, size, stride, padding, count_include_pad, out_hw, dtype) -> np.ndarray:
    """(ho, wo) array: the number each window's sum is divided by."""
    if count_include_pad:
        return np.full(out_hw, size[0] * size[1], dtype)
    ones = _pad(np.ones((1, 1, *in_hw), dtype), padding)
    return _windows(ones, size, stride, (1, 1), out_hw).sum(axis=(-2, -1))[0, 0]


@dataclass(frozen=True)
class AvgPool2D(Op):
    """Mean over each window (zero padding; see `count_include_pad` in avg_pool2d)."""

    size: tuple
    stride: tuple
    padding: tuple
    count_include_pad: bool = True

    @property
    def name(self):
        return "avg_pool2d"

    def infer(self, x):
        _need_nchw("avg_pool2d", x, "input")
        ho, wo = _pool_out("avg_pool2d", x.shape, self.size, self.stride, self.padding)
        return (TensorType(x.dtype, (x.shape[0], x.shape[1], ho, wo)),)

    def perform(self, node, x):
        out_hw = node.outputs[0].shape[2:]
        v = _windows(_pad(x, self.padding), self.size, self.stride, (1, 1), out_hw)
        div = _avg_divisor(x.shape[2:], self.size, self.stride, self.padding, self.count_include_pad, out_hw,
                           x.dtype)
        return ((v.sum(axis=(-2, -1)) / div).astype(x.dtype),)

    def vjp(self, node, cotangents):
        x = node.inputs[0]
        return [AvgPool2DGrad(self.size, self.stride, self.padding, self.count_include_pad,
                              tuple(x.shape[2:]))(cotangents[0])]


@dataclass(frozen=True)
class AvgPool2DGrad(Op):
    """The gradient (adjoint) of AvgPool2D: each output's gradient, divided by its window's
    count, added to every input element of the window."""

    size: tuple
    stride: tuple
    padding: tuple
    count_include_pad: bool
    in_hw: tuple

    @property
    def name(self):
        return "avg_pool2d_grad"

    def infer(self, g):
        _need_nchw("avg_pool2d_grad", g, "gradient")
        return (TensorType(g.dtype, (g.shape[0], g.shape[1], *self.in_hw)),)

    def perform(self, node, g):
        n, c, ho, wo = g.shape
        (pt, pb, pl, pr), (sh, sw) = self.padding, self.stride
        h, w = self.in_hw
        div = _avg_divisor(self.in_hw, self.size, self.stride, self.padding, self.count_include_pad, (ho, wo),
                           g.dtype)
        gd = g / div
        out = np.zeros((n, c, h + pt + pb, w + pl + pr), g.dtype)
        for i in range(self.size[0]):
            for j in range(self.size[1]):
                out[:, :, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw] += gd
        return (np.ascontiguousarray(out[:, :, pt:pt + h, pl:pl + w]),)

    def vjp(self, node, cotangents):
        return [AvgPool2D(self.size, self.stride, self.padding, self.count_include_pad)(cotangents[0])]


@dataclass(frozen=True)
class Upsample2D(Op):
    """Nearest-neighbour upsampling: each pixel repeated `scale` = (sh, sw) times."""

    scale: tuple

    @property
    def name(self):
        return "upsample2d"

    def infer(self, x):
        _need_nchw("upsample2d", x, "input")
        n, c, h, w = x.shape
        return (TensorType(x.dtype, (n, c, h * self.scale[0], w * self.scale[1])),)

    def perform(self, node, x):
        return (np.repeat(np.repeat(x, self.scale[0], axis=2), self.scale[1], axis=3),)

    def vjp(self, node, cotangents):
        from .reduce import sum as reduce_sum
        from .shape import reshape

        (g,) = cotangents
        n, c, h, w = node.inputs[0].shape
        sh, sw = self.scale
        blocks = reshape(g, (-1 if n is None else n, c, h, sh, w, sw))
        return [reduce_sum(blocks, (3, 5))]


def _pool_args(op, x, size, stride, padding):
    size = _ints(size, 2, "pool size", op)
    stride = size if stride is None else _ints(stride, 2, "stride", op)
    pad = _padding(padding, x.shape[2:], size, stride, (1, 1), op)
    return size, stride, pad


def max_pool2d(x, size, stride=None, padding=0) -> Var:
    """Max pooling of NCHW `x` over `size` windows (stride defaults to `size`). padding (an int,
    a pair, "valid" or "same") adds -inf borders; every window must still hold an input element.

    >>> import graphc as gc
    >>> gc.max_pool2d(gc.placeholder("x", (None, 6, 24, 24)), 2).shape
    (None, 6, 12, 12)
    """
    x = _float("max_pool2d", x)
    _need_nchw("max_pool2d", x, "input")
    return MaxPool2D(*_pool_args("max_pool2d", x, size, stride, padding))(x)[0]


def max_pool2d_with_argmax(x, size, stride=None, padding=0) -> tuple[Var, Var]:
    """max_pool2d and its int32 argmax (flat ``h * W + w`` positions in each input plane)."""
    x = _float("max_pool2d", x)
    _need_nchw("max_pool2d", x, "input")
    y, idx = MaxPool2D(*_pool_args("max_pool2d", x, size, stride, padding))(x)
    return y, idx


def max_pool1d(x, size, stride=None, padding=0) -> Var:
    """Max pooling of NCL `x` along its last axis.

    >>> import graphc as gc
    >>> gc.max_pool1d(gc.placeholder("x", (None, 4, 40)), 2).shape
    (None, 4, 20)
    """
    from .shape import ExpandDims, Squeeze

    x = _float("max_pool1d", x)
    _need_nchw("max_pool1d", x, "input", 3)
    (k,) = _ints(size, 1, "pool size", "max_pool1d")
    (s,) = _ints(k if stride is None else stride, 1, "stride", "max_pool1d")
    if isinstance(padding, str):
        pad = _padding(padding, (1, x.shape[2]), (1, k), (1, s), (1, 1), "max_pool1d")
    else:
        (p,) = _ints(padding, 1, "padding", "max_pool1d", 0)
        pad = (0, 0, p, p)
    y = MaxPool2D((1, k), (1, s), pad)(ExpandDims((2,))(x))[0]
    return Squeeze((2,))(y)


def avg_pool2d(x, size, stride=None, padding=0, count_include_pad: bool = True) -> Var:
    """Average pooling of NCHW `x`. With zero padding, ``count_include_pad=True`` (PyTorch's
    default) divides every window by its full size; False divides by the number of input elements
    in the window (Keras' and TensorFlow's ``padding="same"``).

    >>> import graphc as gc
    >>> gc.avg_pool2d(gc.placeholder("x", (None, 6, 24, 24)), 2).shape
    (None, 6, 12, 12)
    """
    x = _float("avg_pool2d", x)
    _need_nchw("avg_pool2d", x, "input")
    size, stride, pad = _pool_args("avg_pool2d", x, size, stride, padding)
    return AvgPool2D(size, stride, pad, bool(count_include_pad))(x)


def global_avg_pool2d(x, keepdims: bool = False) -> Var:
    """Mean over the spatial axes of NCHW `x`: (N, C) (or (N, C, 1, 1) with keepdims).

    >>> import graphc as gc
    >>> gc.global_avg_pool2d(gc.placeholder("x", (None, 64, 7, 7))).shape
    (None, 64)
    """
    from .reduce import mean

    x = _float("global_avg_pool2d", x)
    _need_nchw("global_avg_pool2d", x, "input")
    return mean(x, (2, 3), keepdims=keepdims)


def upsample2d(x, scale=2) -> Var:
    """Nearest-neighbour upsampling of NCHW `x` by an int or (sh, sw) factor.

    >>> import graphc as gc
    >>> gc.upsample2d(gc.placeholder("x", (None, 3, 7, 7)), 2).shape
    (None, 3, 14, 14)
    """
    x = _float("upsample2d", x)
    _need_nchw("upsample2d", x, "input")
    return Upsample2D(_ints(scale, 2, "scale", "upsample2d"))(x)


# -- test recipes ------------------------------------------------------------------------------
# A few fixed configurations per op (hypothesis picks one and draws the values): every distinct
# configuration is a distinct compiled library in the C-backend tests, so the set stays small.
# tests/test_conv.py checks many more random configurations against PyTorch.

_CONV_CONFIGS = [
    # (n, c, o, h, w, kh, kw, stride, padding, dilation)
    (2, 2, 3, 5, 5, 3, 3, 1, 0, 1),
    (1, 1, 2, 6, 5, 3, 2, (2, 1), 1, 1),
    (2, 2, 2, 6, 6, 2, 2, 1, "same", 1),
    (1, 2, 2, 7, 6, 2, 3, 2, ((1, 0), (0, 2)), (2, 1)),
    (2, 1, 2, 4, 5, 1, 1, (1, 2), 0, 1),
]


@register("conv2d")
def _sample_conv2d(d):
    n, c, o, h, w, kh, kw, s, p, dl = d.choice(_CONV_CONFIGS)
    return Case(lambda x, k: conv2d(x, k, s, p, dl), [d.array((n, c, h, w)), d.array((o, c, kh, kw))])


@register("conv1d")
def _sample_conv1d(d):
    n, c, o, length, k, s, p, dl = d.choice([(2, 2, 2, 7, 3, 1, 1, 1), (1, 1, 3, 8, 2, 2, "same", 2),
                                             (2, 2, 1, 6, 3, 1, "same", 1)])
    return Case(lambda x, w: conv1d(x, w, s, p, dl), [d.array((n, c, length)), d.array((o, c, k))])


@register("conv_transpose2d")
def _sample_conv_transpose2d(d):
    n, ci, co, h, w, kh, kw, s, p, op, dl = d.choice([
        (2, 2, 3, 3, 3, 3, 3, 1, 0, 0, 1), (1, 2, 2, 3, 2, 3, 2, 2, 1, 1, 1),
        (2, 1, 2, 2, 3, 2, 2, (2, 1), 0, (1, 0), (1, 2))])
    return Case(lambda x, k: conv_transpose2d(x, k, s, p, op, dl), [d.array((n, ci, h, w)),
                                                                     d.array((ci, co, kh, kw))])


_POOL_CONFIGS = [
    # (n, c, h, w, size, stride, padding)
    (2, 2, 4, 4, 2, None, 0),
    (1, 2, 5, 5, 3, 2, 1),
    (2, 1, 5, 4, (2, 3), (1, 2), (1, 1)),
    (1, 1, 5, 5, 2, 2, "same"),
]


@register("max_pool2d")
def _sample_max_pool2d(d):
    n, c, h, w, k, s, p = d.choice(_POOL_CONFIGS)
    return Case(lambda x: max_pool2d(x, k, s, p), [_shuffled(d, (n, c, h, w))])


@register("max_pool1d")
def _sample_max_pool1d(d):
    n, c, length, k, s, p = d.choice([(2, 2, 6, 2, None, 0), (1, 2, 7, 3, 2, 1)])
    return Case(lambda x: max_pool1d(x, k, s, p), [_shuffled(d, (n, c, length))])


@register("avg_pool2d")
def _sample_avg_pool2d(d):
    n, c, h, w, k, s, p = d.choice(_POOL_CONFIGS)
    include = d.boolean()
    return Case(lambda x: avg_pool2d(x, k, s, p, include), [d.array((n, c, h, w))])


@register("global_avg_pool2d")
def _sample_global_avg_pool2d(d):
    shape = d.choice([(2, 3, 2, 2), (1, 2, 3, 1)])
    return Case(lambda x: global_avg_pool2d(x), [d.array(shape)])


@register("upsample2d")
def _sample_upsample2d(d):
    shape, scale = d.choice([((2, 2, 2, 3), 2), ((1, 2, 3, 2), (1, 3))])
    return Case(lambda x: upsample2d(x, scale), [d.array(shape)])


def _shuffled(d, shape) -> np.ndarray:
    """Distinct values (no ties, which max pooling cannot differentiate): an evenly spaced grid
    in [-2, 2] with the order drawn from a random array."""
    size = int(np.prod(shape))
    order = np.argsort(d.array((size,)), kind="stable")
    return np.linspace(-2.0, 2.0, size)[order].reshape(shape)
