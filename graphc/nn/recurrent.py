"""Recurrent layers with Keras' names, defaults and weight layout, each one `gc.scan` over time.

Inputs are ``(batch, time, features)``. The input projection ``x @ kernel + bias`` of every step
is one batched product before the loop (it does not depend on the state), so the loop body holds
only the recurrent product and the gate arithmetic. Weights: ``kernel`` (features, k*units),
``recurrent_kernel`` (units, k*units) and ``bias``, gates in Keras' order (LSTM: i, f, c, o;
GRU: z, r, h with ``reset_after=True``, whose bias is (2, 3*units): input and recurrent bias).

Dropout follows Keras: one mask per sequence (the same for every step), on the inputs
(`dropout`) and on the state fed back (`recurrent_dropout`), only when ``training=True``.
Masking: when the input carries a mask (``Embedding(mask_zero=True)``), padded steps carry the
state and the output unchanged.

>>> import graphc as gc
>>> x = gc.placeholder("x", (None, 10, 8))
>>> gc.nn.LSTM(16, return_sequences=True)(x).shape
(None, 10, 16)
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..core import Var, constant, shape_error
from .layers import Layer, get_activation, mask_of, set_mask


class RNN(Layer):
    """Base of the recurrent layers: argument checks, weights, dropout masks, masking, the scan.

    Subclasses set `gates` (blocks of `units` in kernel's columns) and `n_states`, and implement
    `cell(xw_t, states, training_masks)` returning ``(output, new_states)``.
    """

    gates = 1
    n_states = 1

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 dropout: float = 0.0, recurrent_dropout: float = 0.0, return_sequences: bool = False,
                 return_state: bool = False, go_backwards: bool = False, name: str | None = None,
                 seed: int | None = None):
        super().__init__(name, seed)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"{type(self).__name__}: units must be a positive int, got {units!r}")
        for what, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= float(rate) < 1.0:
                raise ValueError(f"{type(self).__name__}: {what} must be in [0, 1), got {rate!r}")
        self.units = int(units)
        self.activation = get_activation(activation)
        self.recurrent_activation = get_activation(recurrent_activation)
        self.use_bias = use_bias
        self.kernel_initializer, self.recurrent_initializer = kernel_initializer, recurrent_initializer
        self.bias_initializer = bias_initializer
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.return_sequences, self.return_state, self.go_backwards = return_sequences, return_state, go_backwards
        self.config = dict(units=units, activation=activation, recurrent_activation=recurrent_activation,
                           use_bias=use_bias, kernel_initializer=kernel_initializer,
                           recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                           dropout=dropout, recurrent_dropout=recurrent_dropout, return_sequences=return_sequences,
                           return_state=return_state, go_backwards=go_backwards)

    # -- weights -------------------------------------------------------------------------------
    def build(self, input_shape):
        if len(input_shape) != 3:
            raise shape_error(self.name, f"expects inputs of shape (batch, time, features), got {input_shape}")
        if input_shape[-1] is None:
            raise shape_error(self.name, f"the feature dimension must be static, got {input_shape}")
        g = self.gates * self.units
        self.kernel = self.add_weight("kernel", (input_shape[-1], g), self.kernel_initializer)
        blocks = [self.add_recurrent_block(j) for j in range(self.gates)]
        self.recurrent_kernel = self.add_weight("recurrent_kernel", (self.units, g), "zeros")
        self.recurrent_kernel.set_value(np.concatenate(blocks, axis=1))
        self.bias = self.make_bias() if self.use_bias else None

    def add_recurrent_block(self, j: int) -> np.ndarray:
        # Keras initialises each gate's (units, units) block on its own (orthogonal per block)
        from . import init as initializers

        return np.asarray(initializers.get(self.recurrent_initializer)((self.units, self.units), self.rng), "float32")

    def make_bias(self):
        return self.add_weight("bias", (self.gates * self.units,), self.bias_initializer)

    # -- the layer -----------------------------------------------------------------------------
    def __call__(self, x, training: bool = False, initial_state=None, mask=None):
        out = super().__call__(x, training) if initial_state is None and mask is None else \
            self._call_with(x, training, initial_state, mask)
        return out

    def _call_with(self, x, training, initial_state, mask):
        x = x if isinstance(x, Var) else constant(np.asarray(x, "float32"))
        if not self.built:
            self.input_shape = x.shape
            self.build(x.shape)
            self.built = True
        return self._run(x, training, initial_state, mask)

    def call(self, x, training):
        return self._run(x, training, None, None)

    def input_projection(self, x_tm: Var) -> Var:
        """``x @ kernel (+ bias)`` for every step at once (time-major in and out)."""
        xw = ops.matmul(x_tm, self.kernel)
        return xw + self.bias if self.bias is not None and self.bias.ndim == 1 else xw

    def _run(self, x, training, initial_state, mask):
        if x.ndim != 3:
            raise shape_error(self.name, f"expects inputs of shape (batch, time, features), got {x.shape}")
        if not x.dtype.startswith("float"):
            raise shape_error(self.name, f"expects float inputs, got {x.dtype}")
        mask = mask if mask is not None else mask_of(x)
        x_tm = ops.transpose(x, (1, 0, 2))  # (time, batch, features)
        first = x_tm[0]  # (batch, features): the batch size at call time
        if training and self.dropout > 0:
            keep = ops.random.bernoulli(1 - self.dropout, like=first, seed=int(self.rng.integers(2**31)))
            x_tm = x_tm * (keep / (1 - self.dropout))
        xw = self.input_projection(x_tm)
        zero_state = ops.zeros_like(first[:, :1]) * constant(np.zeros(self.units, x.dtype))
        states = self._initial_states(initial_state, zero_state)
        rec_mask = None
        if training and self.recurrent_dropout > 0:
            rec_mask = ops.random.bernoulli(1 - self.recurrent_dropout, like=zero_state,
                                            seed=int(self.rng.integers(2**31))) / (1 - self.recurrent_dropout)
        seqs = [xw]
        if mask is not None:
            if mask.ndim != 2:
                raise shape_error(self.name, f"a mask has shape (batch, time), got {mask.shape}")
            seqs.append(ops.transpose(ops.cast(mask, "bool"), (1, 0)))

        def step(*args):
            xw_t = args[0]
            m_t = args[1] if mask is not None else None
            prev = list(args[len(seqs):len(seqs) + self.n_states])
            fed = [p * rec_mask for p in prev] if rec_mask is not None else prev
            _, new = self.cell(xw_t, prev, fed)  # the output is the first state (h)
            if m_t is not None:  # padded steps carry the state and repeat the last output
                keep_t = ops.expand_dims(m_t, 1)
                new = [ops.where(keep_t, n, p) for n, p in zip(new, prev)]
            return tuple(new)

        results = ops.scan(step, sequences=seqs, outputs_info=states, go_backwards=self.go_backwards)
        results = results if isinstance(results, list) else [results]
        hs = results[0]
        output = ops.transpose(hs, (1, 0, 2)) if self.return_sequences else hs[-1]
        if self.return_sequences and mask is not None:
            set_mask(output, mask)
        if self.return_state:
            return [output] + [r[-1] for r in results]
        return output

    def _initial_states(self, initial_state, zero_state):
        if initial_state is None:
            return [zero_state] * self.n_states
        given = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if len(given) != self.n_states:
            raise ValueError(f"{self.name}: initial_state needs {self.n_states} tensor(s), got {len(given)}")
        out = []
        for s in given:
            s = s if isinstance(s, Var) else constant(np.asarray(s, "float32"))
            if s.ndim != 2 or (s.shape[1] is not None and s.shape[1] != self.units):
                raise shape_error(self.name, f"an initial state has shape (batch, {self.units}), got {s.shape}")
            out.append(s)
        return out

    def cell(self, xw_t: Var, prev: list[Var], fed: list[Var]) -> tuple[Var, list[Var]]:
        raise NotImplementedError


class SimpleRNN(RNN):
    """``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)`` (Keras' SimpleRNN)."""

    def cell(self, xw_t, prev, fed):
        h = self.activation(xw_t + ops.matmul(fed[0], self.recurrent_kernel))
        return h, [h]


class LSTM(RNN):
    """Keras' LSTM (gates i, f, c, o; ``unit_forget_bias=True`` sets the forget bias to 1).
    States: [h, c]; ``return_state=True`` returns ``[output, h, c]``."""

    gates = 4
    n_states = 2

    def __init__(self, units: int, unit_forget_bias: bool = True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = unit_forget_bias
        self.config["unit_forget_bias"] = unit_forget_bias

    def make_bias(self):
        b = self.add_weight("bias", (4 * self.units,), self.bias_initializer)
        if self.unit_forget_bias:
            value = b.get_value()
            value[self.units:2 * self.units] = 1.0
            b.set_value(value)
        return b

    def cell(self, xw_t, prev, fed):
        z = xw_t + ops.matmul(fed[0], self.recurrent_kernel)
        zi, zf, zg, zo = ops.split(z, [self.units] * 4, axis=-1)  # one kernel; its gradient one concatenate
        i, f, o = (self.recurrent_activation(v) for v in (zi, zf, zo))
        g = self.activation(zg)
        c = f * prev[1] + i * g
        h = o * self.activation(c)
        return h, [h, c]


class GRU(RNN):
    """Keras 2's GRU with ``reset_after=True`` (PyTorch's formulation): gates z, r, h;
    ``h_t = z * h_{t-1} + (1 - z) * tanh(x_h + r * (h_{t-1} @ U_h + b_rh))``."""

    gates = 3

    def __init__(self, units: int, reset_after: bool = True, **kwargs):
        if not reset_after:
            raise NotImplementedError("GRU: only reset_after=True (Keras 2's default, PyTorch's form) is built")
        super().__init__(units, **kwargs)
        self.reset_after = True
        self.config["reset_after"] = True

    def make_bias(self):
        return self.add_weight("bias", (2, 3 * self.units), self.bias_initializer)

    def input_projection(self, x_tm):
        xw = ops.matmul(x_tm, self.kernel)
        return xw + self.bias[0] if self.bias is not None else xw

    def cell(self, xw_t, prev, fed):
        rec = ops.matmul(fed[0], self.recurrent_kernel)
        if self.bias is not None:
            rec = rec + self.bias[1]
        xz, xr, xh = ops.split(xw_t, [self.units] * 3, axis=-1)
        rz, rr, rh = ops.split(rec, [self.units] * 3, axis=-1)
        z = self.recurrent_activation(xz + rz)
        r = self.recurrent_activation(xr + rr)
        hh = self.activation(xh + r * rh)
        h = z * prev[0] + (1.0 - z) * hh
        return h, [h]


class Bidirectional(Layer):
    """Runs `layer` forwards and a copy of it backwards, and merges the two outputs
    (``merge_mode``: "concat", "sum", "mul", "ave" or None for a list). With
    ``return_sequences`` the backward outputs are put back in forward time order (Keras)."""

    MERGES = ("concat", "sum", "mul", "ave", None)

    def __init__(self, layer: RNN, merge_mode: str | None = "concat", name: str | None = None):
        if not isinstance(layer, RNN):
            raise TypeError(f"Bidirectional wraps a recurrent layer, got {type(layer).__name__}")
        if merge_mode not in self.MERGES:
            raise ValueError(f"Bidirectional: merge_mode must be one of {self.MERGES}, got {merge_mode!r}")
        super().__init__(name or f"bidirectional_{layer.name}")
        self.forward_layer = layer
        cfg = dict(layer.config, go_backwards=not layer.go_backwards)
        self.backward_layer = type(layer)(name=f"backward_{layer.name}", seed=int(layer.rng.integers(2**31)), **cfg)
        self.merge_mode = merge_mode

    def build(self, input_shape):
        pass

    def __call__(self, x, training: bool = False, initial_state=None, mask=None):
        if not isinstance(x, Var):
            x = constant(np.asarray(x, "float32"))
        self.input_shape = x.shape
        n = self.forward_layer.n_states
        fw_init = bw_init = None
        if initial_state is not None:
            if len(initial_state) != 2 * n:
                raise ValueError(f"{self.name}: initial_state needs {2 * n} tensors (forward, then backward)")
            fw_init, bw_init = list(initial_state[:n]), list(initial_state[n:])
        fw = self.forward_layer(x, training, initial_state=fw_init, mask=mask)
        bw = self.backward_layer(x, training, initial_state=bw_init, mask=mask)
        self.built = True
        self.params = self.forward_layer.params + self.backward_layer.params
        self.state = self.forward_layer.state + self.backward_layer.state
        states = []
        if self.forward_layer.return_state:
            fw, states = fw[0], fw[1:] + bw[1:]
            bw = bw[0]
        if self.forward_layer.return_sequences:
            bw = bw[:, ::-1]
        out = self._merge(fw, bw)
        self.output_shape = out.shape if isinstance(out, Var) else None
        return [out, *states] if states else out

    def call(self, x, training):
        return self(x, training)

    def _merge(self, fw, bw):
        if self.merge_mode == "concat":
            return ops.concatenate([fw, bw], axis=-1)
        if self.merge_mode == "sum":
            return fw + bw
        if self.merge_mode == "mul":
            return fw * bw
        if self.merge_mode == "ave":
            return (fw + bw) * 0.5
        return [fw, bw]
