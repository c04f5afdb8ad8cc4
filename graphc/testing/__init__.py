"""Property tests of derivatives for users' own ops: `verify_grad` (PyTensor), `check_grads`
(JAX) and hypothesis strategies for graphs and input arrays (`graphc.testing.strategies`,
which needs hypothesis: ``pip install graphc[testing]``).

>>> import numpy as np, graphc as gc
>>> from graphc import testing
>>> testing.verify_grad(lambda x, y: gc.tanh(x) * y, [np.ones((2, 3)), np.full((2, 3), 0.5)])
>>> testing.check_grads(lambda x: gc.exp(x).sum(), [np.zeros(3)], order=2)
"""

from __future__ import annotations

from .grads import GradientError, check_grads, verify_grad

__all__ = ["GradientError", "check_grads", "strategies", "verify_grad"]


def __getattr__(name: str):
    # imported on first use, so `graphc.testing` itself works without hypothesis
    if name == "strategies":
        import importlib

        return importlib.import_module(".strategies", __name__)
    raise AttributeError(f"module 'graphc.testing' has no attribute {name!r}")
