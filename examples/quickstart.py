"""The README's quickstart: define a graph, take grad, compile with backend="ref", run."""

import numpy as np

import graphc as gc

x = gc.placeholder("x", (None, 3))                      # batch size bound at call time
t = gc.placeholder("t", (None,), "int32")
W = gc.shared(np.zeros((3, 4), "float32"), name="W")
b = gc.shared(np.zeros(4, "float32"), name="b")
logits = x @ W + b
loss = -(gc.one_hot(t, 4) * gc.log(gc.softmax(logits))).sum(axis=1).mean()
gW, gb = gc.grad(loss, [W, b])                          # symbolic: more graph nodes
step = gc.function([x, t], loss, updates=[(W, W - 0.5 * gW), (b, b - 0.5 * gb)], backend="ref")
# backend="c" (the default) compiles the same step to one fused native call
print(step.graph)                                       # log(softmax) became a fused cross-entropy
rng = np.random.default_rng(0)
xs = rng.normal(size=(256, 3)).astype("float32")
ts = np.argmax(xs @ rng.normal(size=(3, 4)), axis=1).astype("int32")   # a linearly separable task
for i in range(101):
    loss_value = step(xs, ts)
    if i % 25 == 0:
        print(f"step {i:3d}: loss {float(loss_value):.4f}")
