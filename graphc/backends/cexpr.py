"""Printing scalar ops as C expressions, shared by the C and CUDA emitters.

Each elementwise op's sympy expression (graphc/ops/scalar.py) is printed by a C99 printer that
knows the operand dtype: float32 code calls the float versions of the vectorisable math in
kernels/gc_math.h (gc_expf, ...), literals get an `f` suffix so float32 stays float32, and the
NumPy semantics that C lacks are spelled out (maximum propagates NaN; sign(NaN) is NaN).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1 as sp_expm1
from sympy.codegen.cfunctions import log1p as sp_log1p
from sympy.printing.c import C99CodePrinter

from ..ops.scalar import SCALAR_OPS, Sigmoid, Softplus

C_TYPES = {"float32": "float", "float64": "double", "int32": "int32_t", "int64": "int64_t", "bool": "uint8_t"}

_MATH = {sp.exp: "exp", sp_expm1: "expm1", sp.log: "log", sp_log1p: "log1p", sp.tanh: "tanh",
         sp.sin: "sin", sp.cos: "cos", Sigmoid: "sigmoid", Softplus: "softplus"}


class ScalarPrinter(C99CodePrinter):
    """A C99 printer for one dtype (`dtype` of the operands)."""

    def __init__(self, dtype: str):
        super().__init__({"strict": False})
        self.dtype = dtype
        self.ctype = C_TYPES[dtype]
        self.is_float = dtype in ("float32", "float64")
        self.suffix = "f" if dtype == "float32" else ""

    def _lit(self, value) -> str:
        if self.is_float:
            r = repr(float(np.float32(value) if self.dtype == "float32" else float(value)))
            if r in ("inf", "-inf", "nan"):
                return {"inf": "INFINITY", "-inf": "(-INFINITY)", "nan": "NAN"}[r]
            return f"{r}{self.suffix}"
        return f"(({self.ctype}){int(value)})"

    def _print_Integer(self, e):
        return self._lit(int(e))

    def _print_Rational(self, e):
        return self._lit(float(e)) if self.is_float else f"(({self.ctype}){e.p}/{e.q})"

    def _print_Float(self, e):
        return self._lit(float(e))

    def _print_Pow(self, e):
        base, exp = e.args
        b = self.parenthesize(base, 1000)
        if exp == 2:
            return f"({b}*{b})"
        if exp == -1:
            return f"({self._lit(1)}/{b})"
        if exp == sp.Rational(1, 2) and self.is_float:
            return f"sqrt{self.suffix}({self._print(base)})"
        if self.is_float:
            return f"pow{self.suffix}({self._print(base)}, {self._print(exp)})"
        return f"gc_ipow_{self.ctype}({self._print(base)}, {self._print(exp)})"

    def _print_math(self, e):
        return f"gc_{_MATH[e.func]}{self.suffix}({self._print(e.args[0])})"

    _print_exp = _print_log = _print_tanh = _print_sin = _print_cos = _print_math
    _print_expm1 = _print_log1p = _print_Sigmoid = _print_Softplus = _print_math

    def _print_Abs(self, e):
        a = self._print(e.args[0])
        return f"fabs{self.suffix}({a})" if self.is_float else f"(({a}) < 0 ? -({a}) : ({a}))"

    def _print_sign(self, e):
        a = self._print(e.args[0])
        one, zero = self._lit(1), self._lit(0)
        # NaN stays NaN (NumPy); the final branch returns the argument itself for 0 and NaN
        return f"(({a}) > {zero} ? {one} : (({a}) < {zero} ? -{one} : ({a})))"

    def _select(self, cond: str, a: str, b: str) -> str:
        # gc_select evaluates both arms branch-free: gcc will not vectorise a ?: whose arm calls
        # a math function (trapping math), but does vectorise the blend
        if self.is_float:
            return f"gc_select{self.suffix}({cond}, {a}, {b})"
        return f"(({cond}) ? ({a}) : ({b}))"

    def _minmax(self, e, cmp):
        # NumPy's maximum/minimum propagate NaN (C's fmax does not)
        a, b = (self._print(x) for x in e.args)
        if not self.is_float:
            return f"(({a}) {cmp} ({b}) ? ({a}) : ({b}))"
        return self._select(f"(({a}) {cmp} ({b}) || ({a}) != ({a}))", a, b)

    def _print_Max(self, e):
        if len(e.args) != 2:
            raise NotImplementedError("Max of more than two arguments")
        return self._minmax(e, ">")

    def _print_Min(self, e):
        if len(e.args) != 2:
            raise NotImplementedError("Min of more than two arguments")
        return self._minmax(e, "<")

    def _print_Relational(self, e):
        return f"(({self._print(e.lhs)}) {e.rel_op} ({self._print(e.rhs)}))"

    def _print_Piecewise(self, e):
        (a, cond), (b, _) = e.args
        c = cond.lhs if isinstance(cond, sp.Ne) and cond.rhs == 0 else cond
        return self._select(self._print(c), self._print(a), self._print(b))


_ARGS = sp.symbols("a0:3")


def scalar_c(scalar: str, operand_dtype: str, args: list[str]) -> str:
    """C expression for scalar op `scalar` applied to C expressions `args` of `operand_dtype`.

    >>> scalar_c("tanh", "float32", ["x"])
    'gc_tanhf(x)'
    >>> scalar_c("maximum", "float64", ["a", "b"])
    'gc_select(((a) > (b) || (a) != (a)), a, b)'
    """
    spec = SCALAR_OPS[scalar]
    syms = _ARGS[: spec.nin]
    expr = spec.expr(*syms)
    text = ScalarPrinter(operand_dtype).doprint(expr)
    # substitute operand names afterwards, so sympy never reorders or simplifies C snippets
    for s, a in sorted(zip(syms, args), key=lambda p: -len(str(p[0]))):
        text = _replace_symbol(text, str(s), a)
    return text


def _replace_symbol(text: str, name: str, value: str) -> str:
    import re

    return re.sub(rf"\b{name}\b", f"({value})" if not value.isidentifier() else value, text)


def cast_c(src_dtype: str, dst_dtype: str, arg: str) -> str:
    """C expression converting `arg` between dtypes with NumPy's result for ordinary values."""
    if dst_dtype == "bool":
        return f"(uint8_t)(({arg}) != 0)"
    return f"({C_TYPES[dst_dtype]})({arg})"
