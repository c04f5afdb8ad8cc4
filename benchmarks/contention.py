"""Training steps on a quiet machine and beside one busy core (issue 14, item 1), in graphc and
in its PyTorch and JAX twins under the same load.

    .venv/bin/python benchmarks/contention.py [--seconds 3] [--framework all|graphc|torch|jax]

For each step (the MLP 784-512-512-10 Adam step at batch 128, and a GAN discriminator step,
MLP 2-128-128-1 at batch 256 with Adam and the loss mean(softplus(-D(x)))), the mean and p90 of
the call time over `--seconds` of calls, first alone, then with a ``python -c "while True:
pass"`` child that this script starts and stops. JAX runs in the interpreter `make twins`
builds (it wants Python 3.12): `all` starts this script there with ``--framework jax``.
Compare ``GRAPHC_ADAPTIVE_THREADS=0`` (graphc's thread counts fixed) with the default.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np


def _data(sizes: tuple, batch: int):
    rng = np.random.default_rng(0)
    xv = rng.normal(size=(batch, sizes[0])).astype("float32")
    tv = rng.integers(0, max(sizes[-1], 1), batch).astype("int32")
    return xv, tv


def build(sizes: tuple, batch: int):
    """graphc's step: the loss and Adam's updates in one compiled function."""
    import graphc as gc
    from graphc.nn import Dense, Sequential, losses

    layers = [Dense(s, activation="relu", seed=i) for i, s in enumerate(sizes[1:-1])] + [Dense(sizes[-1], seed=9)]
    model = Sequential(layers, input_shape=(sizes[0],))
    x, t = gc.placeholder("x", (None, sizes[0])), gc.placeholder("t", (None,), "int32")
    out = model(x)
    loss = losses.categorical_crossentropy(out, t) if sizes[-1] > 1 else gc.mean(gc.softplus(-out))
    f = gc.function([x, t], loss, updates=gc.optim.Adam(1e-3).updates(loss, model.params))
    xv, tv = _data(sizes, batch)
    return lambda: f(xv, tv)


def build_torch(sizes: tuple, batch: int):
    """The same step in eager PyTorch (its default intra-op threads)."""
    import torch

    torch.manual_seed(0)
    layers: list = []
    for i, o in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(i, o), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xv, tv = (torch.from_numpy(a) for a in _data(sizes, batch))
    tv = tv.long()

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(xv)
        loss = torch.nn.functional.cross_entropy(out, tv) if sizes[-1] > 1 else \
            torch.nn.functional.softplus(-out).mean()
        loss.backward()
        opt.step()
        return loss.item()

    return step


def build_jax(sizes: tuple, batch: int):
    """The same step as one jitted JAX function (the bench's `jax_training_step`)."""
    import jax
    import jax.numpy as jnp

    from graphc.bench.frameworks import jax_training_step
    from graphc.bench.mlp import ADAM, mlp_params

    ws, bs = mlp_params(np.random.default_rng(3), list(sizes))

    def loss_fn(params, x, t):
        h, n = x, len(params) // 2
        for i in range(n):
            h = h @ params[i] + params[n + i]
            if i < n - 1:
                h = jax.nn.relu(h)
        if sizes[-1] == 1:
            return jnp.mean(jax.nn.softplus(-h))
        return jnp.mean(jax.nn.logsumexp(h, axis=1) - jnp.take_along_axis(h, t[:, None], axis=1)[:, 0])

    fn, _ = jax_training_step(loss_fn, ws + bs, 1e-3, ADAM)
    xv, tv = _data(sizes, batch)
    return lambda: fn(xv, tv)


BUILDERS = {"graphc": build, "torch": build_torch, "jax": build_jax}


def mean_p90_ms(fn, seconds: float) -> tuple[float, float]:
    fn()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.mean(times)) * 1e3, float(np.percentile(times, 90)) * 1e3


def run(framework: str, seconds: float) -> None:
    builder = BUILDERS[framework]
    steps = {"MLP 784-512-512-10 Adam, batch 128": builder((784, 512, 512, 10), 128),
             "GAN D 2-128-128-1 Adam, batch 256": builder((2, 128, 128, 1), 256)}
    for name, fn in steps.items():
        quiet = mean_p90_ms(fn, seconds)
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.5)
            busy = mean_p90_ms(fn, seconds)
        finally:
            hog.kill()
            hog.wait()
        time.sleep(0.5)
        print(f"{framework:6s} {name:36s} quiet mean {quiet[0]:.2f} ms (p90 {quiet[1]:.2f})   one busy core mean "
              f"{busy[0]:.2f} ms (p90 {busy[1]:.2f})   ratio {busy[0] / quiet[0]:.2f}", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--framework", choices=["all", *BUILDERS], default="all")
    args = p.parse_args(argv)
    print(f"load average {os.getloadavg()}, GRAPHC_ADAPTIVE_THREADS={os.environ.get('GRAPHC_ADAPTIVE_THREADS', '1')}",
          flush=True)
    if args.framework != "all":
        run(args.framework, args.seconds)
        return
    from graphc.bench.frameworks import child_python, framework_available

    run("graphc", args.seconds)
    if framework_available("torch"):
        run("torch", args.seconds)
    else:
        print("torch: not installed")
    if framework_available("jax"):  # in its own interpreter (make twins)
        subprocess.run([child_python("jax"), os.path.abspath(__file__), "--framework", "jax",
                        "--seconds", str(args.seconds)], check=False)
    else:
        print("jax: not installed (make twins)")


if __name__ == "__main__":
    main()
