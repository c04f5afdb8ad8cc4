"""The op library. Each family module defines its ops (type inference, NumPy reference, vjp)
and registers a test recipe for each public function in `registry.REGISTRY`."""

import sys as _sys

from ..core import register_operators as _register_operators
from . import random
from ._base import as_var
from .control import Scan, ScanBody, scan
from .conv import (
    AvgPool2D,
    AvgPool2DGrad,
    Conv2D,
    Conv2DGradInput,
    Conv2DGradWeight,
    MaxPool2D,
    MaxPool2DGather,
    MaxPool2DGrad,
    Upsample2D,
    avg_pool2d,
    conv1d,
    conv2d,
    conv_transpose2d,
    global_avg_pool2d,
    max_pool1d,
    max_pool2d,
    max_pool2d_with_argmax,
    upsample2d,
)
from .elementwise import (
    Cast,
    Elemwise,
    abs,
    add,
    cast,
    clip,
    cos,
    divide,
    elu,
    equal,
    exp,
    expm1,
    greater,
    greater_equal,
    leaky_relu,
    less,
    less_equal,
    log,
    log1p,
    maximum,
    minimum,
    multiply,
    negative,
    not_equal,
    power,
    relu,
    sigmoid,
    sign,
    sin,
    softplus,
    sqrt,
    square,
    subtract,
    tanh,
    where,
)
from .linalg import Matmul, matmul
from .nn import (
    LogSoftmax,
    Softmax,
    SoftmaxCrossEntropy,
    SoftmaxCrossEntropyGrad,
    SoftmaxCrossEntropyWithGrad,
    log_softmax,
    softmax,
    softmax_cross_entropy,
)
from .reduce import Argmax, Reduce, argmax, logsumexp, max, mean, min, sum
from .registry import REGISTRY, Case, register
from .shape import (
    BroadcastLike,
    BroadcastTo,
    Concatenate,
    Dim,
    ExpandDims,
    OneHot,
    Reshape,
    ReshapeLike,
    Split,
    Squeeze,
    StopGradient,
    Subtensor,
    SubtensorGrad,
    Take,
    TakeGrad,
    Transpose,
    broadcast_like,
    broadcast_to,
    concatenate,
    dim,
    expand_dims,
    getitem,
    one_hot,
    reshape,
    split,
    squeeze,
    stack,
    stop_gradient,
    take,
    transpose,
    unbroadcast,
    zeros_like,
)

__all__ = [n for n in dir() if not n.startswith("_")]

# Var's operators (x + y, x @ y, x.sum(), x[i], ...) are this layer's functions; core asks for them.
_register_operators(_sys.modules[__name__])
