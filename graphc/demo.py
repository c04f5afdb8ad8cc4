"""The worked examples behind `graphc demo`: a symbolic gradient graph and its values, then an
MLP trained on MNIST-5k with the C backend (and the same step timed in NumPy)."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np

import graphc as gc


def demo_backend(warn=None) -> str:
    """"c" when a C compiler (``$CC``, else gcc) is on PATH, else "ref" after one warning line
    (on stderr), as the README promises: the demo then runs, slower, on the NumPy reference.

    >>> demo_backend(warn=lambda s: None) in ("c", "ref")
    True
    """
    cc = os.environ.get("CC") or "gcc"
    if shutil.which(cc) is not None:
        return "c"
    (warn or (lambda s: print(s, file=sys.stderr)))(
        f"graphc demo: no C compiler ({cc!r}) found; running on the NumPy reference backend instead (slower)")
    return "ref"


def gradient_graph_demo(out=print, backend: str | None = None) -> dict:
    """Build f = (x + y) * z, take its symbolic gradient, print the graphs and the values.

    >>> r = gradient_graph_demo(out=lambda *a: None)
    >>> r["grad"]
    [-4.0, -4.0, 3.0]
    """
    x, y, z = (gc.placeholder(n, (), "float64") for n in "xyz")
    f = (x + y) * z
    grads = gc.grad(f, [x, y, z])
    fn = gc.function([x, y, z], [f, *grads], backend=backend)
    out("f(x, y, z) = (x + y) * z  and its gradient, as one optimised graph:")
    out(fn.graph)
    value, *g = fn(-2.0, 5.0, -4.0)
    out(f"at (x, y, z) = (-2, 5, -4): f = {float(value)}, grad = {[float(v) for v in g]}\n")
    return {"f": float(value), "grad": [float(v) for v in g]}


class NumpyAdamMLP:
    """The same training step written by hand in NumPy (relu MLP, softmax cross-entropy, Adam),
    to time against graphc's compiled step."""

    def __init__(self, params: list[np.ndarray], lr: float = 1e-3, b1=0.9, b2=0.999, eps=1e-8):
        self.p = [p.copy() for p in params]
        self.m = [np.zeros_like(p) for p in self.p]
        self.v = [np.zeros_like(p) for p in self.p]
        self.lr, self.b1, self.b2, self.eps, self.t = np.float32(lr), b1, b2, eps, 0

    def step(self, x, t):
        ws, bs = self.p[0::2], self.p[1::2]
        hs = [x]
        for i, (w, b) in enumerate(zip(ws, bs)):
            z = hs[-1] @ w + b
            hs.append(np.maximum(z, 0) if i < len(ws) - 1 else z)
        z = hs[-1] - hs[-1].max(axis=1, keepdims=True)
        e = np.exp(z)
        d = e / e.sum(axis=1, keepdims=True)
        d[np.arange(len(t)), t] -= 1
        d /= len(t)
        grads = [None] * len(self.p)
        for i in reversed(range(len(ws))):
            grads[2 * i], grads[2 * i + 1] = hs[i].T @ d, d.sum(axis=0)
            if i:
                d = (d @ ws[i].T) * (hs[i] > 0)
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, g, m, v in zip(self.p, grads, self.m, self.v):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


def mnist_mlp_demo(epochs: int = 20, batch_size: int = 64, hidden: int = 256, plot: str | None = "mlp_mnist.png",
                   out=print, backend: str = "c") -> dict:
    """Train a 784-hidden-10 MLP with Adam on MNIST-5k (4000 train / 1000 test) on `backend`;
    print each epoch, the test accuracy, the time per epoch and the same step's time in NumPy
    (the median ratio of interleaved timings, with its interquartile range)."""
    import time

    from graphc import data, nn, optim, train

    ds = data.load_mnist5k()
    model = nn.Sequential([nn.Dense(hidden, activation="relu", seed=1), nn.Dense(10, seed=2)],
                          input_shape=(784,), name="mlp")
    model.summary(print_fn=out)
    start = [p.get_value() for p in model.params]
    hist = train.fit(model, ds.x_train, ds.y_train, optimizer=optim.Adam(1e-3), epochs=epochs, batch_size=batch_size,
                     validation_data=(ds.x_test, ds.y_test), backend=backend, verbose=0)
    for e in range(len(hist["loss"])):
        out(f"epoch {e + 1:2d}/{epochs}  loss {hist['loss'][e]:.4f}  acc {hist['accuracy'][e]:.4f}  "
            f"test acc {hist['val_accuracy'][e]:.4f}  {hist['epoch_time'][e] * 1e3:6.1f} ms")
    step_c = hist.trainer.train_fn
    ref = NumpyAdamMLP(start)
    xb, tb = ds.x_train[:batch_size], ds.y_train[:batch_size]

    def one(fn):
        t0 = time.perf_counter()
        fn(xb, tb)
        return time.perf_counter() - t0

    for _ in range(5):
        step_c(xb, tb), ref.step(xb, tb)
    # interleaved, so a burst of load on a shared machine hits both sides of a pair alike; the
    # ratio is the median of per-pair ratios, with its interquartile range as the spread
    pairs = np.array([(one(step_c), one(ref.step)) for _ in range(51)])
    t_c, t_np = (float(v) for v in np.median(pairs, axis=0))
    ratios = pairs[:, 1] / pairs[:, 0]
    r_med, r_lo, r_hi = (float(v) for v in np.percentile(ratios, [50, 25, 75]))
    epoch_ms = float(np.median(hist["epoch_time"])) * 1e3
    out(f"test accuracy {hist['val_accuracy'][-1]:.4f} after {epochs} epochs; median epoch {epoch_ms:.1f} ms")
    out(f"one training step (batch {batch_size}), median of {len(pairs)}: graphc {backend} {t_c * 1e6:.0f} us, "
        f"NumPy {t_np * 1e6:.0f} us; NumPy/graphc {r_med:.1f}x (interquartile {r_lo:.1f}x-{r_hi:.1f}x)")
    if plot:
        train.plot_history(hist, plot, title=f"MLP on MNIST-5k (graphc, {backend} backend)")
        out(f"wrote {plot}")
    return {"test_accuracy": hist["val_accuracy"][-1], "epoch_ms": epoch_ms, "step_s": t_c, "numpy_step_s": t_np,
            "speedup_median": r_med, "speedup_iqr": (r_lo, r_hi), "backend": backend}


def main(argv: list[str] | None = None) -> int:
    """`graphc demo`: the gradient-graph example, then MLP training on MNIST-5k."""
    backend = demo_backend()
    gradient_graph_demo(backend=backend)
    r = mnist_mlp_demo(backend=backend)
    return 0 if r["test_accuracy"] > 0.85 else 1
