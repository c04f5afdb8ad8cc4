"""Scalar op definitions: each elementwise op once, as a sympy expression plus a NumPy reference.

The sympy expression is the single source of truth for an op's math: its derivative (unless a
numerically stable one is given), and later the body of fused C and CUDA kernels, which sympy's
printers produce from the composite expression of a fused chain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1 as sp_expm1
from sympy.codegen.cfunctions import log1p as sp_log1p


class Sigmoid(sp.Function):
    """1 / (1 + exp(-x)), with the stable derivative s(1 - s)."""

    def fdiff(self, argindex=1):
        s = Sigmoid(self.args[0])
        return s * (1 - s)


class Softplus(sp.Function):
    """log(1 + exp(x)), whose derivative is sigmoid(x)."""

    def fdiff(self, argindex=1):
        return Sigmoid(self.args[0])


def _np_sigmoid(x):
    # Two-branch form: exp never overflows, and tiny outputs keep their precision.
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _np_softplus(x):
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype, copy=False)


@dataclass(frozen=True)
class ScalarOp:
    """One elementwise op.

    kind: "same" keeps the (promoted) input dtype, "float" returns a float (ints become float64),
    "bool" is a comparison, "where" is the select op.
    vjp: a hand-written gradient ``(g, inputs, output) -> [Var | None]``; when None the
    derivative comes from ``sympy.diff`` of `expr`.
    domain/avoid: where tests sample inputs, and points (kinks, poles) to keep away from.
    """

    name: str
    nin: int
    expr: Callable[..., sp.Basic]
    ref: Callable[..., np.ndarray]
    kind: str = "same"
    vjp: Callable | None = None
    differentiable: bool = True
    domain: tuple[float, float] = (-2.0, 2.0)
    avoid: tuple[float, ...] = ()


def _relu_vjp(g, inputs, out):
    from . import elementwise as E

    (x,) = inputs
    return [E.where(E.greater(x, 0), g, 0)]


def _abs_vjp(g, inputs, out):
    from . import elementwise as E

    return [E.multiply(g, E.sign(inputs[0]))]


def _maximum_vjp(g, inputs, out):
    # Ties send the whole gradient to the first operand, like a subgradient choice.
    from . import elementwise as E

    x, y = inputs
    pick_x = E.greater_equal(x, y)
    return [E.where(pick_x, g, 0), E.where(pick_x, 0, g)]


def _minimum_vjp(g, inputs, out):
    from . import elementwise as E

    x, y = inputs
    pick_x = E.less_equal(x, y)
    return [E.where(pick_x, g, 0), E.where(pick_x, 0, g)]


def _where_vjp(g, inputs, out):
    from . import elementwise as E

    c, _, _ = inputs
    return [None, E.where(c, g, 0), E.where(c, 0, g)]


def _no_grad(g, inputs, out):
    return [None] * len(inputs)


def _np_power(x, y):
    """np.power, with graphc's rule for a negative integer exponent known only at run time
    (NumPy raises): 1/x**n truncated toward zero, as the C backend's gc_ipow computes."""
    if x.dtype.kind in "iu" and np.asarray(y).dtype.kind in "iu" and np.any(np.asarray(y) < 0):
        x, y = np.broadcast_arrays(x, y)
        neg = y < 0
        out = np.power(x, np.where(neg, 0, y))
        trunc = np.where(x == 1, 1, np.where(x == -1, np.where(y % 2 == 1, -1, 1), 0)).astype(out.dtype)
        return np.where(neg, trunc, out)
    return np.power(x, y)


def _cmp(name, fn, ref):
    return ScalarOp(name, 2, fn, ref, kind="bool", vjp=_no_grad, differentiable=False)


SCALAR_OPS: dict[str, ScalarOp] = {
    op.name: op
    for op in [
        ScalarOp("negative", 1, lambda x: -x, np.negative),
        ScalarOp("exp", 1, sp.exp, np.exp, "float", domain=(-3, 3)),
        ScalarOp("expm1", 1, sp_expm1, np.expm1, "float", domain=(-3, 3)),
        ScalarOp("log", 1, sp.log, np.log, "float", domain=(0.2, 4)),
        ScalarOp("log1p", 1, sp_log1p, np.log1p, "float", domain=(-0.8, 4)),
        ScalarOp("sqrt", 1, sp.sqrt, np.sqrt, "float", domain=(0.2, 4)),
        ScalarOp("square", 1, lambda x: x**2, np.square),
        ScalarOp("abs", 1, sp.Abs, np.abs, vjp=_abs_vjp, avoid=(0.0,)),
        ScalarOp("sign", 1, sp.sign, np.sign, vjp=_no_grad, differentiable=False),
        ScalarOp("sin", 1, sp.sin, np.sin, "float"),
        ScalarOp("cos", 1, sp.cos, np.cos, "float"),
        ScalarOp("tanh", 1, sp.tanh, np.tanh, "float"),
        ScalarOp("sigmoid", 1, Sigmoid, _np_sigmoid, "float", domain=(-4, 4)),
        ScalarOp("softplus", 1, Softplus, _np_softplus, "float", domain=(-4, 4)),
        ScalarOp("relu", 1, lambda x: sp.Max(x, 0), lambda x: np.maximum(x, 0).astype(x.dtype, copy=False),
                 vjp=_relu_vjp, avoid=(0.0,)),
        ScalarOp("add", 2, lambda x, y: x + y, np.add),
        ScalarOp("subtract", 2, lambda x, y: x - y, np.subtract),
        ScalarOp("multiply", 2, lambda x, y: x * y, np.multiply),
        ScalarOp("divide", 2, lambda x, y: x / y, np.true_divide, "float", domain=(0.5, 2)),
        ScalarOp("power", 2, lambda x, y: x**y, _np_power, domain=(0.5, 2)),
        ScalarOp("maximum", 2, sp.Max, np.maximum, vjp=_maximum_vjp),
        ScalarOp("minimum", 2, sp.Min, np.minimum, vjp=_minimum_vjp),
        _cmp("less", lambda x, y: sp.StrictLessThan(x, y), np.less),
        _cmp("less_equal", lambda x, y: sp.LessThan(x, y), np.less_equal),
        _cmp("greater", lambda x, y: sp.StrictGreaterThan(x, y), np.greater),
        _cmp("greater_equal", lambda x, y: sp.GreaterThan(x, y), np.greater_equal),
        _cmp("equal", lambda x, y: sp.Eq(x, y), np.equal),
        _cmp("not_equal", lambda x, y: sp.Ne(x, y), np.not_equal),
        ScalarOp("where", 3, lambda c, a, b: sp.Piecewise((a, sp.Ne(c, 0)), (b, True)), np.where,
                 kind="where", vjp=_where_vjp),
    ]
}
