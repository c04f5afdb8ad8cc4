"""The contenders: which frameworks `graphc bench` knows, how inputs reach each of them, and the
small helpers its twins are written with (PyTorch eager or ``torch.compile``, ``jax.jit``).

PyTorch and JAX are imported only inside these functions: the parent process never imports them
(their thread pools would contend with graphc's and NumPy's), only the child processes do.
"""

from __future__ import annotations

import importlib.util

import numpy as np

FRAMEWORKS = ("graphc", "numpy", "torch", "torch_compile", "jax")
LABELS = {"graphc": "graphc", "numpy": "NumPy", "torch": "PyTorch", "torch_compile": "torch.compile", "jax": "JAX"}


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



def framework_available(fw: str) -> bool:
    """Whether `fw`'s package is installed (found without importing it)."""
    mod = {"torch": "torch", "torch_compile": "torch", "jax": "jax"}.get(fw)
    return mod is None or importlib.util.find_spec(mod) is not None
