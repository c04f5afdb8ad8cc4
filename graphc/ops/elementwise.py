"""Elementwise ops: one `Elemwise` op class parametrised by a scalar op, plus `Cast`.

Gradients come from sympy: d(op)/d(input_i) is differentiated once per op, cached, and turned
back into graph ops by `sympy_to_graph`, so backprop of `tanh` builds ``g * (1 - tanh(x)**2)``
out of the same `tanh(x)` node as the forward pass (hash-consing shares it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1 as sp_expm1
from sympy.codegen.cfunctions import log1p as sp_log1p

from ..core import (
    Constant,
    DTypeError,
    Op,
    TensorType,
    Var,
    broadcast_concrete,
    broadcast_static,
    canonical_dtype,
    dtype_error,
    is_float,
    is_int,
)
from ._base import as_var, promote
from .registry import Case, register
from .scalar import SCALAR_OPS, ScalarOp, Sigmoid, Softplus


@dataclass(frozen=True)
class Elemwise(Op):
    """Apply scalar op `scalar` elementwise with broadcasting. Inputs share one dtype
    (except the bool condition of `where`); the public functions insert casts."""

    elementwise = True
    keeps_shape = True

    scalar: str

    @property
    def name(self) -> str:
        return self.scalar

    @property
    def spec(self) -> ScalarOp:
        return SCALAR_OPS[self.scalar]

    @property
    def differentiable(self) -> bool:
        return self.spec.differentiable

    def infer(self, *types: TensorType):
        spec = self.spec
        if len(types) != spec.nin:
            raise dtype_error(self.name, f"takes {spec.nin} inputs, got {len(types)}")
        data = types[1:] if spec.kind == "where" else types
        if len({t.dtype for t in data}) != 1:
            raise dtype_error(self.name, f"inputs must share a dtype, got {[t.dtype for t in data]}")
        if spec.kind == "where" and types[0].dtype != "bool":
            raise dtype_error(self.name, f"condition must be bool, got {types[0].dtype}")
        dtype = data[0].dtype
        if spec.kind == "float" and not is_float(dtype):
            raise dtype_error(self.name, f"needs float inputs, got {dtype}")
        out_dtype = "bool" if spec.kind == "bool" else dtype
        shape = broadcast_static([t.shape for t in types], self.name)
        return (TensorType(out_dtype, shape),)

    def infer_shape(self, node, shapes):
        return [broadcast_concrete([v.shape for v in node.inputs], list(shapes), self.name)]

    def perform(self, node, *arrays):
        out = self.spec.ref(*arrays)
        return (np.asarray(out, dtype=node.outputs[0].dtype),)

    def vjp(self, node, cotangents):
        (g,) = cotangents
        spec = self.spec
        if spec.vjp is not None:
            grads = spec.vjp(g, node.inputs, node.outputs[0])
        else:
            grads = [_sympy_vjp(self.scalar, i, g, node.inputs) for i in range(spec.nin)]
        from .shape import unbroadcast

        return [None if gi is None else unbroadcast(gi, x) for gi, x in zip(grads, node.inputs)]


@dataclass(frozen=True)
class Cast(Op):
    """Convert to `dtype` (NumPy's astype). The gradient flows back only between float dtypes."""

    elementwise = True
    keeps_shape = True

    dtype: str

    def infer(self, x: TensorType):
        return (TensorType(self.dtype, x.shape),)

    def infer_shape(self, node, shapes):
        return [tuple(shapes[0])]

    def perform(self, node, x):
        return (x.astype(self.dtype),)

    def vjp(self, node, cotangents):
        (g,) = cotangents
        x = node.inputs[0]
        return [cast(g, x.dtype) if is_float(x.dtype) and is_float(self.dtype) else None]


# -- sympy <-> graph ---------------------------------------------------------------------------

_G = sp.Symbol("g")
_ARGS = sp.symbols("x0:3")


@functools.cache
def _derivative(scalar: str, i: int) -> sp.Expr:
    spec = SCALAR_OPS[scalar]
    args = _ARGS[: spec.nin]
    return sp.Mul(_G, sp.diff(spec.expr(*args), args[i]))


def _sympy_vjp(scalar: str, i: int, g: Var, inputs) -> Var | None:
    expr = _derivative(scalar, i)
    if expr == 0:
        return None
    env = {_G: g, **{s: v for s, v in zip(_ARGS, inputs)}}
    return sympy_to_graph(expr, env)


_FUNCTIONS = {
    sp.exp: "exp", sp.log: "log", sp.sin: "sin", sp.cos: "cos", sp.tanh: "tanh", sp.Abs: "abs",
    sp.sign: "sign", Sigmoid: "sigmoid", Softplus: "softplus", sp_log1p: "log1p", sp_expm1: "expm1",
    sp.Max: "maximum", sp.Min: "minimum",
}


def sympy_to_graph(expr: sp.Basic, env: dict) -> Var | float:
    """Build graph ops computing the sympy expression `expr`; `env` maps its symbols to Vars.

    >>> import graphc as gc
    >>> x = gc.placeholder("x", (2,))
    >>> sympy_to_graph(sp.Symbol("a") ** 2 + 1, {sp.Symbol("a"): x}).owner.op.name
    'add'
    """
    if expr in env:
        return env[expr]
    if expr.is_Number:
        return float(expr)
    if expr.is_Add:
        terms = [sympy_to_graph(a, env) for a in expr.args]
        return functools.reduce(add, terms)
    if expr.is_Mul:
        coeff, rest = expr.as_coeff_Mul()
        if coeff != 1:
            body = sympy_to_graph(rest, env)
            return negative(body) if coeff == -1 else multiply(float(coeff), body)
        num, den = [], []
        for a in expr.args:
            if a.is_Pow and a.exp.is_Number and a.exp < 0:
                den.append(sympy_to_graph(a.base ** (-a.exp), env))
            else:
                num.append(sympy_to_graph(a, env))
        top = functools.reduce(multiply, num) if num else 1.0
        return divide(top, functools.reduce(multiply, den)) if den else top
    if expr.is_Pow:
        base, e = expr.args
        b = sympy_to_graph(base, env)
        if e == 2:
            return square(b)
        if e == sp.Rational(1, 2):
            return sqrt(b)
        if e.is_Number and e < 0:
            return divide(1.0, sympy_to_graph(base ** (-e), env))
        return power(b, sympy_to_graph(e, env))
    fn = _FUNCTIONS.get(expr.func)
    if fn is not None:
        return _apply(fn, *(sympy_to_graph(a, env) for a in expr.args))
    raise NotImplementedError(f"sympy_to_graph: no graph op for {expr.func} in {expr}")


# -- public functions --------------------------------------------------------------------------


def cast(x, dtype) -> Var:
    """Convert `x` to `dtype` (no-op when it already has it).

    >>> import graphc as gc
    >>> gc.cast(gc.placeholder("x", (2,)), "float64").dtype
    'float64'
    """
    x = as_var(x)
    dtype = canonical_dtype(dtype)
    return x if x.dtype == dtype else Cast(dtype)(x)


def _bool_rule(name: str, args: tuple):
    """NumPy's rules for bool operands: ``+`` is logical or (so ``b + b`` stays 0/1; the C
    backend would otherwise store 2 in a bool), ``-`` and unary minus are errors, and
    ``square``/``power`` give an integer. NumPy gives int8 there; graphc has no int8, so the
    result is int32 (the same values)."""
    if name == "add":
        return args, "maximum", "bool"  # or == max on {0, 1}
    if name in ("subtract", "negative", "sign"):
        raise DTypeError(f"{name} of bool tensors is not supported (as in NumPy); use logical ops "
                         "(gc.not_equal, gc.where) or cast to an integer dtype first")
    if name in ("square", "power"):
        return tuple(cast(a, "int32") if isinstance(a, Var) else as_var(a, "int32") for a in args), name, "int32"
    return args, name, "bool"


def _check_int_exponent(e) -> None:
    """A constant negative integer exponent is a build error, as NumPy's "Integers to negative
    integer powers are not allowed". Exponents only known at run time follow graphc's rule on
    every backend: x ** -n is 1/x**n truncated toward zero (1 for x = 1, +-1 for x = -1, else 0)."""
    if isinstance(e, bool):
        return
    value = e.value if isinstance(e, Constant) else e if isinstance(e, (int, np.integer, np.ndarray)) else None
    if value is not None and np.asarray(value).dtype.kind in "iu" and np.any(np.asarray(value) < 0):
        raise DTypeError("power: integers to negative integer powers are not allowed (as in NumPy); "
                         "cast the base to a float dtype first")


def _apply(name: str, *args) -> Var:
    spec = SCALAR_OPS[name]
    if spec.kind == "where":
        cond, a, b = args
        cond = as_var(cond)
        if cond.dtype != "bool":
            cond = not_equal(cond, 0)
        dtype = promote(a, b)
        return Elemwise(name)(cond, as_var(a, dtype) if not isinstance(a, Var) else cast(a, dtype),
                              as_var(b, dtype) if not isinstance(b, Var) else cast(b, dtype))
    if not any(isinstance(a, Var) for a in args):
        args = (as_var(args[0]), *args[1:])
    dtype = promote(*args)
    if dtype == "bool":
        args, name, dtype = _bool_rule(name, args)
    if name == "power" and is_int(dtype):
        _check_int_exponent(args[1])
    if spec.kind == "float" and not is_float(dtype):
        dtype = "float64"
    vs = [cast(a, dtype) if isinstance(a, Var) else as_var(a, dtype) for a in args]
    return Elemwise(name)(*vs)


def _unary(name):
    def fn(x) -> Var:
        return _apply(name, x)

    fn.__name__ = name
    fn.__doc__ = f"Elementwise ``{name}`` (NumPy semantics).\n\n    >>> import graphc as gc\n" \
                 f"    >>> gc.{name}(gc.placeholder('x', (3,))).shape\n    (3,)\n    "
    return fn


def _binary(name):
    def fn(x, y) -> Var:
        return _apply(name, x, y)

    fn.__name__ = name
    fn.__doc__ = f"Elementwise ``{name}`` with NumPy broadcasting and type promotion.\n\n" \
                 f"    >>> import graphc as gc\n    >>> gc.{name}(gc.placeholder('x', (2, 1)), 1.0).shape\n" \
                 f"    (2, 1)\n    "
    return fn


negative = _unary("negative")
exp = _unary("exp")
expm1 = _unary("expm1")
log = _unary("log")
log1p = _unary("log1p")
sqrt = _unary("sqrt")
square = _unary("square")
abs = _unary("abs")  # noqa: A001 - NumPy's name
sign = _unary("sign")
sin = _unary("sin")
cos = _unary("cos")
tanh = _unary("tanh")
sigmoid = _unary("sigmoid")
softplus = _unary("softplus")
relu = _unary("relu")
add = _binary("add")
subtract = _binary("subtract")
multiply = _binary("multiply")
divide = _binary("divide")
power = _binary("power")
maximum = _binary("maximum")
minimum = _binary("minimum")
less = _binary("less")
less_equal = _binary("less_equal")
greater = _binary("greater")
greater_equal = _binary("greater_equal")
equal = _binary("equal")
not_equal = _binary("not_equal")


def where(cond, a, b) -> Var:
    """Pick `a` where `cond` is true, else `b` (NumPy's ``where``, broadcasting all three).

    >>> import graphc as gc
    >>> x = gc.placeholder("x", (3,))
    >>> gc.where(x > 0, x, 0.0).shape
    (3,)
    """
    return _apply("where", cond, a, b)


def clip(x, lo, hi) -> Var:
    """Limit `x` to [lo, hi]; the gradient is 1 inside the interval and 0 outside.

    >>> import graphc as gc
    >>> gc.clip(gc.placeholder("x", (3,)), -1.0, 1.0).shape
    (3,)
    """
    return minimum(maximum(x, lo), hi)


def leaky_relu(x, alpha: float = 0.01) -> Var:
    """``x`` for x > 0, else ``alpha * x``.

    >>> import graphc as gc
    >>> gc.leaky_relu(gc.placeholder("x", (3,)), 0.1).shape
    (3,)
    """
    x = as_var(x)
    return where(greater(x, 0), x, multiply(x, alpha))


def elu(x, alpha: float = 1.0) -> Var:
    """``x`` for x > 0, else ``alpha * (exp(x) - 1)``; expm1 keeps small negatives accurate.

    >>> import graphc as gc
    >>> gc.elu(gc.placeholder("x", (3,))).shape
    (3,)
    """
    x = as_var(x)
    return where(greater(x, 0), x, multiply(expm1(minimum(x, 0)), alpha))


# -- test recipes (see registry.py) ------------------------------------------------------------


def _register_scalar(spec: ScalarOp):
    fn = globals()[spec.name]

    @register(spec.name, differentiable=spec.differentiable)
    def sample(d):
        shapes = d.broadcast_shapes(spec.nin)
        lo, hi = spec.domain
        if spec.kind == "where":
            cond = d.int_array(shapes[0], 0, 1).astype(bool)
            return Case(fn, [cond, d.array(shapes[1], lo, hi), d.array(shapes[2], lo, hi)], wrt=(1, 2))
        return Case(fn, [d.array(s, lo, hi, avoid=spec.avoid) for s in shapes])


for _spec in SCALAR_OPS.values():
    _register_scalar(_spec)


@register("leaky_relu")
def _sample_leaky(d):
    return Case(lambda x: leaky_relu(x, 0.2), [d.array(d.shape(), avoid=(0.0,))])


@register("elu")
def _sample_elu(d):
    return Case(lambda x: elu(x, 0.7), [d.array(d.shape(), avoid=(0.0,))])


@register("clip")
def _sample_clip(d):
    return Case(lambda x: clip(x, -1.0, 1.0), [d.array(d.shape(), -2, 2, avoid=(-1.0, 1.0))])


@register("cast", differentiable=False)
def _sample_cast(d):
    # float -> int has no gradient; the float -> float path is covered by a unit test, since a
    # float32 round trip is too coarse for float64 finite differences.
    return Case(lambda x: cast(x * 3.0, "int32"), [d.array(d.shape())])
