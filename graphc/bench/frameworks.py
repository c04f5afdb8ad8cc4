"""The contenders: which frameworks `graphc bench` knows, how inputs reach each of them, and the
small helpers its twins are written with (PyTorch eager or ``torch.compile``, ``jax.jit``,
``pytensor.function`` in PyTensor's default mode or its C VM).

PyTorch, JAX and PyTensor are imported only inside these functions: the parent process never
imports them (their thread pools would contend with graphc's and NumPy's), only the child
processes do.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import sysconfig

import numpy as np

FRAMEWORKS = ("graphc", "numpy", "torch", "torch_compile", "jax", "pytensor", "pytensor_cvm")
LABELS = {"graphc": "graphc", "numpy": "NumPy", "torch": "PyTorch", "torch_compile": "torch.compile", "jax": "JAX",
          "pytensor": "PyTensor", "pytensor_cvm": "PyTensor C VM"}
# The frameworks whose child process may run in the twins interpreter (`make twins`: Python 3.12
# with JAX 0.12 and PyTensor 3.3, which the main venv's Python may be too old for).
TWINS = ("jax", "pytensor", "pytensor_cvm")
MODULES = {"torch": "torch", "torch_compile": "torch", "jax": "jax", "pytensor": "pytensor",
           "pytensor_cvm": "pytensor"}
# The `mode` each PyTensor framework compiles with: None is PyTensor's default (Numba in 3.x);
# "CVM" is the C VM, whose ops are g++-compiled C thunks (its gemms need a BLAS to link).
PYTENSOR_MODES = {"pytensor": None, "pytensor_cvm": "CVM"}


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


def pytensor_training_step(inputs, loss, params, lr: float, adam: dict | None, mode: str | None):
    """One compiled PyTensor function (in `mode`, see `pytensor_function`): the loss, and SGD or
    PyTorch's Adam (`adam` gives ``beta1``, ``beta2``, ``eps``) as shared-variable updates of the
    shared `params`; returns (``fn(*inputs) -> loss``, ``state() -> the parameters``)."""
    import pytensor
    import pytensor.tensor as pt

    grads = pytensor.grad(loss, params)
    if adam is None:
        updates = [(p, p - np.float32(lr) * g) for p, g in zip(params, grads)]
    else:
        b1, b2, eps = adam["beta1"], adam["beta2"], adam["eps"]
        k = pytensor.shared(np.float64(0), name="k")
        k1 = k + 1
        step_size = pt.cast(lr / (1 - b1**k1), "float32")
        inv_bc2 = pt.cast(1 / pt.sqrt(1 - b2**k1), "float32")
        updates = [(k, k1)]
        for p, g in zip(params, grads):
            m = pytensor.shared(np.zeros_like(p.get_value()))
            v = pytensor.shared(np.zeros_like(p.get_value()))
            m1 = np.float32(b1) * m + np.float32(1 - b1) * g
            v1 = np.float32(b2) * v + np.float32(1 - b2) * g * g
            updates += [(m, m1), (v, v1), (p, p - step_size * m1 / (pt.sqrt(v1) * inv_bc2 + np.float32(eps)))]
    f = pytensor_function(inputs, loss, mode, updates=updates)
    return f, lambda: [p.get_value().copy() for p in params]


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
        elif framework in PYTENSOR_MODES:
            import pytensor.tensor as pt

            self.tanh, self.sigmoid, self.exp = pt.tanh, pt.sigmoid, pt.exp
        else:
            import torch

            self.tanh, self.sigmoid, self.exp = torch.tanh, torch.sigmoid, torch.exp


# Per compiled PyTensor function of this process: its linker and, in the C VM, which nodes run C
# thunks (a node without a C implementation, or a gemm without a BLAS to link, runs Python).
PYTENSOR_THUNKS: list[dict] = []


def pytensor_function(inputs, outputs, mode: str | None, updates=None):
    """``pytensor.function`` in `mode` (None: PyTensor's default), recording its thunks in
    PYTENSOR_THUNKS (the report says what the C VM really ran)."""
    import pytensor

    kw = {} if mode is None else {"mode": mode}
    f = pytensor.function(inputs, outputs, updates=updates, **kw)
    PYTENSOR_THUNKS.append(thunk_census(f))
    return f


def thunk_census(f) -> dict:
    """A compiled PyTensor function's linker, and for a VM (the C VM) how many of its nodes run a
    C thunk, the ops of those that run Python (their ``perform``) and how many are Scan loops
    (Cython, stepping an inner function whose nodes are counted too)."""
    out: dict = {"linker": type(f.maker.linker).__name__}
    vm = getattr(f, "vm", None)
    if vm is not None and hasattr(vm, "thunks"):
        tally: dict = {"c_thunks": 0, "py_thunks": set(), "scans": 0}
        _vm_census(vm, tally)
        out.update(tally, py_thunks=sorted(tally["py_thunks"]))
    return out


def _vm_census(vm, tally: dict) -> None:
    for node, thunk in zip(vm.nodes, vm.thunks):
        inner = getattr(getattr(node.op, "_fn", None), "vm", None)  # Scan's compiled inner function
        if inner is not None and hasattr(inner, "thunks"):
            tally["scans"] += 1
            _vm_census(inner, tally)
        elif hasattr(thunk, "cthunk"):  # COp.make_c_thunk's thunks carry the C function
            tally["c_thunks"] += 1
        else:
            tally["py_thunks"].add(str(node.op))


def openblas_library(dirs: list[str] | None = None) -> str | None:
    """The ``libopenblas.so`` that ``-lopenblas`` links (the unversioned name Debian's
    libopenblas-dev installs), searched in `dirs` (default: the system library directories), or
    None.

    >>> openblas_library(["/nonexistent"]) is None
    True
    """
    if dirs is None:
        arch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
        dirs = [f"/usr/lib/{arch}", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
    for d in dirs:
        path = os.path.join(d, "libopenblas.so")
        if os.path.exists(path):
            return path
    return None


def pytensor_flags(fw: str, flags: str, library: str | None) -> tuple[str, str | None]:
    """``PYTENSOR_FLAGS`` for PyTensor framework `fw`'s child, from the inherited `flags`, and (for
    the C VM) how its BLAS was chosen. Both get floatX=float32 unless `flags` sets it (a float
    literal would otherwise make float64 of a float32 graph); the C VM also gets ``blas__ldflags``
    linking `library` (an OpenBLAS found by `openblas_library`) unless the user set one. Without
    either, PyTensor warns and runs its gemms as Python thunks on NumPy's BLAS.

    >>> pytensor_flags("pytensor_cvm", "", "/opt/ob/libopenblas.so")
    ('floatX=float32,blas__ldflags=-L/opt/ob -lopenblas', 'OpenBLAS /opt/ob/libopenblas.so')
    >>> pytensor_flags("pytensor_cvm", "blas__ldflags=-lmkl_rt", "/opt/ob/libopenblas.so")[1]
    'blas__ldflags=-lmkl_rt (from PYTENSOR_FLAGS)'
    >>> pytensor_flags("pytensor", "floatX=float64", "/opt/ob/libopenblas.so")
    ('floatX=float64', None)
    """
    parts = [p.strip() for p in flags.split(",") if p.strip()]
    keys = {p.split("=", 1)[0].strip() for p in parts}
    if "floatX" not in keys:
        parts.insert(0, "floatX=float32")
    if fw != "pytensor_cvm":  # Numba does its own BLAS calls: no C code to link
        return ",".join(parts), None
    if "blas__ldflags" in keys:
        given = [p for p in parts if p.split("=", 1)[0].strip() == "blas__ldflags"][-1]
        return ",".join(parts), f"{given} (from PYTENSOR_FLAGS)"
    if library is None:
        return ",".join(parts), "none found (no libopenblas.so): gemms run as Python thunks on NumPy's BLAS"
    # no -rpath (PYTENSOR_FLAGS splits on commas, and -Wl,-rpath has them): openblas_library
    # searches only the directories that the dynamic loader searches too
    parts.append(f"blas__ldflags=-L{os.path.dirname(library)} -lopenblas")
    return ",".join(parts), f"OpenBLAS {library}"


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
