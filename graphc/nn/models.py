"""Keras' functional `Model` (several inputs and outputs) and the small layers generative models need.

A `Model` is built from placeholders and the layer calls that lead to its outputs; calling it
on new Vars replays those calls (with the same weights), so an encoder and a decoder trained
inside a VAE can be used on their own afterwards:

>>> import graphc as gc
>>> from graphc.nn import Dense, Input, Model, Reshape
>>> x = Input((784,))
>>> encoder = Model(x, Dense(32, activation="relu")(x))
>>> z = Input((32,))
>>> decoder = Model(z, Reshape((1, 28, 28))(Dense(784)(z)))
>>> decoder(encoder(gc.placeholder("batch", (None, 784)))).shape
(None, 1, 28, 28)
>>> encoder.count_params() + decoder.count_params()
50992
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .. import ops
from ..core import SharedVar, Var, shape_error, unique
from ..ops import as_var
from ..runtime import Placeholder
from .layers import Layer, _compatible, producer, record_call


class Reshape(Layer):
    """Reshape each example to `target_shape` (the batch axis is kept; one -1 is allowed).

    >>> import graphc as gc
    >>> Reshape((1, 28, 28))(gc.placeholder("x", (None, 784))).shape
    (None, 1, 28, 28)
    """

    def __init__(self, target_shape: Sequence[int], name: str | None = None):
        super().__init__(name)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1 or any(d == 0 or d < -1 for d in self.target_shape):
            raise ValueError(f"Reshape: target_shape must be positive sizes and at most one -1, got {target_shape}")

    def call(self, x, training):
        rest = x.shape[1:]
        if any(d is None for d in rest):
            raise shape_error(self.name, f"only the batch dimension may be unknown, got {x.shape}")
        n, want = int(np.prod(rest, dtype=np.int64)), int(np.prod(self.target_shape, dtype=np.int64))
        if (-1 not in self.target_shape and n != want) or (-1 in self.target_shape and n % -want):
            raise shape_error(self.name, f"cannot reshape {x.shape} to (batch, *{self.target_shape})")
        shape = tuple(n // -want if d == -1 else d for d in self.target_shape)
        return ops.reshape(x, (-1, *shape))


class LeakyReLU(Layer):
    """``max(x, alpha * x)``; Keras' default slope 0.3.

    >>> import graphc as gc
    >>> LeakyReLU(0.2)(gc.placeholder("x", (None, 3))).shape
    (None, 3)
    """

    def __init__(self, alpha: float = 0.3, name: str | None = None):
        super().__init__(name)
        if not 0.0 <= float(alpha) < 1.0:
            raise ValueError(f"LeakyReLU: alpha must be in [0, 1), got {alpha}")
        self.alpha = float(alpha)

    def call(self, x, training):
        return ops.leaky_relu(x, self.alpha)


class Lambda(Layer):
    """Wrap ``fn(x)`` (or ``fn(x1, x2, ...)`` when called on a list) as a layer, so that graph
    ops between layers are part of a functional `Model`. ``fn`` may take ``training=``.

    >>> import graphc as gc
    >>> a, b = gc.placeholder("a", (None, 2)), gc.placeholder("b", (None, 2))
    >>> Lambda(lambda u, v: u * v)([a, b]).shape
    (None, 2)
    """

    def __init__(self, fn: Callable[..., Var], name: str | None = None, pass_training: bool = False):
        super().__init__(name)
        if not callable(fn):
            raise TypeError(f"Lambda: fn must be callable, got {type(fn).__name__}")
        self.fn, self.pass_training = fn, pass_training

    def __call__(self, x, training: bool = False) -> Var:
        if not isinstance(x, (list, tuple)):
            return super().__call__(x, training)
        xs = tuple(v if isinstance(v, Var) else as_var(v) for v in x)
        out = self.fn(*xs, training=training) if self.pass_training else self.fn(*xs)
        self.built, self.output_shape = True, out.shape
        record_call(out, self, xs)
        return out

    def call(self, x, training):
        return self.fn(x, training=training) if self.pass_training else self.fn(x)


class Model(Layer):
    """Keras' functional model: ``Model(inputs, outputs)`` from placeholders (`Input`) and the
    layer calls that produce `outputs`. ``model(x)`` (or ``model([x1, x2])`` for several
    inputs) replays the calls on new Vars and returns one Var or a list, like `outputs`.
    Ops applied to Vars outside layers cannot be replayed: wrap them in `Lambda`.
    """

    def __init__(self, inputs, outputs, name: str | None = None):
        super().__init__(name)
        self.multi_in, self.multi_out = isinstance(inputs, (list, tuple)), isinstance(outputs, (list, tuple))
        self.inputs = list(inputs) if self.multi_in else [inputs]
        self.outputs = list(outputs) if self.multi_out else [outputs]
        for i, v in enumerate(self.inputs):
            if not isinstance(v, Placeholder):
                raise TypeError(f"Model: inputs[{i}] must be a placeholder (graphc.nn.Input), got {v!r}")
        self.nodes = self._trace()
        self.layers = []
        for layer, _, _ in self.nodes:
            if all(layer is not m for m in self.layers):
                self.layers.append(layer)
        self.built = True
        self.input_shape = self.inputs[0].shape

    def _trace(self) -> list[tuple]:
        known = {id(v) for v in self.inputs}
        order: list[tuple] = []
        done: set[int] = set(known)

        def visit(v: Var, path: tuple) -> None:
            if id(v) in done:
                return
            found = producer(v)
            if found is None:
                raise ValueError(f"Model {self.name}: {v!r} is not computed from the inputs by layer calls "
                                 f"(ops between layers must be wrapped in Lambda)")
            layer, ins = found
            for u in ins:
                visit(u, path + (layer.name,))
            order.append((layer, ins, v))
            done.add(id(v))

        for out in self.outputs:
            visit(out, ())
        return order

    def __call__(self, x, training: bool = False):
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(xs) != len(self.inputs):
            raise ValueError(f"Model {self.name}: expects {len(self.inputs)} inputs, got {len(xs)}")
        xs = [v if isinstance(v, Var) else as_var(v) for v in xs]
        for p, v in zip(self.inputs, xs):
            if not _compatible(p.shape, v.shape):
                raise shape_error(self.name, f"input {p.name!r} has shape {p.shape}, got {v.shape}")
        env = {id(p): v for p, v in zip(self.inputs, xs)}
        updates: list = []
        for layer, ins, out in self.nodes:
            args = [env[id(u)] for u in ins]
            multi = isinstance(layer, (Lambda, Model)) and (len(ins) > 1 or getattr(layer, "multi_in", False))
            new = layer(args if multi else args[0], training=training)
            updates += layer.updates if training else []
            env[id(out)] = new
        self.updates = updates
        result = [env[id(o)] for o in self.outputs]
        for r in result:
            record_call(r, self, tuple(xs))
        self.output_shape = result[0].shape
        return result if self.multi_out else result[0]

    def call(self, x, training):  # pragma: no cover - __call__ replays the nodes itself
        raise NotImplementedError

    @property
    def params(self) -> list[SharedVar]:
        return unique([p for layer in self.layers for p in layer.params])

    @params.setter
    def params(self, value):  # Layer.__init__ assigns []; the list is derived from the layers
        pass

    @property
    def state(self) -> list[SharedVar]:
        return unique([s for layer in self.layers for s in layer.state])

    @state.setter
    def state(self, value):
        pass

    def fit(self, x, y=None, **kwargs):
        """Train with `graphc.train.fit` (see there for the arguments)."""
        from ..train import fit

        return fit(self, x, y, **kwargs)

