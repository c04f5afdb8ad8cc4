"""The worked example behind `graphc demo`: a symbolic gradient graph, its values, and a short
gradient-descent run on XOR, all on the reference backend."""

from __future__ import annotations

import numpy as np

import graphc as gc


def gradient_graph_demo(out=print) -> dict:
    """Build f = (x + y) * z, take its symbolic gradient, print the graphs and the values.

    >>> r = gradient_graph_demo(out=lambda *a: None)
    >>> r["grad"]
    [-4.0, -4.0, 3.0]
    """
    x, y, z = (gc.placeholder(n, (), "float64") for n in "xyz")
    f = (x + y) * z
    grads = gc.grad(f, [x, y, z])
    fn = gc.function([x, y, z], [f, *grads])
    out("f(x, y, z) = (x + y) * z  and its gradient, as one optimised graph:")
    out(fn.graph)
    value, *g = fn(-2.0, 5.0, -4.0)
    out(f"at (x, y, z) = (-2, 5, -4): f = {float(value)}, grad = {[float(v) for v in g]}\n")
    return {"f": float(value), "grad": [float(v) for v in g]}


def xor_demo(steps: int = 1500, lr: float = 1.0, seed: int = 2, out=print) -> dict:
    """Train a 2-4-1 tanh/sigmoid network on XOR with full-batch gradient descent.

    The whole step (forward, backward, update of four shared variables) is one compiled function.

    >>> r = xor_demo(out=lambda *a: None)
    >>> r["predictions"]
    [0, 1, 1, 0]
    """
    rng = np.random.default_rng(seed)
    X = gc.placeholder("X", (None, 2))
    t = gc.placeholder("t", (None,))
    W1 = gc.shared(rng.normal(0, 1, (2, 4)).astype("float32"), name="W1")
    b1 = gc.shared(np.zeros(4, "float32"), name="b1")
    W2 = gc.shared(rng.normal(0, 1, (4,)).astype("float32"), name="W2")
    b2 = gc.shared(np.zeros((), "float32"), name="b2")
    params = [W1, b1, W2, b2]
    p = gc.sigmoid(gc.tanh(X @ W1 + b1) @ W2 + b2)
    loss = -gc.mean(t * gc.log(p) + (1 - t) * gc.log(1 - p))  # stabilised to softplus form
    grads = gc.grad(loss, params)
    step = gc.function([X, t], loss, updates=[(v, v - lr * g) for v, g in zip(params, grads)])
    predict = gc.function([X], p)
    xs = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], "float32")
    ts = np.array([0, 1, 1, 0], "float32")
    out(f"XOR, 2-4-1 network, {steps} full-batch gradient steps (lr={lr}):")
    history = []
    for i in range(steps):
        value = float(step(xs, ts))
        history.append(value)
        if i % (steps // 5) == 0 or i == steps - 1:
            out(f"  step {i:5d}  loss {value:.5f}")
    probs = predict(xs)
    preds = [int(v > 0.5) for v in probs]
    shown = ", ".join(f"{float(v):.3f}" for v in probs)
    out(f"  predictions {preds} (probabilities {shown})")
    return {"loss": history, "predictions": preds}


def main() -> int:
    gradient_graph_demo()
    r = xor_demo()
    return 0 if r["predictions"] == [0, 1, 1, 0] else 1
