"""The contenders: which frameworks `graphc bench` knows, how inputs reach each of them, and the
small helpers its twins are written with (PyTorch eager or ``torch.compile``, ``jax.jit``).

PyTorch and JAX are imported only inside these functions: the parent process never imports them
(their thread pools would contend with graphc's and NumPy's), only the child processes do.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys

import numpy as np

FRAMEWORKS = ("graphc", "numpy", "torch", "torch_compile", "jax", "pytensor")
LABELS = {"graphc": "graphc", "numpy": "NumPy", "torch": "PyTorch", "torch_compile": "torch.compile", "jax": "JAX",
          "pytensor": "PyTensor"}
# The frameworks whose child process may run in the twins interpreter (`make twins`: Python 3.12
# with JAX 0.12 and PyTensor 3.3, which the main venv's Python may be too old for).
TWINS = ("jax", "pytensor")
MODULES = {"torch": "torch", "torch_compile": "torch", "jax": "jax", "pytensor": "pytensor"}


def to_numpy_list(out) -> list[np.ndarray]:
    if isinstance(out, (list, tuple)):
        return [to_numpy(o) for o in out]
    return [to_numpy(out)]


def to_numpy(o) -> np.ndarray:
    if hasattr(o, "detach"):  # torch
        return o.detach().numpy()
    return np.asarray(o)


def convert(framework: str, arrays: tuple) -> tuple:
    """NumPy inputs as the framework takes them (outside any timing)."""
    if framework in ("torch", "torch_compile"):
        import torch

        return tuple(torch.from_numpy(a.astype(np.int64) if a.dtype.kind == "i" else a) for a in arrays)
    if framework == "jax":
        import jax

        return tuple(jax.device_put(a) for a in arrays)
    return arrays



def torch_fn(fn, compiled: bool):
    import torch

    return torch.compile(fn) if compiled else fn


def jax_training_step(loss_fn, params, lr: float, adam: dict | None):
    """A jitted training step of ``loss_fn(params, *inputs)`` with SGD, or with PyTorch's Adam
    when `adam` gives its ``beta1``, ``beta2``, ``eps``; returns (``fn(*inputs) -> loss``,
    ``state() -> the parameters as NumPy arrays``). The parameters and moments are donated."""
    import jax
    import jax.numpy as jnp

    def step(params, m, v, k, *inputs):
        loss, g = jax.value_and_grad(loss_fn)(params, *inputs)
        if adam is None:
            return loss, [p - lr * gi for p, gi in zip(params, g)], m, v, k
        b1, b2, eps = adam["beta1"], adam["beta2"], adam["eps"]
        k = k + 1
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
        step_size = lr / (1 - b1**k)
        inv_bc2 = 1 / jnp.sqrt(1 - b2**k)
        params = [p - step_size * mi / (jnp.sqrt(vi) * inv_bc2 + eps) for p, mi, vi in zip(params, m, v)]
        return loss, params, m, v, k

    jstep = jax.jit(step, donate_argnums=(0, 1, 2))
    params = [jnp.asarray(p) for p in params]
    st = [params, [jnp.zeros_like(p) for p in params], [jnp.zeros_like(p) for p in params], jnp.float32(0)]

    def fn(*inputs):
        loss, p, m, v, k = jstep(*st, *inputs)
        st[:] = [p, m, v, k]
        jax.block_until_ready((loss, st[0]))
        return loss

    return fn, lambda: [np.asarray(p) for p in st[0]]


def jax_fn(fn, **jit_kw):
    import jax

    jf = jax.jit(fn, **jit_kw)
    return lambda *a: jax.block_until_ready(jf(*a))


class Math:
    """The elementwise functions an expression needs, from one framework."""

    def __init__(self, framework: str):
        if framework == "graphc":
            import graphc as gc

            self.tanh, self.sigmoid, self.exp = gc.tanh, gc.sigmoid, gc.exp
        elif framework == "jax":
            import jax
            import jax.numpy as jnp

            self.tanh, self.sigmoid, self.exp = jnp.tanh, jax.nn.sigmoid, jnp.exp
        else:
            import torch

            self.tanh, self.sigmoid, self.exp = torch.tanh, torch.sigmoid, torch.exp



def child_python(fw: str) -> str:
    """The interpreter that runs `fw`'s child process: for JAX and PyTensor, $GRAPHC_BENCH_TWINS_PYTHON
    or else the `.venv-twins` that `make twins` builds beside the graphc checkout, where they exist;
    otherwise this interpreter.

    >>> child_python("torch") == sys.executable
    True
    """
    if fw in TWINS:
        env = os.environ.get("GRAPHC_BENCH_TWINS_PYTHON")
        if env:
            return env
        venv = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            ".venv-twins", "bin", "python")
        if os.path.exists(venv):
            return venv
    return sys.executable


@functools.cache
def _has_module(python: str, mod: str) -> bool:
    if python == sys.executable:
        return importlib.util.find_spec(mod) is not None
    try:  # another interpreter: ask it (without importing the package)
        code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({mod!r}) is None)"
        r = subprocess.run([python, "-c", code], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def framework_available(fw: str) -> bool:
    """Whether `fw`'s package is installed in the interpreter its child runs in (found without
    importing it).

    >>> framework_available("numpy")
    True
    """
    mod = MODULES.get(fw)
    return mod is None or _has_module(child_python(fw), mod)
