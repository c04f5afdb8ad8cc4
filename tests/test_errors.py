"""Bad-input campaign: every documented error is provoked here and its message checked.

DESIGN.md, "Errors at the user's line": shape and dtype errors are raised while the graph is
built and name the op, the shapes involved and the user's source line; call-time argument errors
name the input; nothing is left half-done when a call fails.
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
import pytest

import graphc as gc

# every test here runs on the reference backend and on the C backend
pytestmark = pytest.mark.usefixtures("backend")

HERE = os.path.abspath(__file__)


# -- helpers -----------------------------------------------------------------------------------


def _shape_forms(shape) -> tuple[str, ...]:
    """The ways a shape may reasonably be printed: NumPy's tuple, or graphc's ``[2,?]`` form."""
    dims = ["None" if d is None else str(d) for d in shape]
    tup = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
    br = "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
    return tup, br, tup.replace(" ", "")


def message(excinfo) -> str:
    """The error message without the line(s) citing this file, whose code would match anything."""
    return "\n".join(ln for ln in str(excinfo.value).splitlines() if HERE not in ln)


def assert_message(excinfo, pattern: str) -> None:
    assert re.search(pattern, message(excinfo)), f"{pattern!r} not in the message:\n{excinfo.value}"


def assert_names_shapes(msg: str, *shapes) -> None:
    for s in shapes:
        assert any(f in msg for f in _shape_forms(s)), f"shape {s} is not named in the message:\n{msg}"


def assert_at_user_line(excinfo) -> None:
    """The message cites this test file and the line of the statement that raised."""
    msg = str(excinfo.value)
    assert __file__ in msg, f"the user's file is not named in the message:\n{msg}"
    ours = [e for e in excinfo.traceback if os.path.abspath(str(e.path)) == HERE]
    line = ours[-1].lineno + 1  # innermost frame in this file; pytest's lineno is 0-based
    assert f"{HERE}:{line}" in msg, f"expected {HERE}:{line} in the message:\n{msg}"


def ph(name, shape, dtype="float32"):
    return gc.placeholder(name, shape, dtype)


# -- the exception hierarchy -------------------------------------------------------------------


def test_exception_classes():
    assert issubclass(gc.ShapeError, ValueError)
    assert issubclass(gc.DTypeError, TypeError)
    assert issubclass(gc.GradError, Exception)
    assert issubclass(gc.CompileError, Exception)


# -- graph-construction shape errors -----------------------------------------------------------


def test_elementwise_broadcast_mismatch():
    x, y = ph("x", (2, 3)), ph("y", (4,))
    with pytest.raises(gc.ShapeError, match=r"add") as ei:
        x + y
    assert_message(ei, r"add")
    assert_names_shapes(message(ei), (2, 3), (4,))
    assert_at_user_line(ei)


def test_elementwise_broadcast_mismatch_other_ops():
    a, b = ph("a", (2,)), ph("b", (3,))
    with pytest.raises(gc.ShapeError, match=r"maximum") as ei:
        gc.maximum(a, b)
    assert_message(ei, r"maximum")
    assert_names_shapes(message(ei), (2,), (3,))
    assert_at_user_line(ei)
    with pytest.raises(gc.ShapeError, match=r"less") as ei:
        _ = a < b
    assert_message(ei, r"less")
    assert_names_shapes(message(ei), (2,), (3,))
    assert_at_user_line(ei)
    with pytest.raises(gc.ShapeError, match=r"where") as ei:
        gc.where(ph("c", (2,), "bool"), b, 0.0)
    assert_message(ei, r"where")
    assert_names_shapes(message(ei), (2,), (3,))
    assert_at_user_line(ei)
    with pytest.raises(gc.ShapeError, match=r"multiply") as ei:
        a * np.ones((4, 3), "float32")
    assert_message(ei, r"multiply")
    assert_names_shapes(message(ei), (2,), (4, 3))
    assert_at_user_line(ei)


def test_static_dim_against_none_dim_is_fine_but_two_statics_are_not():
    # (None, 3) + (5, 3) is legal at build time; (5, 3) + (4, 3) is not.
    assert (ph("x", (None, 3)) + ph("y", (5, 3))).shape == (5, 3)
    with pytest.raises(gc.ShapeError, match=r"subtract") as ei:
        ph("p", (5, 3)) - ph("q", (4, 3))
    assert_message(ei, r"subtract")
    assert_names_shapes(message(ei), (5, 3), (4, 3))
    assert_at_user_line(ei)


def test_matmul_inner_dimension_mismatch():
    x, w = ph("x", (None, 3)), ph("w", (4, 5))
    with pytest.raises(gc.ShapeError, match=r"matmul") as ei:
        x @ w
    assert_message(ei, r"matmul")
    assert_names_shapes(message(ei), (None, 3), (4, 5))
    assert_at_user_line(ei)
    with pytest.raises(gc.ShapeError, match=r"matmul") as ei:
        gc.matmul(ph("a", (2, 3)), ph("b", (2, 3)))
    assert_message(ei, r"matmul")
    assert_names_shapes(message(ei), (2, 3))
    assert_at_user_line(ei)


def test_matmul_vector_operand_mismatch_names_the_users_shapes():
    # The user wrote a (3,) vector; the message must show (3,), not an internal (1, 3).
    v, w = ph("v", (3,)), ph("w", (4, 5))
    with pytest.raises(gc.ShapeError, match=r"matmul") as ei:
        v @ w
    assert_message(ei, r"matmul")
    assert_names_shapes(message(ei), (3,), (4, 5))
    assert_at_user_line(ei)


def test_matmul_batch_mismatch_names_the_operand_shapes():
    a, b = ph("a", (2, 3, 4)), ph("b", (3, 4, 5))
    with pytest.raises(gc.ShapeError, match=r"matmul") as ei:
        a @ b
    assert_message(ei, r"matmul")
    assert_names_shapes(message(ei), (2, 3, 4), (3, 4, 5))
    assert_at_user_line(ei)


def test_matmul_scalar_operand():
    with pytest.raises(gc.ShapeError, match=r"matmul") as ei:
        gc.matmul(ph("s", ()), ph("w", (3, 3)))
    assert_message(ei, r"matmul")
    assert_names_shapes(message(ei), (), (3, 3))
    assert_at_user_line(ei)


def test_reshape_incompatible_size():
    x = ph("x", (2, 3))
    with pytest.raises(gc.ShapeError, match=r"reshape") as ei:
        x.reshape((4, 2))
    assert_message(ei, r"reshape")
    assert_names_shapes(message(ei), (2, 3), (4, 2))
    assert_at_user_line(ei)
    with pytest.raises(gc.ShapeError, match=r"reshape") as ei:
        gc.reshape(x, (-1, 4))
    assert_message(ei, r"reshape")
    assert_names_shapes(message(ei), (2, 3), (-1, 4))
    assert_at_user_line(ei)


def test_reshape_bad_target():
    x = ph("x", (2, 3))
    with pytest.raises(gc.ShapeError, match=r"reshape.*-1") as ei:
        x.reshape((-1, -1))
    assert_message(ei, r"reshape.*-1")
    assert_at_user_line(ei)
    with pytest.raises(gc.ShapeError, match=r"reshape") as ei:
        x.reshape((6, -2))
    assert_message(ei, r"reshape")
    assert_at_user_line(ei)


def test_concatenate_mismatched_non_axis_dims():
    a, b = ph("a", (2, 3)), ph("b", (3, 3))
    with pytest.raises(gc.ShapeError, match=r"concatenate") as ei:
        gc.concatenate([a, b], axis=1)
    assert_message(ei, r"concatenate")
    assert_names_shapes(message(ei), (2, 3), (3, 3))
    assert_at_user_line(ei)
    # Along axis 0 the same operands are fine.
    assert gc.concatenate([a, b], axis=0).shape == (5, 3)


def test_concatenate_rank_mismatch_and_empty():
    a, b = ph("a", (2, 3)), ph("b", (2, 3, 1))
    with pytest.raises(gc.ShapeError, match=r"concatenate") as ei:
        gc.concatenate([a, b], axis=0)
    assert_message(ei, r"concatenate")
    assert_names_shapes(message(ei), (2, 3), (2, 3, 1))
    assert_at_user_line(ei)
    with pytest.raises(gc.ShapeError, match=r"concatenate") as ei:
        gc.concatenate([], axis=0)
    assert_message(ei, r"concatenate")
    assert_at_user_line(ei)


def test_stack_mismatch_names_stack_and_the_users_shapes():
    a, b = ph("a", (2,)), ph("b", (3,))
    with pytest.raises(gc.ShapeError, match=r"stack") as ei:
        gc.stack([a, b])
    assert_message(ei, r"stack")
    assert_names_shapes(message(ei), (2,), (3,))
    assert_at_user_line(ei)


AXIS_FNS = {
    "sum": lambda x, a: gc.sum(x, axis=a),
    "mean": lambda x, a: gc.mean(x, axis=a),
    "max": lambda x, a: gc.max(x, axis=a),
    "min": lambda x, a: gc.min(x, axis=a),
    "logsumexp": lambda x, a: gc.logsumexp(x, axis=a),
    "argmax": lambda x, a: gc.argmax(x, axis=a),
    "softmax": lambda x, a: gc.softmax(x, axis=a),
    "log_softmax": lambda x, a: gc.log_softmax(x, axis=a),
    "concatenate": lambda x, a: gc.concatenate([x, x], axis=a),
    "take": lambda x, a: gc.take(x, np.array([0], "int32"), axis=a),
}


@pytest.mark.parametrize("axis", [2, -3, 7])
@pytest.mark.parametrize("op", sorted(AXIS_FNS))
def test_axis_out_of_range(op, axis):
    x = ph("x", (2, 3))
    with pytest.raises(gc.ShapeError, match=rf"{op}.*axis {axis}") as ei:
        AXIS_FNS[op](x, axis)
    assert_message(ei, rf"{op}.*axis {axis}")
    assert_at_user_line(ei)  # the line of the lambda in AXIS_FNS that called the op


def test_axis_out_of_range_names_the_shape():
    # "They name the op, the shapes involved": the tensor's shape, not only its rank.
    x = ph("x", (2, 3))
    unnamed = []
    for op, fn in sorted(AXIS_FNS.items()):
        with pytest.raises(gc.ShapeError) as ei:
            fn(x, 2)
        if not any(f in str(ei.value) for f in _shape_forms((2, 3))):
            unnamed.append(f"{op}: {str(ei.value).splitlines()[0]}")
    assert not unnamed, "messages that do not name the shape (2, 3):\n" + "\n".join(unnamed)


def test_axis_out_of_range_cites_the_statement_line():
    x = ph("x", (2, 3))
    with pytest.raises(gc.ShapeError, match=r"sum.*axis 2") as ei:
        x.sum(axis=2)
    assert_message(ei, r"sum.*axis 2")
    assert_at_user_line(ei)
    with pytest.raises(gc.ShapeError, match=r"softmax.*axis -3") as ei:
        gc.softmax(x, axis=-3)
    assert_message(ei, r"softmax.*axis -3")
    assert_at_user_line(ei)
    with pytest.raises(gc.ShapeError, match=r"sum.*repeated axis") as ei:
        x.sum(axis=(1, -1))
    assert_message(ei, r"sum.*repeated axis")
    assert_at_user_line(ei)


def test_squeeze_of_a_non_one_axis():
    x = ph("x", (2, 1, 3))
    assert gc.squeeze(x, 1).shape == (2, 3)
    with pytest.raises(gc.ShapeError, match=r"squeeze.*axis 0") as ei:
        gc.squeeze(x, 0)
    assert_message(ei, r"squeeze.*axis 0")
    assert_names_shapes(message(ei), (2, 1, 3))
    assert_at_user_line(ei)
    # A None dimension is not statically 1 either.
    with pytest.raises(gc.ShapeError, match=r"squeeze") as ei:
        gc.squeeze(ph("y", (None, 3)), 0)
    assert_message(ei, r"squeeze")
    assert_names_shapes(message(ei), (None, 3))
    assert_at_user_line(ei)


def test_getitem_index_out_of_bounds():
    x = ph("x", (2, 3))
    assert x[1].shape == (3,) and x[-2].shape == (3,)
    with pytest.raises(gc.ShapeError, match=r"getitem.*index 5") as ei:
        x[5]
    assert_message(ei, r"getitem.*index 5")
    assert_names_shapes(message(ei), (2, 3))
    assert_at_user_line(ei)
    with pytest.raises(gc.ShapeError, match=r"getitem.*index -4") as ei:
        x[:, -4]
    assert_message(ei, r"getitem.*index -4")
    assert_names_shapes(message(ei), (2, 3))
    assert_at_user_line(ei)


def test_getitem_too_many_indices():
    x = ph("x", (2, 3))
    with pytest.raises(gc.ShapeError, match=r"getitem.*too many indices") as ei:
        x[0, 0, 0]
    assert_message(ei, r"getitem.*too many indices")
    assert_names_shapes(message(ei), (2, 3))
    assert_at_user_line(ei)
    with pytest.raises(gc.ShapeError, match=r"getitem") as ei:
        x[..., 0, ...]
    assert_message(ei, r"getitem")
    assert_at_user_line(ei)
    with pytest.raises(gc.ShapeError, match=r"getitem.*step") as ei:
        x[::0]
    assert_message(ei, r"getitem.*step")
    assert_at_user_line(ei)


@pytest.mark.parametrize("depth", [0, -3])
def test_one_hot_bad_depth(depth):
    t = ph("t", (None,), "int32")
    with pytest.raises(gc.ShapeError, match=rf"one_hot.*depth.*{depth}") as ei:
        gc.one_hot(t, depth)
    assert_message(ei, rf"one_hot.*depth.*{depth}")
    assert_at_user_line(ei)


def test_one_hot_non_int_depth():
    t = ph("t", (None,), "int32")
    with pytest.raises(gc.ShapeError, match=r"one_hot.*depth.*2\.5") as ei:
        gc.one_hot(t, 2.5)
    assert_message(ei, r"one_hot.*depth.*2\.5")
    assert_at_user_line(ei)


def test_transpose_and_broadcast_to_errors():
    x = ph("x", (2, 3))
    with pytest.raises(gc.ShapeError, match=r"transpose") as ei:
        gc.transpose(x, (0, 0))
    assert_message(ei, r"transpose")
    assert_at_user_line(ei)
    with pytest.raises(gc.ShapeError, match=r"broadcast_to") as ei:
        gc.broadcast_to(x, (3, 3))
    assert_message(ei, r"broadcast_to")
    assert_names_shapes(message(ei), (2, 3), (3, 3))
    assert_at_user_line(ei)


def test_softmax_cross_entropy_label_shape_mismatch():
    z, t = ph("z", (4, 10)), ph("t", (3,), "int32")
    with pytest.raises(gc.ShapeError, match=r"softmax_cross_entropy") as ei:
        gc.softmax_cross_entropy(z, t)
    assert_message(ei, r"softmax_cross_entropy")
    assert_names_shapes(message(ei), (4, 10), (3,))
    assert_at_user_line(ei)


def test_placeholder_bad_shape():
    with pytest.raises(gc.ShapeError, match=r"shape"):
        gc.placeholder("x", (2, -1))
    with pytest.raises(gc.ShapeError, match=r"shape"):
        gc.placeholder("x", (2.5,))
    with pytest.raises(TypeError, match=r"name"):
        gc.placeholder("", (2,))


def test_random_bad_arguments():
    with pytest.raises(gc.ShapeError, match=r"random.uniform.*like=") as ei:
        gc.random.uniform((None, 3))
    assert_message(ei, r"random.uniform.*like=")
    assert_at_user_line(ei)
    with pytest.raises(ValueError, match=r"seed"):
        gc.random.normal((2,), seed=-1)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        gc.random.bernoulli(1.5, (2,))


# -- dtype errors ------------------------------------------------------------------------------


def test_take_with_float_indices():
    E = ph("E", (10, 4))
    with pytest.raises(gc.DTypeError, match=r"take.*int32 or int64.*float32") as ei:
        gc.take(E, ph("i", (None,)))
    assert_message(ei, r"take.*int32 or int64.*float32")
    assert_at_user_line(ei)
    with pytest.raises(gc.DTypeError, match=r"take.*float64") as ei:
        gc.take(E, [0.0, 1.5])
    assert_message(ei, r"take.*float64")
    assert_at_user_line(ei)


def test_one_hot_with_float_indices():
    with pytest.raises(gc.DTypeError, match=r"one_hot.*float32") as ei:
        gc.one_hot(ph("t", (None,)), 10)
    assert_message(ei, r"one_hot.*float32")
    assert_at_user_line(ei)


def test_softmax_cross_entropy_with_float_labels():
    z, t = ph("z", (None, 10)), ph("t", (None,))
    with pytest.raises(gc.DTypeError, match=r"softmax_cross_entropy.*labels.*float32") as ei:
        gc.softmax_cross_entropy(z, t)
    assert_message(ei, r"softmax_cross_entropy.*labels.*float32")
    assert_at_user_line(ei)


@pytest.mark.parametrize("dtype", ["complex64", "float16", "uint8", "int8", "object", np.complex128])
def test_unsupported_placeholder_dtype(dtype):
    name = np.dtype(dtype).name
    with pytest.raises(gc.DTypeError, match=rf"{name}.*not supported.*float32.*float64.*int32.*int64"):
        gc.placeholder("x", (2,), dtype)


def test_not_a_dtype():
    with pytest.raises(gc.DTypeError, match=r"notadtype"):
        gc.placeholder("x", (2,), "notadtype")


def test_unsupported_dtype_elsewhere():
    with pytest.raises(gc.DTypeError, match=r"complex64"):
        gc.shared(np.zeros(3, np.complex64))
    with pytest.raises(gc.DTypeError, match=r"float16"):
        gc.cast(ph("x", (3,)), "float16")
    with pytest.raises(gc.DTypeError, match=r"float16"):
        ph("x", (3,)).astype(np.float16)


# -- grad errors -------------------------------------------------------------------------------


def test_grad_of_non_scalar_cost():
    x = ph("x", (None, 3))
    with pytest.raises(gc.GradError, match=r"scalar.*\(None, 3\).*sum\(\)|scalar.*\[\?,3\]"):
        gc.grad(x * 2.0, x)


def test_grad_wrt_not_a_var():
    x = ph("x", (3,))
    cost = (x * x).sum()
    with pytest.raises(gc.GradError, match=r"wrt"):
        gc.grad(cost, "x")
    with pytest.raises(gc.GradError, match=r"wrt\[1\].*Var.*ndarray"):
        gc.grad(cost, [x, np.ones(3, "float32")])
    with pytest.raises(gc.GradError, match=r"cost must be a Var"):
        gc.grad(3.0, x)


def test_grad_wrt_integer():
    i = ph("i", (3,), "int32")
    cost = (i * 1.5).sum()
    assert cost.dtype == "float64"
    with pytest.raises(gc.GradError, match=r"wrt\[0\].*'?i'?.*int32.*float"):
        gc.grad(cost, i)


def test_grad_of_integer_cost():
    x = ph("x", (3,))
    icost = x.astype("int32").sum()
    with pytest.raises(gc.GradError, match=r"cost must be float.*int"):
        gc.grad(icost, x)
    with pytest.raises(gc.GradError, match=r"cost must be float.*bool"):
        gc.grad(x.sum() > 0, x)


# -- gc.function construction errors -----------------------------------------------------------


def test_function_inputs_must_be_placeholders():
    x = ph("x", (None, 3))
    with pytest.raises(TypeError, match=r"inputs\[0\].*placeholder"):
        gc.function([x * 2.0], x)
    with pytest.raises(TypeError, match=r"inputs\[1\].*placeholder"):
        gc.function([x, np.ones(3)], x)
    with pytest.raises(TypeError, match=r"list of placeholders"):
        gc.function(x, x)


def test_function_shared_var_in_inputs():
    x = ph("x", (None, 3))
    W = gc.shared(np.ones((3, 2), "float32"), name="W")
    with pytest.raises(TypeError, match=r"inputs\[1\] \(W\).*shared"):
        gc.function([x, W], x @ W)


def test_function_duplicate_inputs():
    x = ph("x", (3,))
    with pytest.raises(ValueError, match=r"twice"):
        gc.function([x, x], x)
    with pytest.raises(ValueError, match=r"unique"):
        gc.function([x, ph("x", (3,))], x)


def test_function_missing_placeholder_is_named():
    x, lr = ph("x", (None, 3)), ph("learning_rate", ())
    with pytest.raises(ValueError, match=r"placeholder 'learning_rate'.*not in inputs.*\(x\)"):
        gc.function([x], x * lr)
    # An update expression may not use a missing placeholder either.
    W = gc.shared(np.ones(3, "float32"), name="W")
    with pytest.raises(ValueError, match=r"learning_rate"):
        gc.function([x], x.sum(), updates=[(W, W * lr)])


def test_function_outputs_must_be_vars():
    x = ph("x", (3,))
    with pytest.raises(TypeError, match=r"outputs"):
        gc.function([x], 3.0)
    with pytest.raises(TypeError, match=r"outputs\[1\]"):
        gc.function([x], [x, np.ones(3)])


def test_update_target_not_shared():
    x = ph("x", (3,))
    with pytest.raises(TypeError, match=r"updates\[0\] target must be a shared variable"):
        gc.function([x], x, updates=[(x, x * 2.0)])
    with pytest.raises(TypeError, match=r"updates\[0\].*pair"):
        gc.function([x], x, updates=[x])


def test_update_dtype_mismatch():
    x = ph("x", (3,))
    W = gc.shared(np.ones(3, "float32"), name="W")
    with pytest.raises(gc.DTypeError, match=r"update of 'W' \(float32\).*float64.*astype\('float32'\)"):
        gc.function([x], x, updates=[(W, W.astype("float64") * 2.0)])


def test_update_shape_mismatch():
    x = ph("x", (None, 3))
    W = gc.shared(np.ones(3, "float32"), name="W")
    with pytest.raises(gc.ShapeError, match=r"update of 'W'") as ei:
        gc.function([x], x, updates=[(W, ph("y", (2, 3)))])
    assert_message(ei, r"update of 'W'")
    assert_names_shapes(message(ei), (3,), (2, 3))
    with pytest.raises(gc.ShapeError, match=r"update of 'W'") as ei:
        gc.function([x], x, updates=[(W, W + x)])
    assert_message(ei, r"update of 'W'")
    assert_names_shapes(message(ei), (3,), (None, 3))


def test_same_shared_updated_twice():
    x = ph("x", (3,))
    W = gc.shared(np.ones(3, "float32"), name="W")
    with pytest.raises(ValueError, match=r"'W' is updated twice"):
        gc.function([x], x, updates=[(W, W + 1.0), (W, W - 1.0)])


def test_unknown_backend():
    x = ph("x", (3,))
    with pytest.raises(ValueError, match=r"unknown backend 'tpu'.*'ref'"):
        gc.function([x], x, backend="tpu")


def test_unknown_pass_name():
    x = ph("x", (3,))
    with pytest.raises(ValueError, match=r"unknown pass.*nope"):
        gc.function([x], x * 2.0, exclude_passes=("nope",))


# -- call-time errors --------------------------------------------------------------------------


@pytest.fixture
def f_xy():
    x, y = ph("x", (None, 3)), ph("y", (None, 3))
    return gc.function([x, y], x - y)


A = np.arange(6, dtype="float32").reshape(2, 3)


def test_call_wrong_argument_count(f_xy):
    with pytest.raises(TypeError, match=r"2 argument.*x, y.*got 3"):
        f_xy(A, A, A)
    with pytest.raises(TypeError, match=r"missing y"):
        f_xy(A)
    with pytest.raises(TypeError, match=r"missing x, y"):
        f_xy()


def test_call_unknown_or_repeated_keyword(f_xy):
    with pytest.raises(TypeError, match=r"unexpected argument 'z'.*x, y"):
        f_xy(A, z=A)
    with pytest.raises(TypeError, match=r"'x' twice"):
        f_xy(A, x=A)


def test_call_wrong_shape_names_the_input(f_xy):
    with pytest.raises(gc.ShapeError, match=r"input 'y'") as ei:
        f_xy(A, np.ones((2, 4), "float32"))
    assert_message(ei, r"input 'y'")
    assert_names_shapes(message(ei), (2, 4))
    with pytest.raises(gc.ShapeError, match=r"input 'x'") as ei:
        f_xy(np.ones((6,), "float32"), A)
    assert_message(ei, r"input 'x'")
    assert_names_shapes(message(ei), (6,))


def test_call_float64_array_for_float32_input(f_xy):
    with pytest.raises(TypeError, match=r"input 'y'.*float32.*float64.*astype") as ei:
        f_xy(A, np.ones((2, 3)))
    assert not isinstance(ei.value, ValueError)
    x, y = ph("x", (None, 3)), ph("y", (None, 3))
    g = gc.function([x, y], x - y, allow_input_downcast=True)
    b = np.linspace(0, 1, 6).reshape(2, 3)
    out = g(A, b)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, A - b.astype("float32"), rtol=1e-6)


def test_call_python_lists_of_floats_are_accepted(f_xy):
    out = f_xy([[1.5, 2.0, 3.0], [4.0, 5.0, 6.25]], A)
    assert out.dtype == np.float32
    expected = np.array([[1.5, 2.0, 3.0], [4.0, 5.0, 6.25]], "float32") - A
    np.testing.assert_array_equal(out, expected)
    s = ph("s", ())
    assert float(gc.function([s], s * 2.0)(1.25)) == 2.5


def test_call_python_ints_are_accepted_for_float_inputs():
    # Python scalars are weak (NEP 50): an int literal such as a learning rate of 1 or a list of
    # small ints is exactly representable and must not need an .astype().
    s, v = ph("s", ()), ph("v", (3,))
    assert float(gc.function([s], s * 2.0)(3)) == 6.0
    out = gc.function([v], v * 2.0)([1, 2, 3])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([2.0, 4.0, 6.0], "float32"))


def test_call_int64_array_for_int32_input():
    E, i = ph("E", (4, 2)), ph("i", (None,), "int32")
    f = gc.function([E, i], gc.take(E, i))
    e = np.arange(8, dtype="float32").reshape(4, 2)
    np.testing.assert_array_equal(f(e, np.array([3, 0], "int64")), e[[3, 0]])
    np.testing.assert_array_equal(f(e, [1, 2]), e[[1, 2]])
    with pytest.raises(TypeError, match=r"input 'i'.*int32.*do not fit"):
        f(e, np.array([0, 2**40], "int64"))
    with pytest.raises(TypeError, match=r"input 'i'.*int32.*float64"):
        f(e, np.array([0.0, 1.0]))
    # Even allow_input_downcast does not turn floats into indices.
    g = gc.function([E, i], gc.take(E, i), allow_input_downcast=True)
    with pytest.raises(TypeError, match=r"input 'i'"):
        g(e, np.array([0.0, 1.0]))


def test_call_string_and_object_arrays_refused(f_xy):
    with pytest.raises(TypeError, match=r"input 'y'.*float32.*<U1"):
        f_xy(A, np.array([["a", "b", "c"]] * 2))
    with pytest.raises(TypeError, match=r"input 'y'.*object"):
        f_xy(A, np.array([[1.0, 2.0, 3.0]] * 2, dtype=object))
    with pytest.raises(TypeError, match=r"input 'y'"):
        f_xy(A, "abc")
    with pytest.raises(TypeError, match=r"input 'y'.*cannot convert"):
        f_xy(A, [[1.0, 2.0, 3.0], [1.0]])


def test_call_with_a_symbolic_var(f_xy):
    with pytest.raises(TypeError, match=r"input 'x'.*symbolic"):
        f_xy(ph("x", (None, 3)), A)


def test_call_none_dimensions_must_agree(f_xy):
    with pytest.raises(gc.ShapeError, match=r"subtract") as ei:
        f_xy(np.ones((2, 3), "float32"), np.ones((5, 3), "float32"))
    assert_message(ei, r"subtract")
    assert_names_shapes(message(ei), (2, 3), (5, 3))
    # A None dimension never broadcasts, not even when it is 1 at call time.
    with pytest.raises(gc.ShapeError, match=r"subtract"):
        f_xy(np.ones((1, 3), "float32"), np.ones((4, 3), "float32"))


def test_call_matmul_none_inner_dimension_mismatch():
    a, b = ph("a", (2, None)), ph("b", (None, 4))
    f = gc.function([a, b], a @ b)
    assert f(np.ones((2, 3), "float32"), np.ones((3, 4), "float32")).shape == (2, 4)
    with pytest.raises(gc.ShapeError, match=r"matmul") as ei:
        f(np.ones((2, 3), "float32"), np.ones((5, 4), "float32"))
    assert_message(ei, r"matmul")
    assert_names_shapes(message(ei), (2, 3), (5, 4))


def test_call_reshape_of_none_dimension_that_does_not_divide():
    x = ph("x", (None,))
    f = gc.function([x], x.reshape((-1, 4)))
    assert f(np.zeros(8, "float32")).shape == (2, 4)
    with pytest.raises(gc.ShapeError, match=r"reshape"):
        f(np.zeros(6, "float32"))


def test_call_take_index_out_of_range():
    E, i = ph("E", (4, 2)), ph("i", (None,), "int32")
    f = gc.function([E, i], gc.take(E, i))
    e = np.zeros((4, 2), "float32")
    with pytest.raises(IndexError, match=r"take.*index 4.*out of range.*size 4"):
        f(e, np.array([0, 4], "int32"))
    with pytest.raises(IndexError, match=r"take.*index -5.*size 4"):
        f(e, np.array([-5, 0], "int32"))
    np.testing.assert_array_equal(f(np.arange(8, dtype="float32").reshape(4, 2), [-1]), [[6.0, 7.0]])


def test_call_softmax_cross_entropy_label_out_of_range_is_ignored_like_one_hot():
    # Labels outside [0, C) select nothing (as one_hot does), so the stabilising rewrite of
    # sum(one_hot(t) * log_softmax(z)) into this op preserves values; -1 can mark padding.
    z, t = ph("z", (None, 4)), ph("t", (None,), "int32")
    loss = gc.softmax_cross_entropy(z, t)
    f = gc.function([z, t], [loss, gc.grad(gc.sum(loss), z)])
    zeros = np.zeros((3, 4), "float32")
    value, grad = f(zeros, np.array([0, 4, -1], "int32"))
    np.testing.assert_allclose(value, [np.log(4.0), 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(grad, [[-0.75, 0.25, 0.25, 0.25], [0] * 4, [0] * 4], rtol=1e-6)


# -- SharedVar.set_value -----------------------------------------------------------------------


def test_set_value_wrong_shape():
    W = gc.shared(np.ones((3, 2), "float32"), name="W")
    with pytest.raises(gc.ShapeError, match=r"set_value of 'W'") as ei:
        W.set_value(np.ones((2, 3), "float32"))
    assert_message(ei, r"set_value of 'W'")
    assert_names_shapes(message(ei), (3, 2), (2, 3))
    np.testing.assert_array_equal(W.get_value(), np.ones((3, 2), "float32"))


def test_set_value_incompatible_dtype():
    W = gc.shared(np.ones(3, "float32"), name="W")
    with pytest.raises(gc.DTypeError, match=r"set_value of 'W'.*float32.*complex64"):
        W.set_value(np.ones(3, "complex64"))
    with pytest.raises(gc.DTypeError, match=r"set_value of 'W'"):
        W.set_value(np.array(["a", "b", "c"]))
    I = gc.shared(np.zeros(2, "int32"), name="I")
    with pytest.raises(gc.DTypeError, match=r"set_value of 'I'.*int32.*float"):
        I.set_value(np.array([0.5, 1.5]))
    np.testing.assert_array_equal(W.get_value(), np.ones(3, "float32"))
    np.testing.assert_array_equal(I.get_value(), np.zeros(2, "int32"))
    # Compatible values are accepted and converted.
    W.set_value(np.array([1.0, 2.0, 3.0]))
    assert W.get_value().dtype == np.float32
    I.set_value(np.array([5, 6], "int64"))
    np.testing.assert_array_equal(I.get_value(), [5, 6])


def test_set_value_int_overflow_is_refused():
    # Like a call argument, an int64 value that does not fit an int32 variable must be refused,
    # not silently wrapped.
    I = gc.shared(np.zeros(2, "int32"), name="I")
    with pytest.raises(TypeError, match=r"'I'.*int32"):
        I.set_value(np.array([2**40, 1], "int64"))
    np.testing.assert_array_equal(I.get_value(), [0, 0])


# -- no lost state -----------------------------------------------------------------------------


def test_failed_call_leaves_shared_values_unchanged():
    x = ph("x", (None, 3))
    W = gc.shared(np.arange(3, dtype="float32"), name="W")
    step = gc.shared(np.zeros((), "int64"), name="step")
    f = gc.function([x], x.sum(), updates=[(W, W + x.sum(axis=0)), (step, step + 1)])
    with pytest.raises(gc.ShapeError):
        f(np.ones((2, 4), "float32"))
    np.testing.assert_array_equal(W.get_value(), np.arange(3, dtype="float32"))
    assert int(step.get_value()) == 0
    f(np.ones((2, 3), "float32"))
    np.testing.assert_array_equal(W.get_value(), np.arange(3, dtype="float32") + 2)
    assert int(step.get_value()) == 1


def test_update_failing_at_call_time_writes_no_update():
    # The second update's shape is only known at call time: a wrong one must stop every write.
    v = ph("v", (None,))
    a = gc.shared(np.zeros(3, "float32"), name="a")
    b = gc.shared(np.zeros(3, "float32"), name="b")
    f = gc.function([v], [], updates=[(a, a + 1.0), (b, v * 2.0)])
    with pytest.raises(gc.ShapeError, match=r"'b'"):
        f(np.ones(4, "float32"))
    np.testing.assert_array_equal(a.get_value(), np.zeros(3, "float32"))
    np.testing.assert_array_equal(b.get_value(), np.zeros(3, "float32"))
    f(np.ones(3, "float32"))
    np.testing.assert_array_equal(a.get_value(), np.ones(3, "float32"))
    np.testing.assert_array_equal(b.get_value(), np.full(3, 2.0, "float32"))


def test_error_while_running_writes_no_update():
    E, i = ph("E", (4, 2)), ph("i", (None,), "int32")
    acc = gc.shared(np.zeros(2, "float32"), name="acc")
    count = gc.shared(np.zeros((), "int64"), name="count")
    f = gc.function([E, i], [], updates=[(count, count + 1), (acc, acc + gc.take(E, i).sum(axis=0))])
    e = np.ones((4, 2), "float32")
    with pytest.raises(IndexError):
        f(e, np.array([0, 9], "int32"))
    assert int(count.get_value()) == 0
    np.testing.assert_array_equal(acc.get_value(), np.zeros(2, "float32"))


def test_failed_call_does_not_advance_the_random_stream():
    E, i = ph("E", (4, 2)), ph("i", (None,), "int32")
    f = gc.function([E, i], [gc.random.uniform((5,), seed=11), gc.take(E, i)])
    g = gc.function([], gc.random.uniform((5,), seed=11) * 1.0)
    e = np.zeros((4, 2), "float32")
    with pytest.raises(IndexError):
        f(e, np.array([7], "int32"))
    first, _ = f(e, np.array([0], "int32"))
    np.testing.assert_array_equal(first, g())  # both are the stream's first draw


def test_failed_argument_check_leaves_state():
    x = ph("x", (3,))
    W = gc.shared(np.ones(3, "float32"), name="W")
    f = gc.function([x], W.sum(), updates=[(W, W * x)])
    with pytest.raises(TypeError):
        f(np.full(3, 2.0))  # float64: refused
    with pytest.raises(TypeError):
        f()
    np.testing.assert_array_equal(W.get_value(), np.ones(3, "float32"))


# -- Var misuse --------------------------------------------------------------------------------


def test_bool_of_a_var():
    x = ph("x", ())
    with pytest.raises(TypeError, match=r"truth value.*gc.where"):
        if x < 0:
            pass
    with pytest.raises(TypeError, match=r"truth value"):
        bool(x)
    with pytest.raises(TypeError, match=r"truth value"):
        _ = x > 0 and x < 1
    with pytest.raises(TypeError, match=r"truth value"):
        _ = 0 < x < 1


def test_iterating_a_var():
    x = ph("x", (3, 2))
    with pytest.raises(TypeError, match=r"cannot be iterated"):
        for _row in x:
            pass
    with pytest.raises(TypeError, match=r"cannot be iterated"):
        list(x)
    with pytest.raises(TypeError, match=r"cannot be iterated"):
        a, b, c = x


def test_indexing_with_a_var_or_list_points_to_take():
    x = ph("x", (5, 2))
    k = ph("k", (), "int32")
    with pytest.raises(TypeError, match=r"gc\.take"):
        x[k]
    with pytest.raises(TypeError, match=r"gc\.take"):
        x[[0, 1]]
    with pytest.raises(TypeError, match=r"gc\.take"):
        x[np.array([0, 1])]
    with pytest.raises(TypeError, match=r"gc\.take"):
        x[:, k]
    with pytest.raises(TypeError, match=r"getitem"):
        x[1.5]
    with pytest.raises(TypeError, match=r"getitem"):
        x[k:]


def test_len_of_none_dimension():
    assert len(ph("x", (4, 2))) == 4
    with pytest.raises(TypeError, match=r"len"):
        len(ph("x", (None, 2)))
    with pytest.raises(TypeError, match=r"len"):
        len(ph("s", ()))


def test_var_is_not_an_array_and_not_a_value():
    x = ph("x", (3,))
    with pytest.raises(TypeError, match=r"constant"):
        gc.constant(x)
    with pytest.raises(TypeError, match=r"shared"):
        gc.shared(x)


# -- NaN and Inf are data, not errors ----------------------------------------------------------


NAN_INF = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.0, 1e30], "float32")


def test_nan_inf_elementwise_match_numpy():
    x = ph("x", (None,))
    exprs = {
        "log": gc.log(x), "exp": gc.exp(x), "sqrt": gc.sqrt(x), "tanh": gc.tanh(x),
        "sigmoid": gc.sigmoid(x), "relu": gc.relu(x), "abs": gc.abs(x), "square": gc.square(x),
        "recip": 1.0 / x, "x-x": x - x, "x*0": x * 0.0, "x/x": x / x, "max0": gc.maximum(x, 0.0),
        "clip": gc.clip(x, -1.0, 1.0), "sign": gc.sign(x), "gt": x > 0.0, "eq": gc.equal(x, x),
    }
    names = list(exprs)
    f = gc.function([x], [exprs[n] for n in names])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning leaks out of a call either
        outs = dict(zip(names, f(NAN_INF)))
    a = NAN_INF
    with np.errstate(all="ignore"):
        expected = {
            "log": np.log(a), "exp": np.exp(a), "sqrt": np.sqrt(a), "tanh": np.tanh(a),
            "sigmoid": (1.0 / (1.0 + np.exp(-a.astype("float64")))).astype("float32"),
            "relu": np.maximum(a, np.float32(0)), "abs": np.abs(a), "square": np.square(a),
            "recip": np.float32(1) / a, "x-x": a - a, "x*0": a * np.float32(0), "x/x": a / a,
            "max0": np.maximum(a, np.float32(0)), "clip": np.clip(a, np.float32(-1), np.float32(1)),
            "sign": np.sign(a), "gt": a > 0, "eq": a == a,
        }
    for n in names:
        assert outs[n].dtype == expected[n].dtype, n
        if n == "sigmoid":  # graphc's two-branch form may round differently by an ulp
            np.testing.assert_allclose(outs[n], expected[n], rtol=1e-6, err_msg=n)
        elif n in ("exp", "log", "tanh") and os.environ["GRAPHC_BACKEND"] == "c":
            # the C backend's vectorised polynomials are within a few ulp; NaN/Inf must be exact
            got, want = outs[n], expected[n]
            special = ~np.isfinite(want) | (want == 0)
            np.testing.assert_array_equal(got[special], want[special], err_msg=n)
            np.testing.assert_array_max_ulp(got[~special], want[~special], maxulp=4)
        else:
            np.testing.assert_array_equal(outs[n], expected[n], err_msg=n)


def test_nan_inf_reductions_match_numpy():
    a = np.array([[np.nan, 1.0, 2.0], [np.inf, -np.inf, 0.0], [np.inf, 1.0, 5.0]], "float64")
    x = ph("x", (None, 3), "float64")
    f = gc.function([x], [x.sum(axis=1), x.max(axis=1), x.min(axis=0), x.mean(axis=0), gc.argmax(x, 1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s, mx, mn, me, am = f(a)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(s, a.sum(axis=1))
        np.testing.assert_array_equal(mx, a.max(axis=1))
        np.testing.assert_array_equal(mn, a.min(axis=0))
        np.testing.assert_allclose(me, a.mean(axis=0), rtol=1e-15)
        np.testing.assert_array_equal(am, np.argmax(a, axis=1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_wins_in_long_vectorised_max_min_rows(dtype):
    """The max/min loops are SIMD reductions with a separate NaN flag: a NaN in any lane (head,
    middle, the scalar tail) must still win, on every reduction pattern and in softmax's max."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 4, 203)).astype(dtype)
    a[0, 0, 0] = a[1, 2, 101] = a[2, 3, 202] = np.nan
    a[3, 1, 7] = np.inf
    a[4] = -np.inf
    x = ph("x", (None, 4, 203), dtype)
    outs = [x.max(axis=2), x.min(axis=2), x.max(axis=(0, 2)), x.min(axis=(1, 2)), x.max(), gc.softmax(x, -1)]
    got = gc.function([x], outs)(a)
    with np.errstate(all="ignore"):
        want = [a.max(axis=2), a.min(axis=2), a.max(axis=(0, 2)), a.min(axis=(1, 2)), a.max(),
                gc.function([x], outs[-1], backend="ref")(a)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, equal_nan=True)


def test_nan_in_matmul_and_division_by_zero():
    x, w = ph("x", (None, 2), "float64"), ph("w", (2, 2), "float64")
    f = gc.function([x, w], [x @ w, x / w.sum()])
    a = np.array([[np.nan, 1.0], [1.0, 2.0]])
    b = np.array([[1.0, -1.0], [2.0, -2.0]])
    mm, div = f(a, b)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(mm, a @ b)
        np.testing.assert_array_equal(div, a / b.sum())
    assert np.isinf(div[1]).all()


def test_error_messages_are_single_exceptions_not_chained_noise():
    # A graph-construction error carries one user line, not the whole graphc stack.
    x = ph("x", (2, 3))
    with pytest.raises(gc.ShapeError) as ei:
        x + ph("y", (4,))
    msg = str(ei.value)
    assert len(re.findall(r"\bat /", msg)) == 1
    assert os.path.dirname(gc.__file__) not in msg
