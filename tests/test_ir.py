"""The IR: hash-consing, constants, toposort, multi-output ops, an op holding a subgraph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import graphc as gc
from graphc.backends.ref import RefProgram
from graphc.core import Graph, Op, TensorType, apply, clone_replace, toposort
from graphc.ops import Split


def test_identical_subgraphs_are_one_node():
    x = gc.placeholder("x", (3,))
    a = gc.tanh(x * 2.0 + 1.0)
    b = gc.tanh(x * 2.0 + 1.0)
    assert a is b
    assert gc.exp(x) is not gc.exp(gc.placeholder("x", (3,)))  # placeholders are distinct by identity


def test_equal_small_constants_are_one_var():
    assert gc.constant(np.arange(3.0)) is gc.constant(np.arange(3.0))
    assert gc.constant(1.0) is not gc.constant(1.0, "float64")
    c = gc.constant(np.ones(3))
    with pytest.raises(ValueError):
        c.value[0] = 5.0  # constants are read-only


def test_ops_compare_by_attributes():
    from graphc.ops import Reduce

    assert Reduce("sum", (0,), False) == Reduce("sum", (0,), False)
    assert hash(Reduce("sum", (0,), False)) == hash(Reduce("sum", (0,), False))
    assert Reduce("sum", (0,), False) != Reduce("sum", (0,), True)


def test_toposort_puts_inputs_first_and_handles_deep_graphs():
    x = gc.placeholder("x", (2,))
    v = x
    for _ in range(5000):  # deeper than Python's recursion limit
        v = v + 1.0
    order = toposort([v])
    assert len(order) == 5000
    seen = set()
    for node in order:
        assert all(i.owner is None or id(i.owner) in seen for i in node.inputs)
        seen.add(id(node))
    assert float(gc.function([x], v)(np.zeros(2, "float32"))[0]) == 5000.0


def test_multi_output_node():
    x = gc.placeholder("x", (5, 2), "float64")
    a, b = gc.placeholder("a", (2, 2), "float64"), gc.placeholder("b", (3, 2), "float64")
    p, q = Split(0, 2)(x, a, b)
    assert p.owner is q.owner and (p.index, q.index) == (0, 1)
    xv = np.arange(10.0).reshape(5, 2)
    pv, qv = gc.function([x, a, b], [p, q])(xv, np.zeros((2, 2)), np.zeros((3, 2)))
    np.testing.assert_array_equal(pv, xv[:2])
    np.testing.assert_array_equal(qv, xv[2:])
    # the gradient flows through both outputs
    g = gc.grad(gc.sum(p) * 2.0 + gc.sum(q * q), x)
    gv = gc.function([x, a, b], g)(xv, np.zeros((2, 2)), np.zeros((3, 2)))
    np.testing.assert_array_equal(gv, np.concatenate([np.full((2, 2), 2.0), 2 * xv[2:]]))


@dataclass(frozen=True)
class Composite(Op):
    """A test op whose attribute is a whole subgraph: the shape scan will take."""

    inner: Graph

    def infer(self, *types):
        return tuple(o.type for o in self.inner.outputs)

    def perform(self, node, *arrays):
        return tuple(RefProgram(self.inner, len(self.inner.outputs), [])(list(arrays)))

    def vjp(self, node, cotangents):
        outs = clone_replace(self.inner.outputs, dict(zip(self.inner.inputs, node.inputs)))
        cost = gc.sum(outs[0] * cotangents[0])
        return gc.grad(cost, list(node.inputs))


def test_op_holding_a_subgraph_runs_and_differentiates():
    u = gc.placeholder("u", (3,), "float64")
    body = Graph([u], [gc.sin(u) * u])
    x = gc.placeholder("x", (3,), "float64")
    y = Composite(body)(x)
    assert Composite(body)(x) is y  # hash-consed like any op
    xv = np.array([0.1, 0.5, 2.0])
    yv, gv = gc.function([x], [y, gc.grad(gc.sum(y), x)])(xv)
    np.testing.assert_allclose(yv, np.sin(xv) * xv)
    np.testing.assert_allclose(gv, np.cos(xv) * xv + np.sin(xv))


def test_clone_replace_substitutes_and_reinfers():
    x = gc.placeholder("x", (None, 3))
    y = gc.placeholder("y", (4, 3))
    (out,) = clone_replace([gc.exp(x).sum(axis=0)], {x: y})
    assert out.shape == (3,)
    assert x not in {v for n in toposort([out]) for v in n.inputs}


def test_graph_prints_readably():
    x = gc.placeholder("x", (None, 4))
    W = gc.shared(np.zeros((4, 2), "float32"), name="W")
    text = str(Graph([x], [gc.relu(x @ W)]))
    assert "graph(x: float32[?,4])" in text
    assert "matmul(x, W)" in text and "relu(%0)" in text and "float32[?,2]" in text


def test_apply_rejects_non_vars():
    with pytest.raises(TypeError, match="inputs must be Vars"):
        apply(gc.ops.Matmul(), [np.zeros((2, 2)), np.zeros((2, 2))])


def test_tensor_type():
    t = TensorType("f4", [None, 3])
    assert (t.dtype, t.shape, t.ndim, str(t)) == ("float32", (None, 3), 2, "float32[?,3]")
    with pytest.raises(gc.ShapeError):
        TensorType("float32", (-1,))
    with pytest.raises(gc.DTypeError):
        TensorType("complex64", (2,))
