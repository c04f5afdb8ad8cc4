"""Layers with Keras' names and behaviour. Each layer emits graph ops; weights are shared variables.

A layer builds its weights on first call, from the input's static shape (the batch dimension
may be None). ``layer(x, training=True)`` builds the training graph (dropout active, batch norm
on batch statistics, running-average updates in ``layer.updates``); ``training=False`` builds
the inference graph. Both graphs share the same weights.

>>> import graphc as gc
>>> from graphc.nn import Dense, Sequential
>>> x = gc.placeholder("x", (None, 784))
>>> h = Dense(128, activation="relu")(x)          # functional style
>>> h.shape
(None, 128)
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Sequence

import numpy as np

from .. import ops
from ..core import SharedVar, Var, placeholder, shape_error, shared
from ..ops import as_var
from . import init as initializers

_layer_ids: dict[str, itertools.count] = {}
_seed_ids = itertools.count(1)

ACTIVATIONS: dict[str, Callable[[Var], Var]] = {
    "linear": lambda x: x, "relu": ops.relu, "sigmoid": ops.sigmoid, "tanh": ops.tanh, "softplus": ops.softplus,
    "elu": ops.elu, "leaky_relu": ops.leaky_relu, "softmax": ops.softmax, "exp": ops.exp,
}


#: Var -> its (batch, time) bool mask, set by Embedding(mask_zero=True) and passed on by layers
#: that support masking (Keras' mask propagation); recurrent layers skip the padded steps
_MASKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def mask_of(x: Var) -> Var | None:
    """The (batch, time) mask attached to `x` (True where a step is real), or None."""
    return _MASKS.get(x)


def set_mask(x: Var, mask: Var | None) -> Var:
    """Attach `mask` to `x` (for layers that produce or pass on masks); returns `x`."""
    if mask is not None:
        _MASKS[x] = mask
    return x


def get_activation(activation) -> Callable[[Var], Var]:
    """An activation by Keras name, a callable, or None (identity)."""
    if activation is None:
        return ACTIVATIONS["linear"]
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[activation]


def Input(shape, dtype: str = "float32", name: str = "input") -> Var:  # noqa: N802 - Keras' name
    """A placeholder for a batch of inputs of `shape` (the batch dimension is added, None).

    >>> Input((784,)).shape
    (None, 784)
    """
    return placeholder(name, (None, *tuple(shape)), dtype)


class Layer:
    """Base class: `params` (trainable shared variables), `state` (non-trainable ones),
    `updates` (state updates made by the last training call)."""

    #: pass the input's mask on to the output (Keras' supports_masking)
    supports_masking = False

    def __init__(self, name: str | None = None, seed: int | None = None):
        kind = type(self).__name__.lower()
        self.name = name or f"{kind}_{next(_layer_ids.setdefault(kind, itertools.count(1)))}"
        self.params: list[SharedVar] = []
        self.state: list[SharedVar] = []
        self.updates: list[tuple[SharedVar, Var]] = []
        self.built = False
        self.input_shape: tuple | None = None
        self.output_shape: tuple | None = None
        self.rng = np.random.default_rng(seed if seed is not None else next(_seed_ids))

    def build(self, input_shape: tuple) -> None:
        """Create the weights for inputs of `input_shape` (batch dimension included)."""

    def call(self, x: Var, training: bool) -> Var:
        raise NotImplementedError

    def __call__(self, x, training: bool = False) -> Var:
        x = as_var(x) if not isinstance(x, Var) else x
        if not self.built:
            self.input_shape = x.shape
            self.build(x.shape)
            self.built = True
        elif not _compatible(self.input_shape, x.shape):
            raise shape_error(self.name, f"was built for inputs of shape {self.input_shape}, got {x.shape}")
        out = self.call(x, training)
        self.output_shape = out.shape
        if self.supports_masking and isinstance(out, Var):
            set_mask(out, mask_of(x))
        record_call(out, self, (x,))
        return out

    def add_weight(self, name: str, shape: tuple, initializer="zeros", trainable: bool = True) -> SharedVar:
        value = initializers.get(initializer)(tuple(shape), self.rng)
        w = shared(np.asarray(value, "float32"), name=f"{self.name}/{name}")
        (self.params if trainable else self.state).append(w)
        # the layer-relative name, for checkpoint keys that do not depend on `self.name` (which
        # comes from a process-global counter and changes when the same model is built again)
        self.__dict__.setdefault("_weight_keys", {})[id(w)] = name
        return w

    def named_weights(self, prefix: str = "") -> list[tuple[str, SharedVar]]:
        """(key, variable) for every weight, keyed by structure, as PyTorch's ``state_dict``:
        ``"kernel"`` for a layer, ``"layers.0.kernel"`` inside a Sequential. The keys are the
        same each time the same architecture is built, so checkpoints resume in one process.

        >>> Sequential([Dense(2), Dense(1)], input_shape=(3,)).named_weights()[2][0]
        'layers.1.kernel'
        """
        keys = self.__dict__.get("_weight_keys", {})
        return [(prefix + keys.get(id(w), w.name), w) for w in self.params + self.state]

    def count_params(self) -> int:
        return int(sum(np.prod(w.shape) for w in self.params + self.state))

    @property
    def weights(self) -> list[SharedVar]:
        return self.params + self.state

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


# Which layer call produced a Var, so that `graphc.nn.Model(inputs, outputs)` can replay the
# calls on new inputs (Keras' functional API). Keyed by id with a weak reference to check that the
# id still names the same Var: Vars overload ==, so they cannot be dictionary keys themselves.
_history: dict[int, tuple] = {}


def record_call(out: Var, layer: Layer, inputs: tuple) -> None:
    """Remember that ``layer(*inputs)`` produced `out` (for `Model`)."""
    if len(_history) > 200_000:  # drop entries whose Var is gone
        for k in [k for k, v in _history.items() if v[0]() is None]:
            del _history[k]
    _history[id(out)] = (weakref.ref(out), layer, tuple(inputs))


def producer(v: Var) -> tuple | None:
    """``(layer, inputs)`` of the layer call that produced `v`, or None."""
    entry = _history.get(id(v))
    if entry is None or entry[0]() is not v:
        return None
    return entry[1], entry[2]


def _compatible(a, b) -> bool:
    return a is not None and len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a[1:], b[1:]))


class Dense(Layer):
    """``activation(x @ W + b)``. Weights (in, units) with Glorot-uniform init, bias zeros.

    >>> d = Dense(256); _ = d(Input((784,))); d.count_params()
    200960
    """

    supports_masking = True

    def __init__(self, units: int, activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", name: str | None = None, seed: int | None = None):
        super().__init__(name, seed)
        if not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        self.units, self.activation = int(units), get_activation(activation)
        self.activation_name = activation if isinstance(activation, str) else getattr(activation, "__name__", None)
        self.use_bias, self.kernel_initializer, self.bias_initializer = use_bias, kernel_initializer, bias_initializer

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise shape_error(self.name, f"the last input dimension must be static, got {input_shape}")
        self.kernel = self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer)
        self.bias = self.add_weight("bias", (self.units,), self.bias_initializer) if self.use_bias else None

    def call(self, x, training):
        y = ops.matmul(x, self.kernel)
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y)


class Activation(Layer):
    """Apply an activation by name ("relu", "tanh", ...) or callable."""

    supports_masking = True

    def __init__(self, activation, name: str | None = None):
        super().__init__(name)
        self.activation = get_activation(activation)

    def call(self, x, training):
        return self.activation(x)


class Flatten(Layer):
    """Collapse every axis but the batch axis: (N, a, b, ...) -> (N, a*b*...)."""

    def call(self, x, training):
        rest = x.shape[1:]
        if any(d is None for d in rest):
            raise shape_error(self.name, f"only the batch dimension may be unknown, got {x.shape}")
        return ops.reshape(x, (-1, int(np.prod(rest, dtype=np.int64))))


class Dropout(Layer):
    """Zero a fraction `rate` of the inputs in training (scaling the rest by 1/(1-rate));
    the identity at evaluation. Each layer draws from its own Philox stream (its seed)."""

    supports_masking = True

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None):
        super().__init__(name, seed)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = seed if seed is not None else 7919 * next(_seed_ids)

    def call(self, x, training):
        if not training or self.rate == 0.0:
            return x
        keep = ops.random.bernoulli(1.0 - self.rate, like=x, seed=self.seed, dtype=x.dtype)
        return x * keep * (1.0 / (1.0 - self.rate))


class BatchNormalization(Layer):
    """Normalise each feature (axis -1 for 2-D inputs, the channel axis 1 for 4-D NCHW) with the
    batch's mean and (biased) variance in training, and backprop through them; at evaluation use
    the moving averages, which training calls update: ``m <- momentum*m + (1-momentum)*batch``
    (Keras' convention)."""

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 axis: int | None = None, name: str | None = None):
        super().__init__(name)
        self.momentum, self.epsilon, self.center, self.scale, self.axis = momentum, epsilon, center, scale, axis

    def build(self, input_shape):
        nd = len(input_shape)
        self.feature_axis = self.axis if self.axis is not None else (1 if nd == 4 else nd - 1)
        self.feature_axis %= nd
        c = input_shape[self.feature_axis]
        if c is None:
            raise shape_error(self.name, f"the feature axis must be static, got {input_shape}")
        self.reduce_axes = tuple(a for a in range(nd) if a != self.feature_axis)
        self.bshape = tuple(c if a == self.feature_axis else 1 for a in range(nd))
        self.gamma = self.add_weight("gamma", (c,), "ones") if self.scale else None
        self.beta = self.add_weight("beta", (c,), "zeros") if self.center else None
        self.moving_mean = self.add_weight("moving_mean", (c,), "zeros", trainable=False)
        self.moving_variance = self.add_weight("moving_variance", (c,), "ones", trainable=False)

    def call(self, x, training):
        if training:
            mean = ops.mean(x, self.reduce_axes, keepdims=True)
            var = ops.mean(ops.square(x - mean), self.reduce_axes, keepdims=True)
            m = self.momentum
            self.updates = [
                (self.moving_mean, self.moving_mean * m + ops.reshape(mean, (-1,)) * (1.0 - m)),
                (self.moving_variance, self.moving_variance * m + ops.reshape(var, (-1,)) * (1.0 - m)),
            ]
        else:
            mean = ops.reshape(self.moving_mean, self.bshape)
            var = ops.reshape(self.moving_variance, self.bshape)
        y = (x - mean) / ops.sqrt(var + self.epsilon)
        if self.gamma is not None:
            y = y * ops.reshape(self.gamma, self.bshape)
        if self.beta is not None:
            y = y + ops.reshape(self.beta, self.bshape)
        return y


class Embedding(Layer):
    """Map integer ids in [0, input_dim) to rows of a (input_dim, output_dim) table."""

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="uniform", mask_zero: bool = False,
                 name: str | None = None, seed: int | None = None):
        super().__init__(name, seed)
        self.input_dim, self.output_dim, self.initializer = int(input_dim), int(output_dim), embeddings_initializer
        #: id 0 is padding: the output carries a mask that recurrent layers skip (Keras)
        self.mask_zero = bool(mask_zero)

    def build(self, input_shape):
        self.embeddings = self.add_weight("embeddings", (self.input_dim, self.output_dim), self.initializer)

    def call(self, x, training):
        if not x.dtype.startswith("int"):
            x = ops.cast(x, "int32")
        out = ops.take(self.embeddings, x, axis=0)
        return set_mask(out, ops.not_equal(x, 0)) if self.mask_zero else out


class Sequential(Layer):
    """A stack of layers applied in order. ``model(x, training=...)``, ``model.params``,
    ``model.summary()``; training with `graphc.train.fit` (or ``model.fit``).

    >>> m = Sequential([Dense(256, activation="relu"), Dense(10)], input_shape=(784,))
    >>> m.count_params()
    203530
    """

    def __init__(self, layers: Sequence[Layer] = (), input_shape: tuple | None = None, name: str | None = None):
        super().__init__(name)
        self.layers = list(layers)
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential takes layers, got {type(layer).__name__}")
        if input_shape is not None:
            self(placeholder(f"{self.name}_input", (None, *tuple(input_shape))))

    def add(self, layer: Layer) -> None:
        self.layers.append(layer)
        self.built = False

    def build(self, input_shape):
        pass

    def call(self, x, training):
        updates = []
        for layer in self.layers:
            x = layer(x, training=training)
            updates += layer.updates if training else []
        self.updates = updates
        return x

    @property
    def params(self) -> list[SharedVar]:
        return [p for layer in self.layers for p in layer.params]

    @params.setter
    def params(self, value):  # Layer.__init__ assigns []; the list is derived from the layers
        pass

    @property
    def state(self) -> list[SharedVar]:
        return [s for layer in self.layers for s in layer.state]

    @state.setter
    def state(self, value):
        pass

    def named_weights(self, prefix: str = "") -> list[tuple[str, SharedVar]]:
        """The layers' weights keyed ``layers.<i>.<weight>`` (see `Layer.named_weights`)."""
        return [kv for i, layer in enumerate(self.layers) for kv in layer.named_weights(f"{prefix}layers.{i}.")]

    def summary(self, print_fn=print) -> str:
        """Print (and return) a Keras-like table: layer, output shape, parameter count."""
        if not all(layer.built for layer in self.layers) or not self.layers:
            raise ValueError(f"{self.name}: call the model on an input first, or pass input_shape=...")
        rows = [(f"{layer.name} ({type(layer).__name__})", str(layer.output_shape).replace("None", "None"),
                 f"{layer.count_params():,}") for layer in self.layers]
        w0 = max(28, *(len(r[0]) for r in rows)) + 2
        w1 = max(20, *(len(r[1]) for r in rows)) + 2
        line = "=" * (w0 + w1 + 12)
        out = [f'Model: "{self.name}"', line, f"{'Layer (type)':<{w0}}{'Output Shape':<{w1}}{'Param #':>10}", line]
        out += [f"{a:<{w0}}{b:<{w1}}{c:>10}" for a, b, c in rows]
        trainable = int(sum(np.prod(p.shape) for p in self.params))
        frozen = int(sum(np.prod(s.shape) for s in self.state))
        out += [line, f"Total params: {trainable + frozen:,}", f"Trainable params: {trainable:,}",
                f"Non-trainable params: {frozen:,}", line]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    def fit(self, x, y, **kwargs):
        """Train with `graphc.train.fit` (see there for the arguments)."""
        from ..train import fit

        return fit(self, x, y, **kwargs)
