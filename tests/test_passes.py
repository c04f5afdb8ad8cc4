"""The optimisation passes: soundness on random graphs, each rule firing, stability, type safety.

Expected values come from NumPy (or by hand), never from graphc. The random-graph tests build
each expression twice: as a graphc graph and, step by step, as the NumPy value it must compute;
the unoptimised function is checked against NumPy, and every single stage, and the whole
pipeline, against the unoptimised function.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import graphc as gc
from graphc.core import Graph, toposort
from graphc.ops import REGISTRY, BroadcastLike, BroadcastTo, Reshape, ReshapeLike
from graphc.passes import STAGE_NAMES, cse, dce, optimize, simplify

from .conftest import HypothesisDraw

F64 = "float64"
MAX_SIZE = 256  # largest number of elements an intermediate of a random graph may have


# -- helpers -----------------------------------------------------------------------------------


def only(*stages: str) -> tuple[str, ...]:
    """The exclude list that leaves exactly `stages` enabled."""
    return tuple(s for s in STAGE_NAMES if s not in stages)


NO_PASSES = STAGE_NAMES
#: (label, exclude_passes): every stage alone, then the full pipeline
CONFIGS = [(name, only(name)) for name in STAGE_NAMES] + [("pipeline", ())]


def op_names(f) -> list[str]:
    return [n.op.name for n in f.graph.nodes]


def assert_close(actual, expected, rtol=1e-10, err_msg=""):
    """Equal shapes and dtypes, values within rtol (plus a tiny absolute slack scaled by the
    largest magnitude, for results that cancel to ~0), NaNs at the same positions."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{err_msg}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{err_msg}: dtype {actual.dtype} != {expected.dtype}"
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * 1e-2 * scale, equal_nan=True,
                               err_msg=err_msg)


def np_sigmoid(a):
    return np.exp(-np.logaddexp(0.0, -a))


def np_log_softmax(a, axis=-1):
    m = np.max(a, axis=axis, keepdims=True)
    return a - m - np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True))


def np_softmax(a, axis=-1):
    return np.exp(np_log_softmax(a, axis))


def np_one_hot(t, depth):
    return (np.asarray(t)[..., None] == np.arange(depth)).astype(F64)


# -- random graphs -----------------------------------------------------------------------------


def _compatible(u, v) -> bool:
    """Whether entries u, v (Var, value) combine elementwise under graphc's rules: only a
    statically-1 dimension broadcasts; a None dimension must match at call time."""
    (su, cu), (sv, cv) = (u[0].shape, u[1].shape), (v[0].shape, v[1].shape)
    for k in range(1, min(len(su), len(sv)) + 1):
        if su[-k] == 1 or sv[-k] == 1:
            continue
        if cu[-k] != cv[-k]:
            return False
    return True


class RandomGraph:
    """A random float64 expression DAG over 1-3 placeholders, with the NumPy value of every
    intermediate. Entries of `pool` are ``(Var, value)``; values are kept moderate (|v| <= 64)
    by exact power-of-two rescaling, so exp/log/divide stay far from overflow and poles."""

    PLAIN = ["binary", "unary", "reduce", "binary", "transpose", "reshape", "getitem", "matmul", "softmax",
             "unary"]
    PATTERNS = ["p_identity", "p_power", "p_transpose2", "p_reshape2", "p_log_softmax", "p_log_sigmoid",
                "p_log1p", "p_log1m_sigmoid", "p_log_exp", "p_cross_entropy", "p_stop_gradient", "p_fold",
                "p_cse", "p_squeeze", "p_cast", "p_noop_shape", "p_identity"]

    UNARY = {
        "negative": (gc.negative, np.negative),
        "exp": (lambda x: gc.exp(gc.tanh(x) * 3.0), lambda a: np.exp(np.tanh(a) * 3.0)),
        "log": (lambda x: gc.log(gc.square(x) + 0.5), lambda a: np.log(np.square(a) + 0.5)),
        "tanh": (gc.tanh, np.tanh),
        "sigmoid": (gc.sigmoid, np_sigmoid),
        "softplus": (gc.softplus, lambda a: np.logaddexp(0.0, a)),
        "relu": (gc.relu, lambda a: np.maximum(a, 0.0)),
        "square": (gc.square, np.square),
    }
    BINARY = {
        "add": (gc.add, np.add),
        "subtract": (gc.subtract, np.subtract),
        "multiply": (gc.multiply, np.multiply),
        "maximum": (gc.maximum, np.maximum),
        "divide": (lambda x, y: x / (gc.square(y) + 0.5), lambda a, b: a / (np.square(b) + 0.5)),
        "divide_softplus": (lambda x, y: gc.divide(x, gc.softplus(y) + 0.25),
                            lambda a, b: a / (np.logaddexp(0.0, b) + 0.25)),
        "where": (lambda x, y: gc.where(x > 0.25, x, y), lambda a, b: np.where(a > 0.25, a, b)),
    }

    def __init__(self, data):
        self.data = data
        self.d = HypothesisDraw(data)
        self.rng = self.d.rng
        base = self.d.shape(1, 3, min_side=2, max_side=4)
        symbolic = self.d.boolean()  # declare some dimensions None (bound at call time)
        self.inputs, self.args, self.pool = [], [], []
        for i in range(self.d.integers(1, 3)):
            if self.d.integers(0, 5) == 0:
                s = ()
            else:  # a suffix of the base shape, some dimensions 1: all inputs broadcast together
                s = tuple(1 if self.d.integers(0, 3) == 0 else k for k in base[self.d.integers(0, len(base) - 1):])
            static = tuple(None if symbolic and k != 1 and self.d.boolean() else k for k in s)
            p = gc.placeholder(f"x{i}", static, F64)
            a = self.d.array(s)
            self.inputs.append(p)
            self.args.append(a)
            self.pool.append((p, a))
        self.float_inputs = list(self.inputs)
        self.n_placeholders = len(self.pool)
        self.has_labels = False
        self.trace: list[str] = []

    # drawing helpers
    def pick(self, pool=None):
        pool = self.pool if pool is None else pool
        return pool[len(pool) - 1 - self.d.integers(0, len(pool) - 1)]  # shrinks to the newest

    def sub_shape(self, shape) -> tuple:
        """A shape that broadcasts to `shape` without changing it."""
        s = list(shape[self.d.integers(0, len(shape)):])
        return tuple(1 if self.d.boolean() else k for k in s)

    def super_shape(self, shape) -> tuple | None:
        """`shape` with a new leading axis (so broadcasting against it changes the type)."""
        lead = self.d.integers(2, 3)
        return (lead, *shape) if lead * int(np.prod(shape)) <= MAX_SIZE else None

    def const(self, shape, lo=-2.0, hi=2.0):
        a = self.rng.uniform(lo, hi, size=shape)
        return gc.constant(a), a

    def partner(self, v):
        cands = [e for e in self.pool
                 if _compatible(e, v) and int(np.prod(np.broadcast_shapes(e[1].shape, v[1].shape))) <= MAX_SIZE]
        if not cands or self.d.integers(0, 3) == 0:
            return self.const(self.sub_shape(v[1].shape))
        return self.pick(cands)

    def reshape_target(self, shape) -> tuple:
        n = int(np.prod(shape))
        divisors = [k for k in range(2, n) if n % k == 0]
        options = [(n,), tuple(reversed(shape)), (1, *shape), (*shape, 1)]
        if divisors:
            k = self.d.choice(divisors)
            options.append((k, n // k))
        target = list(self.d.choice(options))
        if target and self.d.boolean():
            target[self.d.integers(0, len(target) - 1)] = -1
        return tuple(target)

    def tame(self, e):
        var, a = e
        m = float(np.max(np.abs(a))) if a.size else 0.0
        if m > 64.0:
            scale = 2.0 ** -int(np.ceil(np.log2(m / 8.0)))  # exact: a power of two
            return var * scale, a * scale
        return e

    def build(self, max_steps=10):
        for _ in range(self.d.integers(3, max_steps)):
            for _attempt in range(3):  # some ops need rank >= 1 or 2; try another op then
                kind = self.d.choice(self.PATTERNS if self.d.boolean() else self.PLAIN)
                v = self.pick()
                out = getattr(self, "_" + kind)(v)
                if out is not None:
                    break
            else:
                kind = "unary"
                out = self._unary(v)
            self.trace.append(kind)
            self.pool.append(self.tame(out))
        # the outputs: every result nothing else uses (so no step is dead code)
        built = self.pool[self.n_placeholders:]
        used = {id(v) for n in toposort([v for v, _ in built]) for v in n.inputs}
        return [e for e in built if id(e[0]) not in used]

    # plain ops
    def _unary(self, v):
        g, n = self.UNARY[self.d.choice(sorted(self.UNARY))]
        return g(v[0]), n(v[1])

    def _binary(self, v):
        g, n = self.BINARY[self.d.choice(sorted(self.BINARY))]
        u = self.partner(v)
        x, y = (v, u) if self.d.boolean() else (u, v)
        return g(x[0], y[0]), n(x[1], y[1])

    def _reduce(self, v):
        var, a = v
        kind = self.d.choice(["sum", "mean", "max", "min"])
        form = self.d.integers(0, 4)
        if form == 0 or a.ndim == 0:
            axis = None
        elif form <= 2:
            axis = self.d.integers(-a.ndim, a.ndim - 1)
        else:
            axis = tuple(k for k in range(a.ndim) if self.d.boolean()) or (a.ndim - 1,)
        keep = self.d.boolean()
        return getattr(gc, kind)(var, axis=axis, keepdims=keep), getattr(np, kind)(a, axis=axis, keepdims=keep)

    def _transpose(self, v):
        var, a = v
        if a.ndim < 2:
            return None
        perm = tuple(self.data.draw(st.permutations(range(a.ndim)), label="perm"))
        return gc.transpose(var, perm), np.transpose(a, perm)

    def _reshape(self, v):
        var, a = v
        target = self.reshape_target(a.shape)
        return gc.reshape(var, target), a.reshape(target)

    def _getitem(self, v):
        var, a = v
        if a.ndim == 0:
            return None
        idx: list = []
        for k in a.shape:
            c = self.d.integers(0, 3)
            if c == 0:
                idx.append(slice(None))
            elif c == 1:
                start = self.d.integers(0, k - 1)
                idx.append(slice(start, self.d.integers(start + 1, k)))
            elif c == 2:
                idx.append(slice(None, None, self.d.choice([-1, 2, -2])))
            else:
                idx.append(self.d.integers(-k, k - 1))
        if self.d.boolean():
            idx.insert(self.d.integers(0, len(idx)), None)
        return var[tuple(idx)], a[tuple(idx)]

    def _matmul(self, v):
        var, a = v
        if a.ndim == 0:
            return None
        form = self.d.integers(0, 2)
        if form == 0 and a.ndim >= 2:
            perm = (*range(a.ndim - 2), a.ndim - 1, a.ndim - 2)
            return gc.matmul(var, gc.transpose(var, perm)), np.matmul(a, np.swapaxes(a, -1, -2))
        if form == 0:
            return gc.matmul(var, var), np.matmul(a, a)
        if form == 1 or a.ndim == 1:
            w, wv = self.const((a.shape[-1], self.d.integers(1, 4)), -1, 1)
            return gc.matmul(var, w), np.matmul(a, wv)
        w, wv = self.const((self.d.integers(1, 4), a.shape[-2]), -1, 1)
        return gc.matmul(w, var), np.matmul(wv, a)

    def _softmax(self, v):
        var, a = v
        if a.ndim == 0:
            return None
        axis = self.d.integers(-a.ndim, a.ndim - 1)
        if self.d.boolean():
            return gc.softmax(var, axis), np_softmax(a, axis)
        return gc.log_softmax(var, axis), np_log_softmax(a, axis)

    # the patterns the rules target
    def _p_identity(self, v):
        var, a = v
        form = self.d.choice(["x*1", "1*x", "x/1", "x+0", "0+x", "x-0", "0-x", "--x", "x*ones", "ones*x",
                              "x+zeros", "zeros-x", "x*bcast1"])
        if form == "x*1":
            return var * 1.0, a
        if form == "1*x":
            return 1.0 * var, a
        if form == "x/1":
            return var / 1.0, a
        if form == "x+0":
            return var + 0.0, a
        if form == "0+x":
            return 0.0 + var, a
        if form == "x-0":
            return var - 0.0, a
        if form == "0-x":
            return 0.0 - var, -a
        if form == "--x":
            return gc.negative(gc.negative(var)), a
        if form == "x*bcast1":
            return var * gc.broadcast_to(gc.constant(1.0, F64), self.sub_shape(a.shape)), a
        # constant tensors: a sub-shape keeps the type (the rule may fire), a super-shape changes it
        shape = self.super_shape(a.shape) if self.d.boolean() else None
        shape = shape or self.sub_shape(a.shape)
        fill = 1.0 if form in ("x*ones", "ones*x") else 0.0
        c = np.full(shape, fill)
        if form == "x*ones":
            return var * c, a * c
        if form == "ones*x":
            return c * var, c * a
        if form == "x+zeros":
            return var + c, a + c
        return c - var, c - a

    def _p_power(self, v):
        var, a = v
        form = self.d.choice(["x**2", "x**1", "sqrt", "x**3", "x**full2"])
        if form == "x**2":
            return var ** 2.0, a ** 2
        if form == "x**1":
            return var ** 1.0, a
        if form == "x**3":
            return var ** 3.0, a ** 3
        if form == "sqrt":
            return (gc.square(var) + 0.25) ** 0.5, np.sqrt(a * a + 0.25)
        c = np.full(self.super_shape(a.shape) or self.sub_shape(a.shape), 2.0)
        return var ** c, a ** c

    def _p_transpose2(self, v):
        var, a = v
        if a.ndim < 3:  # in 2-D every two permutations commute; go to 3-D to tell p1.p2 from p2.p1
            shape = (1,) * (3 - a.ndim) + a.shape if self.d.boolean() else a.shape + (1,) * (3 - a.ndim)
            var, a = gc.reshape(var, shape), a.reshape(shape)
        p1 = tuple(self.data.draw(st.permutations(range(a.ndim)), label="perm1"))
        p2 = tuple(int(k) for k in np.argsort(p1)) if self.d.boolean() else \
            tuple(self.data.draw(st.permutations(range(a.ndim)), label="perm2"))
        return gc.transpose(gc.transpose(var, p1), p2), a.transpose(p1).transpose(p2)

    def _p_reshape2(self, v):
        var, a = v
        t1 = self.reshape_target(a.shape)
        b = a.reshape(t1)
        t2 = a.shape if self.d.boolean() else self.reshape_target(b.shape)
        return gc.reshape(gc.reshape(var, t1), t2), b.reshape(t2)

    def _p_log_softmax(self, v):
        var, a = v
        if a.ndim == 0:
            return None
        axis = self.d.integers(-a.ndim, a.ndim - 1)
        return gc.log(gc.softmax(var, axis)), np_log_softmax(a, axis)

    def _p_log_sigmoid(self, v):
        var, a = v
        return gc.log(gc.sigmoid(var)), -np.logaddexp(0.0, -a)

    def _p_log1p(self, v):
        var, a = v
        inner = self.d.choice(["square", "sigmoid", "tanh", "exp"])
        u, ua = {"square": (gc.square(var), a * a), "sigmoid": (gc.sigmoid(var), np_sigmoid(a)),
                 "tanh": (gc.tanh(var) * 0.9, np.tanh(a) * 0.9),
                 "exp": (gc.exp(gc.tanh(var)), np.exp(np.tanh(a)))}[inner]
        form = self.d.choice(["1+u", "u+1", "ones+u", "u+ones"])
        if form == "1+u":
            return gc.log(1.0 + u), np.log1p(ua)
        if form == "u+1":
            return gc.log(u + 1.0), np.log1p(ua)
        ones = np.ones(self.super_shape(a.shape) or self.sub_shape(a.shape))
        s = ones + u if form == "ones+u" else u + ones
        return gc.log(s), np.log1p(ua) + np.zeros_like(ones)

    def _p_log1m_sigmoid(self, v):
        var, a = v
        s = np.tanh(a) * 4.0
        if self.d.boolean():
            return gc.log(1.0 - gc.sigmoid(gc.tanh(var) * 4.0)), -np.logaddexp(0.0, s)
        ones = np.ones(self.super_shape(a.shape) or self.sub_shape(a.shape))
        return gc.log(ones - gc.sigmoid(gc.tanh(var) * 4.0)), -np.logaddexp(0.0, s) + np.zeros_like(ones)

    def _p_log_exp(self, v):
        var, a = v
        return gc.log(gc.exp(gc.clip(var, -30.0, 30.0))), np.clip(a, -30.0, 30.0)

    def _p_cross_entropy(self, v):
        var, a = v
        if a.ndim == 0:
            return None
        c = a.shape[-1]
        # sometimes with labels outside [0, c) (padding): one_hot gives them an all-zero row
        labels = self.rng.integers(-1, c + 1, size=a.shape[:-1]) if self.d.boolean() else \
            self.rng.integers(0, c, size=a.shape[:-1])
        if not self.has_labels and var.shape[-1] is not None and self.d.boolean():
            t = gc.placeholder("labels", var.shape[:-1], "int32")
            self.has_labels = True
            self.inputs.append(t)
            self.args.append(labels.astype("int32"))
        else:
            t = gc.constant(labels.astype("int32"))
        oh = gc.one_hot(t, c, self.d.choice([F64, "float32"]))
        ls = gc.log_softmax(var) if self.d.boolean() else gc.log(gc.softmax(var))
        prod = oh * ls if self.d.boolean() else ls * oh
        expected = np.sum(np_one_hot(labels, c) * np_log_softmax(a), axis=-1)
        out = gc.sum(prod, axis=-1)
        if self.d.boolean():
            return -gc.mean(out), -np.mean(expected)
        return out, expected

    def _p_stop_gradient(self, v):
        return gc.stop_gradient(v[0]), v[1]

    def _p_fold(self, v):
        var, a = v
        c1, c1v = self.const(self.sub_shape(a.shape))
        c2, c2v = self.const((3,))
        form = self.d.choice(["exp-sum", "square+tanh", "matmul"])
        if form == "exp-sum":
            k, kv = gc.exp(c1) * 0.5 - gc.sum(c2), np.exp(c1v) * 0.5 - np.sum(c2v)
        elif form == "square+tanh":
            k, kv = gc.square(c1) + gc.tanh(c1 * 2.0), np.square(c1v) + np.tanh(c1v * 2.0)
        else:
            k, kv = gc.matmul(c2, c2) + c1, np.matmul(c2v, c2v) + c1v
        return (var + k, a + kv) if self.d.boolean() else (var * k, a * kv)

    def _p_cse(self, v):
        var, a = v
        big = self.rng.uniform(-1.0, 1.0, size=600)  # 4800 bytes: not interned when built
        c1, c2 = gc.constant(big), gc.constant(big.copy())
        n = a.size
        t1, t2 = gc.reshape(c1[:n], a.shape), gc.reshape(c2[:n], a.shape)
        tv = big[:n].reshape(a.shape)
        return var * t1 + t2 + (gc.sum(c1) - gc.sum(c2)), a * tv + tv

    def _p_squeeze(self, v):
        var, a = v
        ones = [k for k, d in enumerate(var.shape) if d == 1]
        if ones and self.d.boolean():
            ax = self.d.choice(ones)
            return gc.expand_dims(gc.squeeze(var, ax), ax), a
        ax = self.d.integers(0, a.ndim)
        return gc.squeeze(gc.expand_dims(var, ax), ax), a

    def _p_cast(self, v):
        var, a = v  # a lossy round trip: must be kept
        return gc.cast(gc.cast(var, "float32"), F64), a.astype(np.float32).astype(F64)

    def _p_noop_shape(self, v):
        var, a = v
        form = self.d.choice(["broadcast_to", "broadcast_like", "reshape_like"])
        if form == "broadcast_to":
            return (BroadcastTo(var.shape)(var), a) if None not in var.shape else None
        if form == "broadcast_like":
            return BroadcastLike()(var, var), a
        return ReshapeLike()(var, var), a


def _describe(g: RandomGraph, exprs) -> str:
    return f"steps: {g.trace}\n{Graph(g.inputs, exprs)}"


@given(st.data())
def test_random_graphs_every_stage_preserves_values(data):
    g = RandomGraph(data)
    outs = g.build()
    exprs = [v for v, _ in outs]
    note(_describe(g, exprs))
    base = gc.function(g.inputs, exprs, exclude_passes=NO_PASSES)
    reference = base(*g.args)
    for k, ((_, want), got) in enumerate(zip(outs, reference)):
        assert_close(got, want, rtol=1e-8, err_msg=f"unoptimised output {k} vs NumPy")
    for label, exclude in CONFIGS:
        f = gc.function(g.inputs, exprs, exclude_passes=exclude)
        assert [o.type for o in f.graph.outputs] == [o.type for o in exprs], f"{label} changed an output type"
        for k, (got, want) in enumerate(zip(f(*g.args), reference)):
            assert_close(got, want, err_msg=f"{label}: output {k}")
    # the pipeline runs to a fixed point: optimising its result again changes nothing
    optimised = gc.function(g.inputs, exprs).graph
    again = optimize(optimised)
    assert all(a is b for a, b in zip(again.outputs, optimised.outputs)), f"not a fixed point:\n{optimised}"


@given(st.data())
def test_random_graphs_gradients_survive_the_pipeline(data):
    g = RandomGraph(data)
    outs = g.build()
    cost = None
    for var, val in outs:
        w = gc.constant(g.rng.uniform(-1.0, 1.0, size=val.shape))
        term = gc.sum(var * w)
        cost = term if cost is None else cost + term
    grads = gc.grad(cost, g.float_inputs)
    note(_describe(g, [cost, *grads]))
    want = gc.function(g.inputs, grads, exclude_passes=NO_PASSES)(*g.args)
    for label, exclude in CONFIGS:  # gradient graphs hold more patterns (0 - g, reshape_like, ...)
        f = gc.function(g.inputs, grads, exclude_passes=exclude)
        assert [o.type for o in f.graph.outputs] == [o.type for o in grads], f"{label} changed a type"
        got = f(*g.args)
        for x, a, b in zip(g.float_inputs, got, want):
            assert_close(a, b, err_msg=f"{label}: d cost / d {x.name}")
    # the gradient of the cost as written (grad without its stabilising rewrites) agrees too, at
    # these moderate values
    naive = gc.function(g.inputs, gc.grad(cost, g.float_inputs, stabilize=False), exclude_passes=NO_PASSES)
    for x, a, b in zip(g.float_inputs, naive(*g.args), want):
        assert_close(a, b, rtol=1e-7, err_msg=f"naive d cost / d {x.name}")


@pytest.mark.parametrize("name", sorted(REGISTRY))
@given(data=st.data())
def test_registered_op_survives_every_stage(name, data):
    """Every registered op's sampled case (and its gradient) through each stage and the pipeline."""
    entry = REGISTRY[name]
    case = entry.sample(HypothesisDraw(data))
    vars_ = [gc.placeholder(f"a{i}", a.shape, a.dtype.name) for i, a in enumerate(case.args)]
    out = case.build(*vars_)
    exprs = [out]
    if entry.differentiable:
        wrt = case.wrt if case.wrt is not None else [i for i, a in enumerate(case.args) if a.dtype.kind == "f"]
        w = np.random.default_rng(1).uniform(0.5, 1.5, size=out.shape)  # placeholders are static here
        exprs += gc.grad(gc.sum(out * gc.constant(w.astype(out.dtype))), [vars_[i] for i in wrt])
    shared = Graph(vars_, exprs).shared  # random ops' call counters: reset before each run
    saved = [s.get_value() for s in shared]

    def run(exclude):
        for s, v in zip(shared, saved):
            s.set_value(v)
        f = gc.function(vars_, exprs, exclude_passes=exclude)
        assert [o.type for o in f.graph.outputs[:len(exprs)]] == [o.type for o in exprs]
        return f(*case.args)

    want = run(NO_PASSES)
    for label, exclude in CONFIGS:
        for k, (a, b) in enumerate(zip(run(exclude), want)):
            assert_close(a, b, err_msg=f"{name}, {label}: output {k}")


# -- simplify: each rule fires and keeps values -------------------------------------------------

_RNG = np.random.default_rng(20240601)
X34 = _RNG.uniform(-2.0, 2.0, size=(3, 4))
X234 = _RNG.uniform(-2.0, 2.0, size=(2, 3, 4))
X314 = _RNG.uniform(-2.0, 2.0, size=(3, 1, 4))

x34 = gc.placeholder("x", (3, 4), F64)
x234 = gc.placeholder("x", (2, 3, 4), F64)
x314 = gc.placeholder("x", (3, 1, 4), F64)

# (id, input, expression, nodes left after the simplify stage, expected value)
SIMPLIFY_CASES = [
    ("x*1", x34, x34 * 1.0, [], X34),
    ("1*x", x34, 1.0 * x34, [], X34),
    ("x*ones-row", x34, x34 * np.ones((1, 4)), [], X34),
    ("x*broadcast-ones", x34, x34 * gc.broadcast_to(gc.constant(1.0, F64), (3, 4)), [], X34),
    ("x/1", x34, x34 / 1.0, [], X34),
    ("x+0", x34, x34 + 0.0, [], X34),
    ("0+x", x34, 0.0 + x34, [], X34),
    ("x-0", x34, x34 - 0.0, [], X34),
    ("0-x", x34, 0.0 - x34, ["negative"], -X34),
    ("--x", x34, gc.negative(gc.negative(x34)), [], X34),
    ("x**1", x34, x34 ** 1.0, [], X34),
    ("x**2", x34, x34 ** 2.0, ["square"], X34 * X34),
    ("x**0.5", x34, gc.exp(x34) ** 0.5, ["exp", "sqrt"], np.sqrt(np.exp(X34))),
    ("x.T.T", x34, x34.T.T, [], X34),
    ("transpose-compose", x234, gc.transpose(gc.transpose(x234, (1, 2, 0)), (1, 2, 0)), ["transpose"],
     X234.transpose(1, 2, 0).transpose(1, 2, 0)),
    ("transpose-inverse", x234, gc.transpose(gc.transpose(x234, (1, 2, 0)), (2, 0, 1)), [], X234),
    ("reshape-roundtrip", x34, x34.reshape(12).reshape(3, 4), [], X34),
    ("reshape-collapse", x234, x234.reshape(6, 4).reshape(4, -1), ["reshape"], X234.reshape(4, 6)),
    ("reshape-same", x34, Reshape((3, 4))(x34), [], X34),
    ("squeeze-expand", x34, gc.squeeze(gc.expand_dims(x34, 1), 1), [], X34),
    ("expand-squeeze", x314, gc.expand_dims(gc.squeeze(x314, 1), 1), [], X314),
    ("stop_gradient", x34, gc.stop_gradient(x34) * 2.0, ["multiply"], X34 * 2.0),
    ("broadcast_to-same", x34, BroadcastTo((3, 4))(x34), [], X34),
    ("broadcast_like-same", x34, BroadcastLike()(x34, x34 + 1.0), [], X34),
    ("reshape_like-same", x34, ReshapeLike()(x34, x34 + 1.0), [], X34),
]


@pytest.mark.parametrize("x, expr, left, expected", [c[1:] for c in SIMPLIFY_CASES],
                         ids=[c[0] for c in SIMPLIFY_CASES])
@pytest.mark.parametrize("stage", ["simplify", "canonicalize"])
def test_simplify_rule_fires(stage, x, expr, left, expected):
    value = {id(x34): X34, id(x234): X234, id(x314): X314}[id(x)]
    before = gc.function([x], expr, exclude_passes=NO_PASSES)
    assert op_names(before), "the unoptimised graph must contain the pattern"
    f = gc.function([x], expr, exclude_passes=only(stage))
    assert op_names(f) == left
    assert_close(f(value), expected, rtol=1e-15)
    assert_close(before(value), expected, rtol=1e-15)


def test_transpose_compose_gives_the_composed_permutation():
    f = gc.function([x234], gc.transpose(gc.transpose(x234, (1, 2, 0)), (1, 2, 0)), exclude_passes=only("simplify"))
    (node,) = f.graph.nodes
    # y = x.transpose(1, 2, 0); z = y.transpose(1, 2, 0): z[i, j, k] = x[j, k, i] -> axes (2, 0, 1)
    assert node.op.perm == (2, 0, 1)


def test_stop_gradient_is_dropped_only_after_differentiation():
    x = gc.placeholder("x", (3,), F64)
    cost = gc.sum(gc.stop_gradient(x) * x)
    gx = gc.grad(cost, x)  # d/dx [sg(x) x] = sg(x) = x, not 2x
    xv = np.array([1.0, -2.0, 0.5])
    for label, exclude in CONFIGS:
        f = gc.function([x], [cost, gx], exclude_passes=exclude)
        c, g = f(xv)
        assert float(c) == pytest.approx(np.sum(xv * xv), rel=1e-15), label
        assert_close(g, xv, rtol=1e-15, err_msg=label)
    assert "stop_gradient" not in op_names(gc.function([x], [cost, gx]))


@pytest.mark.parametrize("src, mid", [("float32", "float64"), ("int32", "float64"), ("int32", "int64")])
def test_lossless_cast_round_trip_is_removed(src, mid):
    x = gc.placeholder("x", (5,), src)
    f = gc.function([x], gc.cast(gc.cast(x, mid), src), exclude_passes=only("simplify"))
    assert op_names(f) == []
    xv = (np.array([-3.0, -1.0, 0.0, 2.0, 7.0]) / (1.0 if src.startswith("int") else 3.0)).astype(src)
    np.testing.assert_array_equal(f(xv), xv)


def test_lossy_cast_round_trip_is_kept():
    x = gc.placeholder("x", (3,), F64)
    f = gc.function([x], gc.cast(gc.cast(x, "float32"), F64))
    assert op_names(f).count("cast") == 2
    xv = np.array([0.1, 1.0 / 3.0, 1e-50])
    np.testing.assert_array_equal(f(xv), xv.astype(np.float32).astype(F64))
    assert f(xv)[0] != 0.1


def test_simplify_keeps_nan_and_inf_values():
    x = gc.placeholder("x", (6,), F64)
    expr = gc.negative(gc.negative(((x * 1.0 + 0.0) / 1.0 - 0.0) ** 1.0))
    xv = np.array([np.nan, np.inf, -np.inf, 0.0, -2.5, 3.0])
    for label, exclude in CONFIGS:
        assert_close(gc.function([x], expr, exclude_passes=exclude)(xv), xv, err_msg=label)
    assert op_names(gc.function([x], expr)) == []


# -- stabilize: each rule fires, values are the stable ones ------------------------------------


def test_log_softmax_rule_fires_and_is_stable():
    z = gc.placeholder("z", (2, 4), F64)
    zv = np.array([[1000.0, 0.0, -1000.0, 999.0], [0.5, -0.25, 3.0, 1.0]])
    f = gc.function([z], gc.log(gc.softmax(z)), exclude_passes=only("stabilize"))
    assert op_names(f) == ["log_softmax"]
    out = f(zv)
    assert np.isfinite(out).all()
    assert_close(out, np_log_softmax(zv), rtol=1e-14)
    # written naively the probabilities underflow: log(0) = -inf
    naive = gc.function([z], gc.log(gc.softmax(z)), exclude_passes=NO_PASSES)(zv)
    assert naive[0, 2] == -np.inf


def test_log_softmax_rule_keeps_the_axis():
    z = gc.placeholder("z", (3, 4), F64)
    f = gc.function([z], gc.log(gc.softmax(z, axis=0)), exclude_passes=only("stabilize"))
    (node,) = f.graph.nodes
    assert node.op.name == "log_softmax" and node.op.axis == 0
    assert_close(f(X34 * 500.0), np_log_softmax(X34 * 500.0, axis=0), rtol=1e-13)


def test_log_sigmoid_rule_fires_and_is_stable():
    x = gc.placeholder("x", (6,), F64)
    xv = np.array([-800.0, -30.0, -1.0, 0.0, 30.0, 800.0])
    f = gc.function([x], gc.log(gc.sigmoid(x)), exclude_passes=only("stabilize"))
    assert "sigmoid" not in op_names(f) and "log" not in op_names(f) and "softplus" in op_names(f)
    out = f(xv)
    assert np.isfinite(out).all()
    # log(sigmoid(x)) = -log(1 + exp(-x)), by hand: -800 for x = -800, -log 2 at 0
    assert out[0] == pytest.approx(-800.0, rel=1e-15)
    assert out[3] == pytest.approx(-np.log(2.0), rel=1e-15)
    assert_close(out, -np.logaddexp(0.0, -xv), rtol=1e-14)


def test_log_one_minus_sigmoid_rule_fires_and_is_stable():
    x = gc.placeholder("x", (5,), F64)
    xv = np.array([-800.0, -2.0, 0.0, 40.0, 800.0])
    f = gc.function([x], gc.log(1.0 - gc.sigmoid(x)), exclude_passes=only("stabilize"))
    assert op_names(f) == ["softplus", "negative"]
    out = f(xv)
    assert np.isfinite(out).all()
    assert_close(out, -np.logaddexp(0.0, xv), rtol=1e-14)
    assert out[-1] == pytest.approx(-800.0, rel=1e-15)


@pytest.mark.parametrize("form", ["1+x", "x+1"])
def test_log_one_plus_rule_fires_and_is_precise(form):
    x = gc.placeholder("x", (4,), F64)
    expr = gc.log(1.0 + x) if form == "1+x" else gc.log(x + 1.0)
    f = gc.function([x], expr, exclude_passes=only("stabilize"))
    assert op_names(f) == ["log1p"]
    xv = np.array([1e-10, -1e-12, 0.5, 3.0])
    out = f(xv)
    # log(1 + e) = e - e^2/2 + ...: 1e-10 - 5e-21 to full precision
    assert out[0] == pytest.approx(1e-10 - 5e-21, rel=1e-15)
    assert_close(out, np.log1p(xv), rtol=1e-15)
    naive = gc.function([x], expr, exclude_passes=NO_PASSES)(xv)[0]  # 1 + 1e-10 is rounded first
    assert abs(naive - 1e-10) > 1e-18


def test_log_exp_rule_fires():
    x = gc.placeholder("x", (4,), F64)
    f = gc.function([x], gc.log(gc.exp(x)) * 2.0, exclude_passes=only("stabilize"))
    assert op_names(f) == ["multiply"]
    xv = np.array([1000.0, -1000.0, 1e-300, 0.5])
    np.testing.assert_array_equal(f(xv), xv * 2.0)


@pytest.mark.parametrize("order", ["onehot*ls", "ls*onehot"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_rule_fires(order, dtype):
    z = gc.placeholder("z", (5, 4), dtype)
    t = gc.placeholder("t", (5,), "int32")
    oh, ls = gc.one_hot(t, 4, dtype), gc.log_softmax(z)
    expr = gc.sum(oh * ls if order == "onehot*ls" else ls * oh, axis=-1)
    f = gc.function([z, t], expr, exclude_passes=only("stabilize"))
    assert op_names(f) == ["softmax_cross_entropy", "negative"]
    zv = _RNG.uniform(-3, 3, size=(5, 4)).astype(dtype)
    tv = np.array([0, 3, 1, 1, 2], "int32")
    expected = np_log_softmax(zv.astype(F64))[np.arange(5), tv]
    assert_close(f(zv, tv), expected.astype(dtype), rtol=1e-14 if dtype == F64 else 1e-6)


def test_cross_entropy_rule_chains_after_log_softmax_rule():
    z = gc.placeholder("z", (None, 3), "float32")
    t = gc.placeholder("t", (None,), "int32")
    f = gc.function([z, t], gc.sum(gc.one_hot(t, 3) * gc.log(gc.softmax(z)), axis=1),
                    exclude_passes=only("stabilize"))
    assert op_names(f) == ["softmax_cross_entropy", "negative"]
    zv = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]], "float32")
    tv = np.array([2, 1], "int32")
    expected = np_log_softmax(zv.astype(F64))[np.arange(2), tv]
    assert_close(f(zv, tv), expected.astype("float32"), rtol=1e-6)


@pytest.mark.parametrize("case", ["keepdims", "first-axis", "other-axis-log-softmax"])
def test_cross_entropy_rule_does_not_fire_on_other_reductions(case):
    z = gc.placeholder("z", (4, 4), F64)
    t = gc.placeholder("t", (4,), "int32")
    oh = gc.one_hot(t, 4, F64)
    zv = _RNG.uniform(-3, 3, size=(4, 4))
    tv = np.array([0, 3, 1, 2], "int32")
    if case == "keepdims":
        expr, want = gc.sum(oh * gc.log_softmax(z), axis=1, keepdims=True), \
            np.sum(np_one_hot(tv, 4) * np_log_softmax(zv), axis=1, keepdims=True)
    elif case == "first-axis":
        expr, want = gc.sum(oh * gc.log_softmax(z), axis=0), np.sum(np_one_hot(tv, 4) * np_log_softmax(zv), axis=0)
    else:
        expr, want = gc.sum(oh * gc.log_softmax(z, axis=0), axis=1), \
            np.sum(np_one_hot(tv, 4) * np_log_softmax(zv, axis=0), axis=1)
    f = gc.function([z, t], expr)
    assert "softmax_cross_entropy" not in op_names(f)
    assert_close(f(zv, tv), want, rtol=1e-13)


def test_cross_entropy_rewrite_keeps_one_hot_semantics_of_out_of_range_labels():
    # one_hot gives an all-zero row for a label outside [0, depth) (padding labels such as -1),
    # so the row's sum(one_hot * log_softmax) is 0. The rewrite must not change that value.
    z = gc.placeholder("z", (3, 4), F64)
    t = gc.placeholder("t", (3,), "int32")
    expr = gc.sum(gc.one_hot(t, 4, F64) * gc.log_softmax(z), axis=-1)
    zv = _RNG.uniform(-3, 3, size=(3, 4))
    tv = np.array([1, -1, 3], "int32")
    want = np.sum(np_one_hot(tv, 4) * np_log_softmax(zv), axis=-1)
    assert want[1] == 0.0
    assert_close(gc.function([z, t], expr, exclude_passes=NO_PASSES)(zv, tv), want, rtol=1e-14)
    f = gc.function([z, t], expr)
    assert "softmax_cross_entropy" in op_names(f)
    assert_close(f(zv, tv), want, rtol=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_gradient_of_out_of_range_labels_is_zero(dtype):
    n, c = 4, 3
    z = gc.placeholder("z", (n, c), dtype)
    t = gc.placeholder("t", (n,), "int32")
    loss = -gc.mean(gc.sum(gc.one_hot(t, c, dtype) * gc.log(gc.softmax(z)), axis=-1))
    gz = gc.grad(loss, z)
    zv = _RNG.uniform(-3, 3, size=(n, c)).astype(dtype)
    tv = np.array([0, -1, 2, 3], "int32")  # rows 1 and 3 are padding
    hot = np_one_hot(tv, c)
    p = np_softmax(zv.astype(F64))
    want_grad = (p * hot.sum(-1, keepdims=True) - hot) / n  # 0 on padding rows, by hand
    want_loss = -np.mean(np.sum(hot * np_log_softmax(zv.astype(F64)), -1))
    rtol = 1e-6 if dtype == "float32" else 1e-13
    for label, exclude in [("none", NO_PASSES), ("pipeline", ())]:
        loss_v, g_v = gc.function([z, t], [loss, gz], exclude_passes=exclude)(zv, tv)
        assert_close(g_v, want_grad.astype(dtype), rtol=rtol, err_msg=label)
        assert_close(loss_v, np.asarray(want_loss, dtype), rtol=rtol, err_msg=label)
        assert (g_v[[1, 3]] == 0).all()


def test_naive_cross_entropy_gradient_is_finite_at_large_logits():
    n, c = 4, 5
    z = gc.placeholder("z", (n, c), F64)
    t = gc.placeholder("t", (n,), "int32")
    loss = -(gc.one_hot(t, c) * gc.log(gc.softmax(z))).sum(axis=1).mean()
    gz = gc.grad(loss, z)
    f = gc.function([z, t], [loss, gz])
    zv = np.array([[1000.0, 0.0, -1000.0, 5.0, 2.0],
                   [-500.0, 700.0, 0.0, 1.0, 699.0],
                   [0.1, 0.2, 0.3, 0.4, 0.5],
                   [800.0, -800.0, 800.0, 0.0, 1.0]])
    tv = np.array([2, 1, 4, 0], "int32")
    loss_v, g_v = f(zv, tv)
    assert np.isfinite(loss_v) and np.isfinite(g_v).all()
    expected_grad = (np_softmax(zv) - np_one_hot(tv, c)) / n
    expected_loss = -np.mean(np_log_softmax(zv)[np.arange(n), tv])
    assert_close(g_v, expected_grad, rtol=1e-12)
    assert loss_v == pytest.approx(expected_loss, rel=1e-14)
    # row 0's label has logit 1000 below the max: its loss is 2000 (by hand), not inf
    assert np_log_softmax(zv)[0, 2] == pytest.approx(-2000.0)


def test_naive_cross_entropy_gradient_float32():
    z = gc.placeholder("z", (None, 3), "float32")
    t = gc.placeholder("t", (None,), "int32")
    loss = -(gc.one_hot(t, 3) * gc.log(gc.softmax(z))).sum(axis=1).mean()
    f = gc.function([z, t], [loss, gc.grad(loss, z)])
    zv = np.array([[100.0, -100.0, 0.0], [0.0, 0.5, 90.0]], "float32")
    tv = np.array([1, 0], "int32")
    loss_v, g_v = f(zv, tv)
    assert np.isfinite(loss_v) and np.isfinite(g_v).all()
    z64 = zv.astype(F64)
    assert_close(g_v, ((np_softmax(z64) - np_one_hot(tv, 3)) / 2).astype("float32"), rtol=1e-6)
    assert float(loss_v) == pytest.approx(-np.mean(np_log_softmax(z64)[[0, 1], tv]), rel=1e-6)


# -- fold / cse / dce --------------------------------------------------------------------------


def test_fold_replaces_constant_subexpressions():
    x = gc.placeholder("x", (3,), F64)
    a = np.array([0.5, -1.0, 2.0])
    m = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    k = gc.exp(gc.constant(a)) * 2.0 + gc.sum(gc.matmul(gc.constant(m).T, gc.constant(m)))
    expr = x * k
    before = gc.function([x], expr, exclude_passes=NO_PASSES)
    assert {"exp", "matmul", "sum"} <= set(op_names(before))
    f = gc.function([x], expr, exclude_passes=only("fold"))
    assert op_names(f) == ["multiply"]
    (node,) = f.graph.nodes
    kv = np.exp(a) * 2.0 + np.sum(m.T @ m)
    folded = [v for v in node.inputs if v is not x]
    assert len(folded) == 1
    assert_close(folded[0].value, kv, rtol=1e-15)
    xv = np.array([1.0, -2.0, 0.25])
    assert_close(f(xv), xv * kv, rtol=1e-15)
    assert_close(before(xv), xv * kv, rtol=1e-15)


def test_fold_leaves_random_draws_to_run_time():
    u = gc.random.uniform((4,), seed=3, dtype=F64) * 2.0
    x = gc.placeholder("x", (4,), F64)
    f = gc.function([x], x + u)
    assert "random_uniform" in op_names(f)
    xv = np.zeros(4)
    first, second = f(xv), f(xv)
    assert not np.array_equal(first, second)  # a folded draw would repeat
    assert ((first >= 0.0) & (first < 2.0)).all()


def test_fold_leaves_big_broadcasts_to_run_time():
    x = gc.placeholder("x", (300, 300), F64)
    big = gc.broadcast_to(gc.constant(2.0, F64), (300, 300))  # 720 kB if folded
    f = gc.function([x], x * big + 1.0, exclude_passes=only("fold"))
    assert f.graph.count("broadcast_to") == 1
    xv = np.full((300, 300), 0.5)
    assert_close(f(xv), xv * 2.0 + 1.0, rtol=1e-15)


def test_cse_merges_equal_large_constants():
    x = gc.placeholder("x", (600,), F64)
    big = _RNG.uniform(-1, 1, size=600)
    c1, c2 = gc.constant(big), gc.constant(big.copy())
    assert c1 is not c2  # over the interning limit: built as two Vars
    expr = (x + c1) * (x + c2)
    before = gc.function([x], expr, exclude_passes=NO_PASSES)
    assert before.graph.count("add") == 2
    f = gc.function([x], expr, exclude_passes=only("cse"))
    assert f.graph.count("add") == 1
    mul = f.graph.nodes[-1]
    assert mul.op.name == "multiply" and mul.inputs[0] is mul.inputs[1]
    xv = _RNG.uniform(-1, 1, size=600)
    assert_close(f(xv), (xv + big) ** 2, rtol=1e-15)
    assert_close(before(xv), (xv + big) ** 2, rtol=1e-15)


def test_cse_keeps_different_constants_apart():
    x = gc.placeholder("x", (600,), F64)
    big = _RNG.uniform(-1, 1, size=600)
    other = big.copy()
    other[-1] += 1.0
    f = gc.function([x], (x + gc.constant(big)) * (x + gc.constant(other)), exclude_passes=only("cse"))
    assert f.graph.count("add") == 2
    xv = _RNG.uniform(-1, 1, size=600)
    assert_close(f(xv), (xv + big) * (xv + other), rtol=1e-15)


def test_dce_keeps_only_live_nodes_and_all_inputs():
    x = gc.placeholder("x", (3,), F64)
    unused = gc.placeholder("unused", (3,), F64)
    dead = gc.exp(x)
    expr = gc.tanh(x * 1.0) + 0.0
    g = simplify.run(Graph([x, unused], [expr]))
    out = dce.run(g)
    assert out.inputs == (x, unused)
    assert [n.op.name for n in out.nodes] == ["tanh"]
    assert dead.owner not in out.nodes
    assert expr.owner not in out.nodes  # orphaned by the rewrite
    # every node's output is used by a later node or is an output
    used = {id(v) for n in out.nodes for v in n.inputs} | {id(v) for v in out.outputs}
    assert all(any(id(o) in used for o in n.outputs) for n in out.nodes)
    f = gc.function([x, unused], expr, exclude_passes=only("dce"))
    assert [n.op.name for n in f.graph.nodes] == [n.op.name for n in toposort([expr])]
    xv = np.array([-1.0, 0.0, 2.0])
    assert_close(f(xv, xv), np.tanh(xv), rtol=1e-15)
    assert_close(gc.function([x, unused], expr)(xv, xv), np.tanh(xv), rtol=1e-15)


def test_cse_run_directly_merges_nodes():
    x = gc.placeholder("x", (600,), F64)
    big = _RNG.uniform(-1, 1, size=600)
    a, b = gc.exp(x * gc.constant(big)), gc.exp(x * gc.constant(big.copy()))
    g = cse.run(Graph([x], [a, b]))
    assert g.outputs[0] is g.outputs[1]
    assert [n.op.name for n in g.nodes] == ["multiply", "exp"]


def test_output_rewritten_to_an_input_is_returned_as_a_copy():
    x = gc.placeholder("x", (3,), F64)
    f = gc.function([x], [x * 1.0, x + 0.0])
    assert f.graph.outputs[0] is x and f.graph.outputs[1] is x
    xv = np.array([1.0, 2.0, 3.0])
    a, b = f(xv)
    a[0] = 100.0
    assert xv[0] == 1.0 and b[0] == 1.0


def test_output_folded_to_a_constant_is_fresh_at_every_call():
    x = gc.placeholder("x", (2,), F64)
    f = gc.function([x], [gc.exp(gc.constant(np.array([0.0, 1.0]))), x])
    assert f.graph.nodes == []
    xv = np.zeros(2)
    first, _ = f(xv)
    np.testing.assert_array_equal(first, [1.0, np.e])
    first[0] = -5.0
    np.testing.assert_array_equal(f(xv)[0], [1.0, np.e])


def test_updates_are_optimised_with_the_outputs():
    w = gc.shared(np.array([1.0, -2.0, 0.5]), name="w")
    x = gc.placeholder("x", (3,), F64)
    loss = gc.sum(gc.square(w * x - 1.0))
    gw = gc.grad(loss, w)
    step = gc.constant(np.array(0.5)) * gc.constant(np.array(0.2))  # folds to 0.1
    f = gc.function([x], loss * 1.0, updates=[(w, (w - step * gw) / 1.0)])
    assert "divide" not in op_names(f)
    xv = np.array([2.0, 1.0, -1.0])
    w0 = np.array([1.0, -2.0, 0.5])
    want_loss = np.sum((w0 * xv - 1.0) ** 2)
    want_w = w0 - 0.1 * 2.0 * (w0 * xv - 1.0) * xv  # d/dw sum((w x - 1)^2) = 2 (w x - 1) x
    assert float(f(xv)) == pytest.approx(want_loss, rel=1e-15)  # computed from the old w
    assert_close(w.get_value(), want_w, rtol=1e-15)


# -- rules must not change the type ------------------------------------------------------------

V4 = np.array([0.5, -1.5, 2.0, 0.25])
x4 = gc.placeholder("x", (4,), F64)
TYPE_CASES = [
    ("x*ones", x4 * np.ones((3, 4)), np.broadcast_to(V4, (3, 4))),
    ("ones*x", np.ones((3, 4)) * x4, np.broadcast_to(V4, (3, 4))),
    ("x*broadcast-ones", x4 * gc.broadcast_to(gc.constant(1.0, F64), (2, 4)), np.broadcast_to(V4, (2, 4))),
    ("x/ones", x4 / np.ones((3, 1)), np.broadcast_to(V4, (3, 4))),
    ("x+zeros", x4 + np.zeros((2, 1, 4)), np.broadcast_to(V4, (2, 1, 4))),
    ("zeros+x", np.zeros((3, 4)) + x4, np.broadcast_to(V4, (3, 4))),
    ("x-zeros", x4 - np.zeros((3, 4)), np.broadcast_to(V4, (3, 4))),
    ("zeros-x", np.zeros((3, 4)) - x4, np.broadcast_to(-V4, (3, 4))),
    ("x**ones", x4 ** np.ones((3, 4)), np.broadcast_to(V4, (3, 4))),
    ("x**twos", x4 ** np.full((3, 4), 2.0), np.broadcast_to(V4 ** 2, (3, 4))),
    ("log(ones+x)", gc.log(np.ones((3, 4)) + gc.exp(x4)), np.broadcast_to(np.log1p(np.exp(V4)), (3, 4))),
    ("log(ones-sigmoid)", gc.log(np.ones((2, 4)) - gc.sigmoid(x4)),
     np.broadcast_to(-np.logaddexp(0.0, V4), (2, 4))),
    ("--(x*ones)", gc.negative(gc.negative(x4 * np.ones((3, 4)))), np.broadcast_to(V4, (3, 4))),
]


@pytest.mark.parametrize("expr, expected", [c[1:] for c in TYPE_CASES], ids=[c[0] for c in TYPE_CASES])
def test_rules_do_not_change_the_type(expr, expected):
    for label, exclude in CONFIGS:
        f = gc.function([x4], expr, exclude_passes=exclude)
        assert f.graph.outputs[0].type == expr.type, label
        assert_close(f(V4), np.ascontiguousarray(expected), rtol=1e-14, err_msg=label)


def test_multiply_by_one_keeps_the_promoted_dtype():
    xi = gc.placeholder("xi", (4,), "int32")
    x32 = gc.placeholder("x32", (4,), "float32")
    for x, v in ((xi, np.array([1, -2, 3, 4], "int32")), (x32, np.array([0.1, 2, 3, 4], "float32"))):
        expr = x * np.ones(4)  # a float64 array promotes the product to float64
        f = gc.function([x], expr)
        assert f.graph.outputs[0].type == expr.type
        out = f(v)
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out, v.astype(F64))


def test_multiply_by_ones_with_a_call_time_dimension():
    x = gc.placeholder("x", (None, 4), F64)
    xv = np.arange(12.0).reshape(3, 4)
    fires = gc.function([x], x * np.ones((1, 4)))
    assert op_names(fires) == [] and fires.graph.outputs[0].type == x.type
    np.testing.assert_array_equal(fires(xv), xv)
    expr = x * np.ones((3, 4))  # static (3, 4): replacing it by x would lose the static size
    keeps = gc.function([x], expr)
    assert keeps.graph.outputs[0].type == expr.type
    np.testing.assert_array_equal(keeps(xv), xv)


def test_reshape_collapse_keeps_static_shape_with_call_time_dimensions():
    # x: (None, 4) bound to (1, 4). reshape to (4, 1) makes the shape static; reshape(4, -1) then
    # infers (4, 1). Collapsing the pair to reshape(x, (4, -1)) must not lose the static 1,
    # which lets the result broadcast against (4, 3).
    x = gc.placeholder("x", (None, 4), F64)
    r = gc.reshape(gc.reshape(x, (4, 1)), (4, -1))
    assert r.shape == (4, 1)
    z = np.arange(12.0).reshape(4, 3)
    expr = r + z
    xv = np.array([[1.0, 2.0, 3.0, 4.0]])
    want = xv.reshape(4, 1) + z
    np.testing.assert_array_equal(gc.function([x], expr, exclude_passes=NO_PASSES)(xv), want)
    f = gc.function([x], expr, exclude_passes=only("simplify"))
    assert f.graph.outputs[0].type == expr.type
    np.testing.assert_array_equal(f(xv), want)


# -- the pipeline's interface ------------------------------------------------------------------


def test_optimize_rejects_unknown_stage_names():
    x = gc.placeholder("x", (3,), F64)
    g = Graph([x], [x * 1.0])
    with pytest.raises(ValueError, match="bogus") as info:
        optimize(g, exclude=("fold", "bogus"))
    msg = str(info.value)
    assert "unknown" in msg
    assert all(name in msg for name in STAGE_NAMES)  # says what the valid names are
    with pytest.raises(ValueError, match="simplfy"):
        gc.function([x], x * 1.0, exclude_passes=["simplfy"])


def test_optimize_does_not_split_a_bare_stage_name_into_letters():
    # exclude="fold" (a str, not a tuple) is an easy slip; it must either mean ("fold",) or be
    # refused with a message about the argument, never "unknown pass(es) ['d', 'f', 'l', 'o']"
    x = gc.placeholder("x", (2,), F64)
    g = Graph([x], [x + gc.exp(gc.constant(np.array([0.0, 1.0])))])
    try:
        out = optimize(g, exclude="fold")
    except (TypeError, ValueError) as e:
        assert "'f'" not in str(e) and "'d'" not in str(e), str(e)
    else:
        assert "exp" in [n.op.name for n in out.nodes]  # fold was skipped, as asked


def test_optimize_accepts_every_stage_name():
    x = gc.placeholder("x", (3,), F64)
    g = Graph([x], [x * 1.0])
    assert optimize(g, exclude=STAGE_NAMES).outputs == g.outputs
    assert optimize(g).outputs == (x,)
    assert {"canonicalize", "stabilize", "fold", "simplify", "cse", "dce"} <= set(STAGE_NAMES)


def test_rules_rewrite_a_scan_step_graph_and_its_nested_scans():
    """The rewrite engine descends into inner graphs: log(softmax(.)) inside a scan's step (and
    inside a scan nested in that step) becomes the stable log_softmax, with the same values."""
    x = gc.placeholder("x", (4, 2, 3), "float64")

    def inner_step(r, acc):
        return acc + gc.log(gc.softmax(r * 1.0))

    def step(xt, h):
        inner = gc.scan(inner_step, sequences=xt, outputs_info=gc.constant(np.zeros(3)))
        return h + gc.log(gc.softmax(xt[0] + h)) + inner[-1]

    hs = gc.scan(step, sequences=x, outputs_info=gc.constant(np.zeros(3)))
    g = optimize(Graph([x], [hs]))

    def step_ops(graph_outputs, depth):
        """Op names inside the scans at nesting `depth` (1: the outer step graph)."""
        scans = [n for n in toposort(graph_outputs) if n.op.name == "scan"]
        if depth == 1:
            return {m.op.name for s in scans for m in toposort(s.op.inner_outputs())}
        return set().union(*(step_ops(s.op.inner_outputs(), depth - 1) for s in scans))

    for depth in (1, 2):
        names = step_ops(g.outputs, depth)
        assert "log_softmax" in names and "softmax" not in names, (depth, names)
    value = np.random.default_rng(0).normal(size=(4, 2, 3))
    got = gc.function([x], g.outputs[0], backend="ref")(value)
    want = gc.function([x], hs, backend="ref", exclude_passes=STAGE_NAMES)(value)
    np.testing.assert_allclose(got, want, rtol=1e-12)
