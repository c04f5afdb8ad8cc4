"""graphc.testing: verify_grad, check_grads and the public hypothesis strategies (issue 15 item 9)."""

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings

import graphc as gc
from graphc import testing
from graphc.core import Op, TensorType
from graphc.testing import strategies as gst


@dataclass(frozen=True)
class Cube(Op):
    """x**3 with a chosen vjp factor: 3 is right, anything else is a deliberate bug."""

    factor: float = 3.0

    def infer(self, x):
        return (TensorType(x.dtype, x.shape),)

    def perform(self, node, x):
        return (x ** 3,)

    def vjp(self, node, cotangents):
        (x,) = node.inputs
        return [cotangents[0] * self.factor * x * x]


X = np.array([[0.3, -1.2, 0.8], [1.5, -0.4, 2.0]])


def test_verify_grad_passes_a_correct_custom_gradient():
    testing.verify_grad(lambda x: Cube(3.0)(x), [X], rng=0)
    testing.verify_grad(lambda x, y: gc.tanh(x) * y + Cube()(y), [X, X[::-1].copy()], n_tests=3, rng=1)


def test_verify_grad_catches_a_wrong_gradient_and_names_the_worst_element():
    with pytest.raises(testing.GradientError) as info:
        testing.verify_grad(lambda a, b: gc.sum(a * 2.0 + Cube(2.9)(b)), [X, X], rng=0)
    err = info.value
    assert isinstance(err, AssertionError)
    assert err.input == 1  # the first input's gradient is right
    # the error 0.1 * x^2 is largest where |x| is: element (1, 2), x = 2.0
    assert err.index == (1, 2)
    assert "input 1" in str(err) and "(1, 2)" in str(err)
    assert abs(err.numeric) > abs(err.analytic)


def test_check_grads_second_order_catches_a_wrong_second_derivative():
    @dataclass(frozen=True)
    class BadSquareGrad(Op):
        """d/dx x^2 = 2x, but its own vjp says 3 (a wrong second derivative only)."""

        def infer(self, x):
            return (TensorType(x.dtype, x.shape),)

        def perform(self, node, x):
            return (2 * x,)

        def vjp(self, node, cotangents):
            return [cotangents[0] * 3.0]

    @dataclass(frozen=True)
    class Square(Op):
        def infer(self, x):
            return (TensorType(x.dtype, x.shape),)

        def perform(self, node, x):
            return (x * x,)

        def vjp(self, node, cotangents):
            return [cotangents[0] * BadSquareGrad()(node.inputs[0])]

    fn = lambda x: gc.sum(Square()(x))  # noqa: E731
    testing.check_grads(fn, [X], order=1)  # first order is right
    with pytest.raises(testing.GradientError, match="order-2"):
        testing.check_grads(fn, [X], order=2, rng=0)
    testing.check_grads(lambda x: gc.sum(gc.sin(x) * x), [X], order=2, rng=0)
    with pytest.raises(ValueError, match="reverse mode only"):
        testing.check_grads(fn, [X], modes=("fwd",))


def test_verify_grad_rejects_bad_arguments():
    with pytest.raises(TypeError, match="non-empty list"):
        testing.verify_grad(gc.exp, X)
    with pytest.raises(TypeError, match="must return a Var"):
        testing.verify_grad(lambda x: 1.0, [X])


@settings(max_examples=10, deadline=None)
@given(gst.arrays(gst.shapes(min_dims=1, max_dims=2)))
def test_user_composite_op_property(x):
    # the README's five-line example: a composite op built from gc ops
    def log_cosh(v):
        return gc.log((gc.exp(v) + gc.exp(-v)) * 0.5)

    testing.verify_grad(log_cosh, [x], n_tests=1)


@settings(max_examples=15, deadline=None)
@given(gst.op_cases())
def test_registry_cases_come_from_the_public_strategies(case):
    assert isinstance(case.args, list)
    vs = [gc.placeholder(f"a{i}", a.shape, a.dtype.name) for i, a in enumerate(case.args)]
    out = case.build(*vs)
    assert isinstance(out, gc.Var) or all(isinstance(o, gc.Var) for o in out)


def test_strategies_need_hypothesis_with_a_clear_message(monkeypatch):
    import builtins
    import importlib
    import sys

    real = builtins.__import__

    def no_hypothesis(name, *a, **kw):
        if name == "hypothesis" or name.startswith("hypothesis."):
            raise ImportError("No module named 'hypothesis'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_hypothesis)
    monkeypatch.delitem(sys.modules, "graphc.testing.strategies")
    with pytest.raises(ImportError, match=r"pip install 'graphc\[testing\]'"):
        importlib.import_module("graphc.testing.strategies")
