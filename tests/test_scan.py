"""gc.scan's contract on ref and C: forward against NumPy loops, BPTT against finite
differences, second order, nesting, go_backwards, call-time lengths, and each construction error.
"""

import numpy as np
import pytest

import graphc as gc
from tests.conftest import numeric_grad

RNG = np.random.default_rng(0)
# every test runs once on ref and once on C (the `backend` fixture sets the default backend)
pytestmark = pytest.mark.usefixtures("backend")


def ref(inputs, outputs):
    return gc.function(inputs, outputs)


def rnn_numpy(x, h0, W, U, b, backwards=False):
    h, hs = h0, []
    steps = x[::-1] if backwards else x
    for xt in steps:
        h = np.tanh(xt @ W + h @ U + b)
        hs.append(h)
    return np.stack(hs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rnn_forward_matches_numpy_loop(dtype):
    x = gc.placeholder("x", (None, None, 3), dtype)
    h0 = gc.placeholder("h0", (None, 4), dtype)
    W, U, b = (RNG.normal(size=s).astype(dtype) for s in [(3, 4), (4, 4), (4,)])
    Ws, Us = gc.shared(W, name="W"), gc.shared(U, name="U")
    hs = gc.scan(lambda xt, h, bb: gc.tanh(xt @ Ws + h @ Us + bb), sequences=x, outputs_info=h0,
                 non_sequences=gc.constant(b))
    f = ref([x, h0], hs)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for T, B in [(1, 2), (5, 3), (7, 1)]:  # one compilation, every length and batch size
        xv, hv = RNG.normal(size=(T, B, 3)).astype(dtype), RNG.normal(size=(B, 4)).astype(dtype)
        out = f(xv, hv)
        assert out.shape == (T, B, 4) and out.dtype == dtype
        np.testing.assert_allclose(out, rnn_numpy(xv, hv, W, U, b), rtol=tol, atol=tol)


def test_several_outputs_some_not_fed_back():
    x = gc.placeholder("x", (None, 2), "float64")
    s0 = gc.constant(np.zeros(2))

    def step(xt, s):
        s_new = s + xt
        return s_new, gc.sum(s_new * s_new)

    cum, norms = gc.scan(step, sequences=x, outputs_info=[s0, None])
    xv = RNG.normal(size=(4, 2))
    c, n = ref([x], [cum, norms])(xv)
    np.testing.assert_allclose(c, np.cumsum(xv, 0))
    np.testing.assert_allclose(n, (np.cumsum(xv, 0) ** 2).sum(1))
    assert norms.shape == (None,)


def test_n_steps_without_sequences_and_closures():
    a = gc.placeholder("a", (), "float64")
    start = gc.placeholder("start", (3,), "float64")
    scale = a * 2.0  # an outer expression captured by the closure
    powers = gc.scan(lambda p: p * scale, outputs_info=start, n_steps=4)
    out = ref([a, start], powers)(1.5, np.array([1.0, 2.0, -1.0]))
    want = np.array([[1.0, 2.0, -1.0]]) * (3.0 ** np.arange(1, 5))[:, None]
    np.testing.assert_allclose(out, want)
    assert powers.shape == (4, 3)


def test_n_steps_shorter_than_the_sequence():
    x = gc.placeholder("x", (None,), "float64")
    ys = gc.scan(lambda xt: xt * 10.0, sequences=x, n_steps=2)
    np.testing.assert_allclose(ref([x], ys)(np.array([1.0, 2.0, 3.0])), [10.0, 20.0])
    back = gc.scan(lambda xt: xt * 10.0, sequences=x, n_steps=2, go_backwards=True)
    np.testing.assert_allclose(ref([x], back)(np.array([1.0, 2.0, 3.0])), [30.0, 20.0])
    with pytest.raises(gc.ShapeError, match="n_steps=2"):
        ref([x], ys)(np.array([1.0]))


def test_go_backwards_follows_theano_order():
    x = gc.placeholder("x", (None, 2), "float64")
    h0 = gc.placeholder("h0", (2,), "float64")
    ys = gc.scan(lambda xt, h: h * 0.5 + xt, sequences=x, outputs_info=h0, go_backwards=True)
    xv, hv = RNG.normal(size=(5, 2)), RNG.normal(size=2)
    h, want = hv, []
    for t in range(4, -1, -1):  # output step k belongs to input step T-1-k
        h = h * 0.5 + xv[t]
        want.append(h)
    np.testing.assert_allclose(ref([x, h0], ys)(xv, hv), np.stack(want))


def _rnn_cost_graph(backwards=False, n_steps=None):
    x = gc.placeholder("x", (None, 2, 3), "float64")
    h0 = gc.placeholder("h0", (2, 4), "float64")
    W = gc.placeholder("W", (3, 4), "float64")
    U = gc.placeholder("U", (4, 4), "float64")
    b = gc.placeholder("b", (4,), "float64")
    # W and U are non_sequences, b is captured by the closure
    hs = gc.scan(lambda xt, h, w, u: gc.tanh(xt @ w + h @ u + b), sequences=x, outputs_info=h0,
                 non_sequences=[W, U], go_backwards=backwards, n_steps=n_steps)
    cost = gc.sum(hs * hs) + gc.sum(gc.sin(hs[-1]))
    return [x, h0, W, U, b], cost


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize("n_steps", [None, 3])
def test_bptt_matches_finite_differences(backwards, n_steps):
    inputs, cost = _rnn_cost_graph(backwards, n_steps)
    grads = gc.grad(cost, inputs)
    f_cost = ref(inputs, cost)
    f_grad = ref(inputs, grads)
    args = [RNG.normal(size=(5, 2, 3)), RNG.normal(size=(2, 4)), RNG.normal(size=(3, 4)),
            RNG.normal(size=(4, 4)) * 0.5, RNG.normal(size=4)]
    got = f_grad(*args)
    for i in range(len(args)):
        np.testing.assert_allclose(got[i], numeric_grad(f_cost, args, i), rtol=1e-6, atol=1e-7,
                                   err_msg=f"gradient of {inputs[i].name}")


def test_gradient_through_shared_variable_closure_and_update():
    W = gc.shared(RNG.normal(size=(3, 3)) * 0.5, name="W")
    x = gc.placeholder("x", (None, 3), "float64")
    hs = gc.scan(lambda xt, h: gc.tanh(xt + h @ W), sequences=x, outputs_info=gc.constant(np.zeros(3)))
    cost = gc.sum(hs[-1])
    gW = gc.grad(cost, W)
    xv = RNG.normal(size=(4, 3))
    w0 = W.get_value()

    def cost_at(w):
        h = np.zeros(3)
        for xt in xv:
            h = np.tanh(xt + h @ w)
        return h.sum()

    f = gc.function([x], cost, updates=[(W, W - 0.1 * gW)])
    f(xv)
    want = w0 - 0.1 * numeric_grad(lambda w: cost_at(w), [w0], 0)
    np.testing.assert_allclose(W.get_value(), want, rtol=1e-6, atol=1e-8)


def test_second_order_hessian_vector_product():
    inputs, cost = _rnn_cost_graph()
    W = inputs[2]
    v = gc.placeholder("v", (3, 4), "float64")
    gW = gc.grad(cost, W)
    hvp = gc.grad(gc.sum(gW * v), W)
    args = [RNG.normal(size=(4, 2, 3)), RNG.normal(size=(2, 4)), RNG.normal(size=(3, 4)),
            RNG.normal(size=(4, 4)) * 0.5, RNG.normal(size=4)]
    vv = RNG.normal(size=(3, 4))
    got = ref(inputs + [v], hvp)(*args, vv)
    f_g = ref(inputs, gW)
    eps = 1e-5
    plus = f_g(*args[:2], args[2] + eps * vv, *args[3:])
    minus = f_g(*args[:2], args[2] - eps * vv, *args[3:])
    np.testing.assert_allclose(got, (plus - minus) / (2 * eps), rtol=1e-5, atol=1e-6)


def test_nested_scans_forward_and_gradient():
    x = gc.placeholder("x", (None, None), "float64")  # (outer steps, inner steps)
    w = gc.placeholder("w", (), "float64")

    def outer(row, acc):
        inner = gc.scan(lambda e, s: s * w + e, sequences=row, outputs_info=gc.constant(0.0, "float64"))
        return acc + inner[-1]

    total = gc.scan(outer, sequences=x, outputs_info=gc.constant(0.0, "float64"))
    cost = total[-1] ** 2

    def cost_np(xv, wv):
        acc = 0.0
        for row in xv:
            s = 0.0
            for e in row:
                s = s * wv + e
            acc += s
        return acc ** 2

    xv, wv = RNG.normal(size=(3, 4)), np.array(0.7)
    f = ref([x, w], [cost, *gc.grad(cost, [x, w])])
    c, gx, gw = f(xv, wv)
    np.testing.assert_allclose(c, cost_np(xv, wv))
    np.testing.assert_allclose(gx, numeric_grad(cost_np, [xv, wv], 0), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gw, numeric_grad(cost_np, [xv, wv], 1), rtol=1e-6, atol=1e-8)


def test_length_one_and_call_time_length_mismatch():
    x = gc.placeholder("x", (None, 2), "float64")
    y = gc.placeholder("y", (None, 2), "float64")
    zs = gc.scan(lambda a, b: a * b, sequences=[x, y])
    f = ref([x, y], zs)
    np.testing.assert_allclose(f(np.ones((1, 2)), np.full((1, 2), 3.0)), [[3.0, 3.0]])
    with pytest.raises(gc.ShapeError, match="different lengths"):
        f(np.ones((3, 2)), np.ones((4, 2)))


def test_construction_errors():
    x = gc.placeholder("x", (None, 3))
    h0 = gc.placeholder("h0", (3,))
    with pytest.raises(gc.ShapeError, match="shape"):
        gc.scan(lambda xt, h: gc.sum(h), sequences=x, outputs_info=h0)
    with pytest.raises(gc.ShapeError, match="float64"):
        gc.scan(lambda xt, h: (h + xt).astype("float64"), sequences=x, outputs_info=h0)
    with pytest.raises(gc.ShapeError, match="2 output"):
        gc.scan(lambda xt, h: (h, h), sequences=x, outputs_info=h0)
    with pytest.raises(gc.ShapeError, match="n_steps"):
        gc.scan(lambda h: h, outputs_info=h0)
    with pytest.raises(gc.ShapeError, match="different lengths"):
        gc.scan(lambda a, b: a + b, sequences=[gc.placeholder("a", (3, 2)), gc.placeholder("b", (4, 2))])
    with pytest.raises(TypeError, match="callable"):
        gc.scan(3, sequences=x)
    with pytest.raises(TypeError, match="n_steps"):
        gc.scan(lambda h: h, outputs_info=h0, n_steps=-1)


def test_jacobian_and_hessian_against_closed_forms():
    x = gc.placeholder("x", (3,), "float64")
    A = RNG.normal(size=(2, 3))
    y = gc.tanh(gc.constant(A) @ x)
    J = gc.jacobian(y, x)
    assert J.shape == (2, 3)
    xv = RNG.normal(size=3)
    want_J = (1 - np.tanh(A @ xv) ** 2)[:, None] * A
    np.testing.assert_allclose(ref([x], J)(xv), want_J, rtol=1e-12)
    H = gc.hessian(gc.sum(gc.exp(x) * x[0]), x)
    e = np.exp(xv)
    want_H = np.diag(e * xv[0])  # f = x0 * sum(e^x); d2f/dx0^2 = (x0 + 2) e^x0
    want_H[0, :] += e
    want_H[:, 0] += e
    np.testing.assert_allclose(ref([x], H)(xv), want_H, rtol=1e-10)


def test_jacobian_of_a_matrix_wrt_weights():
    W = gc.placeholder("W", (2, 3), "float64")
    v = gc.constant(np.array([1.0, -2.0]))
    y = gc.sigmoid(v @ W)  # shape (3,)
    J = gc.jacobian(y, W)
    assert J.shape == (3, 2, 3)
    Wv = RNG.normal(size=(2, 3))
    got = ref([W], J)(Wv)
    s = 1 / (1 + np.exp(-(np.array([1.0, -2.0]) @ Wv)))
    want = np.zeros((3, 2, 3))
    for j in range(3):
        want[j, :, j] = s[j] * (1 - s[j]) * np.array([1.0, -2.0])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_vjp_contract():
    x = gc.placeholder("x", (2, 3), "float64")
    y1, y2 = gc.exp(x), gc.sum(x * x, axis=1)
    c1 = gc.placeholder("c1", (2, 3), "float64")
    c2 = gc.placeholder("c2", (2,), "float64")
    g = gc.vjp([y1, y2], x, [c1, c2])
    xv, c1v, c2v = RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3)), RNG.normal(size=2)
    np.testing.assert_allclose(ref([x, c1, c2], g)(xv, c1v, c2v), np.exp(xv) * c1v + 2 * xv * c2v[:, None])
    cost = gc.sum(gc.exp(x))
    (a,) = gc.vjp(cost, [x], gc.constant(1.0, "float64"))
    np.testing.assert_allclose(ref([x], a)(xv), ref([x], gc.grad(cost, x))(xv))
    with pytest.raises(gc.ShapeError, match="cotangents"):
        gc.vjp(y2, x, c1)
    with pytest.raises(gc.DTypeError, match="float32"):
        gc.vjp(y2, x, gc.placeholder("c", (2,), "float32"))
    with pytest.raises(gc.GradError, match="1 output"):
        gc.vjp(y2, x, [c2, c2])


def test_random_ops_draw_fresh_numbers_each_step_and_call():
    x = gc.placeholder("x", (None, 3), "float32")
    noisy = gc.scan(lambda xt: xt + gc.random.normal((3,), seed=5), sequences=x)
    f = ref([x], noisy)
    a = f(np.zeros((4, 3), "float32"))
    b = f(np.zeros((4, 3), "float32"))
    assert len({tuple(r) for r in a}) == 4  # a new draw at every step
    assert not np.array_equal(a, b)  # and at every call
    assert abs(float(np.concatenate([a, b]).std()) - 1.0) < 0.5


def test_random_draws_in_scan_are_identical_on_ref_and_c():
    x = gc.placeholder("x", (None, 2), "float64")
    ys = gc.scan(lambda xt, h: h * 0.5 + xt * gc.random.uniform((2,), seed=3, dtype="float64"),
                 sequences=x, outputs_info=gc.constant(np.zeros(2)))
    xv = RNG.normal(size=(6, 2))
    f_ref = gc.function([x], ys, backend="ref")
    f_c = gc.function([x], ys, backend="c")
    state = [(v, v.get_value()) for v in f_ref.graph.shared]
    want = [f_ref(xv), f_ref(xv)]
    for v, value in state:  # both functions draw from the same counters: rewind them
        v.set_value(value)
    got = [f_c(xv), f_c(xv)]
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert not np.array_equal(want[0], want[1])


def test_bptt_pushes_weight_gradients_out_of_the_backward_loop():
    x = gc.placeholder("x", (None, 2, 3))
    U = gc.shared(RNG.normal(size=(3, 3)).astype("float32"), name="U")
    hs = gc.scan(lambda xt, h: gc.tanh(xt + h @ U), sequences=x, outputs_info=gc.constant(np.zeros((2, 3), "f4")))
    gU = gc.grad(gc.sum(hs), U)
    back = [n for n in gc.core.toposort([gU]) if n.op.name == "scan" and n.op.go_backwards]
    assert len(back) == 1
    body_matmuls = [n for n in gc.core.toposort(back[0].op.body.outputs) if n.op.name == "matmul"]
    # the recomputed h @ U and dh = dz @ U^T stay; the dU accumulation leaves the loop
    assert len(body_matmuls) == 2
    outside = [n for n in gc.core.toposort([gU]) if n.op.name == "matmul"]
    assert any(n.inputs[1].owner is not None and n.inputs[1].owner.op.name == "reshape" for n in outside)


def test_readme_scan_example_runs():
    rng = np.random.default_rng(0)
    x = gc.placeholder("x", (None, None, 8))
    h0 = gc.placeholder("h0", (None, 16))
    W = gc.shared(rng.normal(size=(8, 16)).astype("float32") * 0.3, name="W")
    U = gc.shared(rng.normal(size=(16, 16)).astype("float32") * 0.3, name="U")
    hs = gc.scan(lambda x_t, h: gc.tanh(x_t @ W + h @ U), sequences=x, outputs_info=h0)
    loss = gc.mean(gc.square(hs[-1]))
    gW, gU = gc.grad(loss, [W, U])
    step = gc.function([x, h0], loss, updates=[(W, W - 0.1 * gW), (U, U - 0.1 * gU)])
    xv, hv = rng.normal(size=(7, 4, 8)).astype("float32"), rng.normal(size=(4, 16)).astype("float32")
    losses = [float(step(xv, hv)) for _ in range(20)]
    assert losses[-1] < losses[0]


def test_scan_pass_keeps_only_the_last_step_and_prunes_unread_outputs():
    x = gc.placeholder("x", (None, 3, 4), "float64")
    W = gc.constant(RNG.normal(size=(4, 4)) * 0.5)

    def step(xt, h):
        h_new = gc.tanh(xt + h @ W)
        return h_new, gc.sum(h_new * h_new)  # the second output is never read

    hs, _norms = gc.scan(step, sequences=x, outputs_info=[gc.constant(np.zeros((3, 4))), None])
    out = hs[-1, 1:]
    f = ref([x], out)
    plain = gc.function([x], out, exclude_passes=("scan",))
    scans = [n for n in f.graph.nodes if n.op.name == "scan"]
    assert [n.op.keep for n in scans] == [("last",)]  # one output left, kept at its final value
    xv = RNG.normal(size=(6, 3, 4))
    np.testing.assert_allclose(f(xv), plain(xv), rtol=1e-12)
    np.testing.assert_allclose(f(xv[:1]), plain(xv[:1]), rtol=1e-12)
    if f.backend == "c":  # no T-long buffer in the workspace any more
        assert f.memory_bytes < plain.memory_bytes


def test_scan_pass_leaves_outputs_that_bptt_reads():
    x = gc.placeholder("x", (None, 2), "float64")
    hs = gc.scan(lambda xt, h: gc.sin(h) + xt, sequences=x, outputs_info=gc.constant(np.zeros(2)))
    g = gc.grad(gc.sum(hs[-1]), x)
    f = ref([x], [hs[-1], g])
    plain = gc.function([x], [hs[-1], g], exclude_passes=("scan",))
    xv = RNG.normal(size=(5, 2))
    for a, b in zip(f(xv), plain(xv)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def _body_matmuls(node) -> list:
    return [n for n in gc.core.toposort(list(node.op.body.outputs)) if n.op.name == "matmul"]


@pytest.mark.parametrize("backwards,n_steps", [(False, None), (True, None), (False, 4), (True, 3)])
def test_scan_pass_pushes_sequence_work_and_input_gradients_out_of_the_loops(backwards, n_steps):
    """A raw tanh RNN written as Theano users write it: ``x_t @ W + b`` inside the step. The
    pass computes it for every step before the loop (one gemm), hoists ``U.T``, and in BPTT also
    moves the recomputed forward gemms and ``dx_t = dz_t @ W^T`` out of the backward loop;
    values and gradients equal the unrewritten graph's."""
    x = gc.placeholder("x", (None, None, 3), "float64")
    h0 = gc.placeholder("h0", (None, 4), "float64")
    W = gc.shared(RNG.normal(size=(3, 4)), name="W")
    U = gc.shared(RNG.normal(size=(4, 4)) * 0.4, name="U")
    b = gc.shared(RNG.normal(size=4), name="b")
    mask = gc.shared(RNG.uniform(0.5, 1.5, size=3), name="mask")  # elementwise work before the gemm
    hs = gc.scan(lambda xt, h: gc.tanh((xt * mask) @ W + b + h @ U.T), sequences=x, outputs_info=h0,
                 n_steps=n_steps, go_backwards=backwards)
    loss = gc.sum(gc.square(hs)) + gc.sum(hs[-1])
    outs = [hs, *gc.grad(loss, [W, U, b, mask, x, h0])]
    f = ref([x, h0], outs)
    plain = gc.function([x, h0], outs, exclude_passes=("scan",))
    fwd = [n for n in f.graph.nodes if n.op.name == "scan" and not (n.op.go_backwards and not backwards)]
    scans = [n for n in f.graph.nodes if n.op.name == "scan"]
    assert len(scans) == 2
    for node in scans:
        for m in _body_matmuls(node):  # every gemm left in a loop multiplies a carried value
            assert m.inputs[0].owner is not None or m.inputs[0] in node.op.body.inputs[node.op.n_seqs:
                                                                                    node.op.n_seqs + node.op.n_states]
    forward = [n for n in scans if n.op.n_states == 1][0]
    assert len(_body_matmuls(forward)) == 1  # h @ U.T only; x_t @ W left the loop
    assert not [n for n in gc.core.toposort(list(forward.op.body.outputs)) if n.op.name == "transpose"]
    assert fwd
    xv, hv = RNG.normal(size=(5, 2, 3)), RNG.normal(size=(2, 4))
    for got, want in zip(f(xv, hv), plain(xv, hv)):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)
    for got, want in zip(f(xv[:, :1], hv[:1]), plain(xv[:, :1], hv[:1])):  # another batch size
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


def test_scan_pass_push_out_keeps_nested_scans_and_random_steps_inside():
    x = gc.placeholder("x", (None, 3, 2), "float64")
    W = gc.shared(RNG.normal(size=(2, 2)), name="W")

    def outer(xt, h):
        inner = gc.scan(lambda r, acc: acc + gc.tanh(r @ W), sequences=xt, outputs_info=gc.constant(np.zeros(2)))
        noise = gc.random.uniform((2,), dtype="float64", seed=5)
        return h + inner[-1] + 0.0 * noise

    hs = gc.scan(outer, sequences=x, outputs_info=gc.constant(np.zeros(2)))
    g = gc.grad(gc.sum(hs), W)
    f = ref([x], [hs, g])
    plain = gc.function([x], [hs, g], exclude_passes=("scan",))
    xv = RNG.normal(size=(4, 3, 2))
    for got, want in zip(f(xv), plain(xv)):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)
