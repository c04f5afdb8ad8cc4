"""Optimizers and learning-rate schedules, as graph updates.

An optimizer turns a loss and a list of shared parameters into the ``updates`` list of
`gc.function`: the new value of every parameter, of every optimizer slot (momentum buffers,
moment estimates) and of a step counter, each an expression of the values *before* the call
(Theano semantics). The whole training step therefore runs as one compiled call.

>>> import numpy as np, graphc as gc
>>> from graphc import optim
>>> x = gc.placeholder("x", (None, 3))
>>> W = gc.shared(np.ones((3, 1), "float32"), name="W")
>>> loss = gc.mean(gc.square(x @ W))
>>> opt = optim.Adam(lr=1e-3)
>>> step = gc.function([x], loss, updates=opt.updates(loss, [W]))
>>> float(step(np.ones((4, 3), "float32")))
9.0
>>> [s.name for s in opt.slots]
['Adam/iterations', 'W/m', 'W/v']
>>> opt.lr.set_value(1e-4)         # no recompilation: the learning rate is a shared scalar
>>> optim.set_lr(opt, 1e-4)        # the same; so is `opt.learning_rate = 1e-4`

Conventions (PyTorch's formulas unless said otherwise; g is the gradient after clipping,
t = 1, 2, ... the step number, all slots start at zero):

=================  ========================================================================
SGD                ``w -= lr * g``
SGD, momentum mu   ``b = mu*b + g;  w -= lr * b``  (PyTorch, dampening 0). With a constant lr
                   this is the notes' ``v = mu*v - lr*g;  w += v`` with ``v = -lr*b``; with a
                   changing lr PyTorch's form applies the new lr to the whole step at once.
Nesterov           ``b = mu*b + g;  w -= lr * (g + mu*b)``  (PyTorch ``nesterov=True``)
AdaGrad            ``s += g**2;  w -= lr * g / (sqrt(s) + eps)``  (eps outside the sqrt)
RMSProp            ``v = rho*v + (1-rho)*g**2;  w -= lr * g / (sqrt(v) + eps)``  (PyTorch's
                   form with ``alpha = rho``: eps outside the sqrt, unlike Keras). Optional
                   ``momentum`` (``b = mu*b + g/(sqrt(v)+eps); w -= lr*b``) and ``centered``
                   (``a = rho*a + (1-rho)*g``; the denominator is ``sqrt(v - a**2) + eps``,
                   with ``v - a**2`` floored at 0 against rounding, where PyTorch would give NaN).
Adam               ``m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g**2;``
                   ``w -= lr * (m/(1-b1**t)) / (sqrt(v/(1-b2**t)) + eps)``  (eps outside the
                   sqrt, bias correction from the shared step counter; the scalar bias
                   corrections are computed in float64, as PyTorch does in Python).
                   ``amsgrad=True`` uses ``vmax = max(vmax, v)`` in place of v.
weight decay       decoupled (AdamW / Keras 3 ``weight_decay``): ``w -= lr * wd * w`` from the
                   pre-step w, beside the optimizer's own step. Any optimizer takes
                   ``weight_decay``; `AdamW` and `SGDW` just default it on. (For a coupled L2
                   penalty add ``wd/2 * sum(w**2)`` to the loss.)
clipvalue          ``g = clip(g, -c, c)`` elementwise, applied first.
clipnorm           by the GLOBAL norm over all gradients of the call (Keras' ``global_clipnorm``,
                   TensorFlow's ``clip_by_global_norm``): ``g *= c / max(norm, c)``.
=================  ========================================================================

Learning-rate schedules are small callables of the epoch or step, evaluated in Python; apply one
with ``set_lr(opt, schedule(epoch))`` between calls. `StepDecay`, `LinearDecay` (the lecture
notes' linear decay) and `Cosine`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from .autodiff import grad as _grad
from .core import SharedVar, Var, is_float, shared
from .ops import cast, clip, maximum, sqrt, square
from .ops import sum as _sum

__all__ = [
    "AdaGrad", "Adam", "AdamW", "Cosine", "LinearDecay", "Momentum", "Nesterov", "Optimizer", "RMSProp", "SGD",
    "SGDW", "Schedule", "StepDecay", "get_lr", "set_lr",
]


def _check_number(name: str, value, lo: float | None = None, hi: float | None = None,
                  lo_open: bool = False, hi_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {v}")
    return v


class Optimizer:
    """Base class: builds update lists. Subclasses define `_slot_names` and `_step`.

    Arguments common to every optimizer:

    - `lr`: the learning rate, held in the float32 shared scalar `self.lr`. Changing it with
      ``opt.lr.set_value(v)``, ``set_lr(opt, v)`` or ``opt.learning_rate = v`` takes effect at the
      next call of an already compiled function; nothing is recompiled. A float32 scalar
      SharedVar may be passed instead, to share one learning rate between optimizers.
    - `clipvalue`: clip every gradient element to ``[-clipvalue, clipvalue]``.
    - `clipnorm`: rescale all gradients together so that their global L2 norm is at most
      `clipnorm` (after `clipvalue`, when both are given).
    - `weight_decay`: decoupled decay ``w -= lr * weight_decay * w`` (AdamW style).
    - `name`: prefix of the step counter's name (default: the class name).

    State: `iterations` (int64 shared scalar, the number of steps taken; its update is part of
    every update list) and one set of slots per parameter, created on first use and reused when
    `updates` is called again (for a second compiled function, say). `slots` lists the counter
    and every slot, named ``"<optimizer>/iterations"`` and ``"<param>/<slot>"``: save them
    with the parameters to resume training exactly. `variables` adds `lr`.
    """

    _slot_names: tuple[str, ...] = ()

    def __init__(self, lr: float = 0.01, *, clipnorm: float | None = None, clipvalue: float | None = None,
                 weight_decay: float = 0.0, name: str | None = None):
        self.name = name or type(self).__name__
        if isinstance(lr, SharedVar):
            if lr.ndim != 0 or lr.dtype != "float32":
                raise TypeError(f"{self.name}: a shared lr must be a float32 scalar, got {lr.type}")
            self.lr = lr
        else:
            self.lr = shared(np.float32(_check_number("lr", lr, lo=0.0)), name=f"{self.name}/lr")
        self.clipnorm = None if clipnorm is None else _check_number("clipnorm", clipnorm, lo=0.0, lo_open=True)
        self.clipvalue = None if clipvalue is None else _check_number("clipvalue", clipvalue, lo=0.0, lo_open=True)
        self.weight_decay = _check_number("weight_decay", weight_decay, lo=0.0)
        self.iterations = shared(np.int64(0), name=f"{self.name}/iterations")
        self._params: list[SharedVar] = []
        self._slots: dict[int, dict[str, SharedVar]] = {}

    # learning rate ------------------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The current learning rate as a Python float; assigning sets `lr` (no recompilation)."""
        return float(self.lr.get_value())

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.lr.set_value(np.float32(_check_number("lr", value, lo=0.0)))

    # state --------------------------------------------------------------------------------------
    @property
    def slots(self) -> list[SharedVar]:
        """The step counter, then every parameter's slots in order of first use."""
        return [self.iterations] + [s for p in self._params for s in self._slots[id(p)].values()]

    @property
    def variables(self) -> list[SharedVar]:
        """`lr` and `slots`: everything a checkpoint needs to resume this optimizer."""
        return [self.lr] + self.slots

    def get_slot(self, param: SharedVar, slot: str) -> SharedVar:
        """The slot `slot` (for example "m") of `param`; KeyError if it has none."""
        try:
            return self._slots[id(param)][slot]
        except KeyError:
            raise KeyError(f"{self.name}: no slot {slot!r} for {getattr(param, 'name', param)!r}; "
                           f"slots are {list(self._slot_names)}") from None

    def _slots_for(self, p: SharedVar) -> dict[str, SharedVar]:
        if id(p) not in self._slots:
            self._params.append(p)
            self._slots[id(p)] = {s: shared(np.zeros(p.shape, p.dtype), name=f"{p.name}/{s}")
                                  for s in self._slot_names}
        return self._slots[id(p)]

    # updates ------------------------------------------------------------------------------------
    def updates(self, loss: Var, params: Sequence[SharedVar]) -> list[tuple[SharedVar, Var]]:
        """The update list minimising `loss` over `params`: gradients, clipping, the step of
        every parameter and slot, and the step counter. Pass it to ``gc.function(updates=...)``."""
        params = [params] if isinstance(params, SharedVar) else list(params)
        self._check_params(params)
        grads = _grad(loss, params)
        return self.apply_gradients(zip(grads, params))

    def apply_gradients(self, grads_and_params: Iterable[tuple[Var, SharedVar]]) -> list[tuple[SharedVar, Var]]:
        """The update list for given ``(gradient, parameter)`` pairs (Keras' order). Clipping
        applies to these gradients as it does in `updates`."""
        pairs = list(grads_and_params)
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"{self.name}: grads_and_params[{i}] must be a (gradient, parameter) pair")
        params = [p for _, p in pairs]
        self._check_params(params)
        grads = []
        for g, p in pairs:
            if not isinstance(g, Var):
                raise TypeError(f"{self.name}: the gradient of {p.name!r} must be a Var, got {type(g).__name__}")
            if g.ndim != p.ndim or any(a is not None and a != b for a, b in zip(g.shape, p.shape)):
                raise ValueError(f"{self.name}: the gradient of {p.name!r} has shape {g.shape}, "
                                 f"the parameter {p.shape}")
            grads.append(g if g.dtype == p.dtype else cast(g, p.dtype))
        grads = self._clip(grads)
        t = cast(self.iterations + 1, "float64")  # this step's number, 1 for the first call
        out: list[tuple[SharedVar, Var]] = []
        for g, p in zip(grads, params):
            lr = self.lr if p.dtype == self.lr.dtype else cast(self.lr, p.dtype)
            slots = self._slots_for(p)
            new_p, slot_updates = self._step(p, g, lr, slots, t)
            if self.weight_decay:
                new_p = new_p - (lr * self.weight_decay) * p
            out.append((p, new_p))
            out.extend(slot_updates)
        out.append((self.iterations, self.iterations + 1))
        return out

    def _check_params(self, params: list) -> None:
        seen = set()
        for i, p in enumerate(params):
            if not isinstance(p, SharedVar):
                raise TypeError(f"{self.name}: params[{i}] must be a shared variable, got {p!r}")
            if not is_float(p.dtype):
                raise TypeError(f"{self.name}: parameter {p.name!r} has dtype {p.dtype}; only float "
                                "parameters can be optimised")
            if id(p) in seen:
                raise ValueError(f"{self.name}: parameter {p.name!r} is listed twice")
            seen.add(id(p))

    def _clip(self, grads: list[Var]) -> list[Var]:
        if self.clipvalue is not None:
            grads = [clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        if self.clipnorm is not None and grads:
            sq = [cast(_sum(square(g)), "float32") if g.dtype != "float32" else _sum(square(g)) for g in grads]
            total = sq[0]
            for s in sq[1:]:
                total = total + s
            norm = sqrt(total)
            scale = self.clipnorm / maximum(norm, self.clipnorm)
            grads = [g * (scale if g.dtype == "float32" else cast(scale, g.dtype)) for g in grads]
        return grads

    def _step(self, p: SharedVar, g: Var, lr: Var, slots: dict[str, SharedVar], t: Var):
        """Return ``(new_p, [(slot, new_slot), ...])`` for one parameter (pre-call values only)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.learning_rate:g})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum, PyTorch's form:
    ``b = momentum*b + g``; ``w -= lr*b`` (or ``w -= lr*(g + momentum*b)`` with `nesterov`)."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False, **kwargs):
        self.momentum = _check_number("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self._slot_names = ("momentum",) if self.momentum else ()
        super().__init__(lr, **kwargs)

    def _step(self, p, g, lr, slots, t):
        if not self.momentum:
            return p - lr * g, []
        b = slots["momentum"]
        b_new = self.momentum * b + g
        d = g + self.momentum * b_new if self.nesterov else b_new
        return p - lr * d, [(b, b_new)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.learning_rate:g}, momentum={self.momentum:g}, nesterov={self.nesterov})"


class Momentum(SGD):
    """SGD with classical momentum (default 0.9)."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, **kwargs):
        super().__init__(lr, momentum=momentum, nesterov=False, **kwargs)


class Nesterov(SGD):
    """SGD with Nesterov momentum (default 0.9), as PyTorch's ``SGD(nesterov=True)``."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, **kwargs):
        super().__init__(lr, momentum=momentum, nesterov=True, **kwargs)


class SGDW(SGD):
    """SGD with decoupled weight decay: ``w -= lr*weight_decay*w`` beside the SGD step."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.01,
                 **kwargs):
        super().__init__(lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, **kwargs)


class AdaGrad(Optimizer):
    """AdaGrad: ``s += g**2``; ``w -= lr * g / (sqrt(s) + eps)``. `initial_accumulator_value`
    starts `s` (PyTorch's argument; Keras starts it at 0.1)."""

    _slot_names = ("sum",)

    def __init__(self, lr: float = 0.01, eps: float = 1e-10, initial_accumulator_value: float = 0.0, **kwargs):
        self.eps = _check_number("eps", eps, lo=0.0)
        self.initial_accumulator_value = _check_number("initial_accumulator_value", initial_accumulator_value, lo=0.0)
        super().__init__(lr, **kwargs)

    def _slots_for(self, p):
        fresh = id(p) not in self._slots
        slots = super()._slots_for(p)
        if fresh and self.initial_accumulator_value:
            slots["sum"].set_value(np.full(p.shape, self.initial_accumulator_value, p.dtype))
        return slots

    def _step(self, p, g, lr, slots, t):
        s = slots["sum"]
        s_new = s + square(g)
        return p - lr * g / (sqrt(s_new) + self.eps), [(s, s_new)]


class RMSProp(Optimizer):
    """RMSProp: ``v = rho*v + (1-rho)*g**2``; ``w -= lr * g / (sqrt(v) + eps)`` (PyTorch's
    form, eps outside the sqrt). `momentum` and `centered` as in PyTorch."""

    def __init__(self, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-8, momentum: float = 0.0,
                 centered: bool = False, **kwargs):
        self.rho = _check_number("rho", rho, lo=0.0, hi=1.0, hi_open=True)
        self.eps = _check_number("eps", eps, lo=0.0)
        self.momentum = _check_number("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
        self.centered = bool(centered)
        self._slot_names = ("v",) + (("mean_grad",) if self.centered else ()) + (("momentum",) if self.momentum else ())
        super().__init__(lr, **kwargs)

    def _step(self, p, g, lr, slots, t):
        v = slots["v"]
        v_new = self.rho * v + (1.0 - self.rho) * square(g)
        ups = [(v, v_new)]
        if self.centered:
            a = slots["mean_grad"]
            a_new = self.rho * a + (1.0 - self.rho) * g
            ups.append((a, a_new))
            denom = sqrt(maximum(v_new - square(a_new), 0.0)) + self.eps
        else:
            denom = sqrt(v_new) + self.eps
        if self.momentum:
            b = slots["momentum"]
            b_new = self.momentum * b + g / denom
            ups.append((b, b_new))
            return p - lr * b_new, ups
        return p - lr * g / denom, ups


class Adam(Optimizer):
    """Adam with bias correction from the shared step counter (PyTorch's form, eps outside
    the sqrt): ``w -= lr * (m/(1-beta1**t)) / (sqrt(v/(1-beta2**t)) + eps)``."""

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 amsgrad: bool = False, **kwargs):
        self.beta1 = _check_number("beta1", beta1, lo=0.0, hi=1.0, hi_open=True)
        self.beta2 = _check_number("beta2", beta2, lo=0.0, hi=1.0, hi_open=True)
        self.eps = _check_number("eps", eps, lo=0.0)
        self.amsgrad = bool(amsgrad)
        self._slot_names = ("m", "v") + (("vmax",) if self.amsgrad else ())
        super().__init__(lr, **kwargs)

    def _step(self, p, g, lr, slots, t):
        m, v = slots["m"], slots["v"]
        m_new = self.beta1 * m + (1.0 - self.beta1) * g
        v_new = self.beta2 * v + (1.0 - self.beta2) * square(g)
        ups = [(m, m_new), (v, v_new)]
        if self.amsgrad:
            vmax = slots["vmax"]
            v_hat = maximum(vmax, v_new)
            ups.append((vmax, v_hat))
        else:
            v_hat = v_new
        # scalar bias corrections in float64 (t is float64): 1 - 0.999**t loses digits in float32
        step_size = cast(cast(lr, "float64") / (1.0 - self.beta1 ** t), p.dtype)
        inv_sqrt_bc2 = cast(1.0 / sqrt(1.0 - self.beta2 ** t), p.dtype)
        return p - step_size * m_new / (sqrt(v_hat) * inv_sqrt_bc2 + self.eps), ups


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter; PyTorch's AdamW):
    ``w -= lr*weight_decay*w`` beside the Adam step, both from the pre-step w."""

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.01, **kwargs):
        super().__init__(lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, **kwargs)


# learning rate --------------------------------------------------------------------------------

def set_lr(opt: Optimizer, value: float) -> None:
    """Set the optimizer's learning rate; compiled functions use it from their next call."""
    opt.learning_rate = value


def get_lr(opt: Optimizer) -> float:
    """The optimizer's current learning rate."""
    return opt.learning_rate


class Schedule:
    """A learning-rate schedule: ``schedule(k) -> float`` for epoch or step ``k >= 0``.

    Use: ``set_lr(opt, schedule(epoch))`` before each epoch (or step)."""

    def __call__(self, k: int) -> float:
        k = _check_number("schedule step", k, lo=0.0)
        return float(self._value(k))

    def _value(self, k: float) -> float:
        raise NotImplementedError


class StepDecay(Schedule):
    """``lr0 * drop ** floor(k / every)``: multiply by `drop` every `every` epochs.

    >>> [StepDecay(0.1, 0.5, 2)(k) for k in range(5)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    def __init__(self, lr0: float, drop: float = 0.5, every: int = 10):
        self.lr0 = _check_number("lr0", lr0, lo=0.0)
        self.drop = _check_number("drop", drop, lo=0.0)
        self.every = _check_number("every", every, lo=0.0, lo_open=True)

    def _value(self, k):
        return self.lr0 * self.drop ** math.floor(k / self.every)


class LinearDecay(Schedule):
    """The lecture notes' linear decay: ``lr_k = (1 - a)*lr0 + a*lr_end`` with ``a = k/steps``
    until step ``steps`` (tau), then constant at `lr_end`.

    >>> [LinearDecay(1.0, 0.1, 3)(k) for k in (0, 3, 10)]
    [1.0, 0.1, 0.1]
    """

    def __init__(self, lr0: float, lr_end: float, steps: int):
        self.lr0 = _check_number("lr0", lr0, lo=0.0)
        self.lr_end = _check_number("lr_end", lr_end, lo=0.0)
        self.steps = _check_number("steps", steps, lo=0.0, lo_open=True)

    def _value(self, k):
        a = min(k, self.steps) / self.steps
        return (1.0 - a) * self.lr0 + a * self.lr_end


class Cosine(Schedule):
    """Cosine annealing (SGDR without restarts):
    ``lr_min + (lr0 - lr_min) * (1 + cos(pi * min(k, steps) / steps)) / 2``, constant after `steps`."""

    def __init__(self, lr0: float, steps: int, lr_min: float = 0.0):
        self.lr0 = _check_number("lr0", lr0, lo=0.0)
        self.steps = _check_number("steps", steps, lo=0.0, lo_open=True)
        self.lr_min = _check_number("lr_min", lr_min, lo=0.0)

    def _value(self, k):
        cos = math.cos(math.pi * min(k, self.steps) / self.steps)
        return self.lr_min + 0.5 * (self.lr0 - self.lr_min) * (1.0 + cos)
