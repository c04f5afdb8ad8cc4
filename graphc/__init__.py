"""graphc: a deep-learning compiler. Build a symbolic graph, take `grad`, compile, run.

>>> import numpy as np, graphc as gc
>>> x = gc.placeholder("x", (None, 3))
>>> W = gc.shared(np.ones((3, 2), "float32"), name="W")
>>> loss = gc.mean(gc.square(x @ W))
>>> gW = gc.grad(loss, W)
>>> f = gc.function([x], loss, updates=[(W, W - 0.1 * gW)])
>>> float(f(np.ones((4, 3), "float32")))
9.0
"""

from . import data, distributed, nn, ops, optim, passes, train
from .autodiff import grad, hessian, jacobian, vjp
from .core import CompileError, DTypeError, GradError, Graph, ShapeError, Var, constant, placeholder, shared
from .ops import (
    abs,
    argmax,
    avg_pool2d,
    broadcast_to,
    cast,
    clip,
    concatenate,
    conv1d,
    conv2d,
    conv_transpose2d,
    cos,
    divide,
    elu,
    equal,
    exp,
    expand_dims,
    expm1,
    global_avg_pool2d,
    greater,
    greater_equal,
    leaky_relu,
    less,
    less_equal,
    log,
    log1p,
    log_softmax,
    logsumexp,
    matmul,
    max,
    max_pool1d,
    max_pool2d,
    maximum,
    mean,
    min,
    minimum,
    multiply,
    negative,
    not_equal,
    one_hot,
    power,
    random,
    relu,
    reshape,
    scan,
    sigmoid,
    sign,
    sin,
    softmax,
    softmax_cross_entropy,
    softplus,
    split,
    sqrt,
    square,
    squeeze,
    stack,
    stop_gradient,
    subtract,
    sum,
    take,
    tanh,
    transpose,
    upsample2d,
    where,
)
from .ops import add as add
from .runtime import Function, function
from .version import __version__

__all__ = [
    "CompileError", "DTypeError", "Function", "GradError", "Graph", "ShapeError", "Var", "abs", "add", "argmax",
    "broadcast_to", "cast", "clip", "concatenate", "constant", "cos", "divide", "elu", "equal", "exp",
    "expand_dims", "expm1", "function", "grad", "hessian", "jacobian", "vjp",
    "greater", "greater_equal", "leaky_relu", "less", "less_equal",
    "log", "log1p", "log_softmax", "logsumexp", "matmul", "max", "maximum", "mean", "min", "minimum",
    "multiply", "negative", "not_equal", "one_hot", "ops", "passes", "data", "nn", "optim", "train", "placeholder",
    "power", "random", "relu",
    "reshape", "scan", "shared", "sigmoid", "sign", "sin", "softmax", "softmax_cross_entropy", "softplus", "split",
    "sqrt",
    "square", "squeeze", "stack", "stop_gradient", "subtract", "sum", "take", "tanh", "transpose", "where",
    "avg_pool2d", "conv1d", "conv2d", "conv_transpose2d", "global_avg_pool2d", "max_pool1d", "max_pool2d",
    "upsample2d",
]
