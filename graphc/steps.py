"""Training steps for models that are not classifiers: what `graphc.train.fit` runs per batch.

A `Step` is one compiled function: a loss (and any named metrics) built from the batch's
placeholders, the parameters it trains and its own optimizer. `fit` runs a list of steps per
batch, each `every` batches and `repeat` times, so a GAN is two steps that share weights:

>>> import numpy as np, graphc as gc
>>> from graphc.nn import Dense, Sequential
>>> enc = Sequential([Dense(2, seed=1)], input_shape=(4,))
>>> dec = Sequential([Dense(4, seed=2)], input_shape=(2,))
>>> def reconstruct(x, y, training):   # y is None: no labels
...     return {"loss": gc.nn.losses.mse(dec(enc(x, training), training), x)}
>>> step = Step(reconstruct, params=[enc, dec], optimizer=gc.optim.Adam(0.01), name="ae")
>>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
>>> hist = gc.train.fit(None, x, steps=[step], epochs=3, batch_size=16, verbose=0)
>>> hist["loss"][-1] < hist["loss"][0]
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .core import SharedVar, Var, unique
from .runtime import function


class Step:
    """One compiled training step.

    build: ``build(x, y, training) -> Var | {name: Var} | ({name: Var}, updates)``; `y` is None
    when `fit` got no labels. The entry named "loss" (else the first) is minimised over
    `params`; every entry is averaged over the epoch into the History under its name (a bare
    Var is called "loss", or "<name>_loss" when there are several steps). `updates` are extra
    ``(shared, expr)`` pairs (batch-norm statistics, say) applied with the optimizer's.
    params: shared variables, layers/models (their ``params``; their ``state`` is checkpointed),
    or a list mixing both. optimizer: a `graphc.optim` optimizer (default Adam()).
    every: run on every `every`-th batch (a GAN's generator with ``every=k`` gets k critic
    steps per generator step). repeat: run this many times on the same batch.
    regularization: ``f(params) -> Var`` added to the minimised loss.
    validate: also compile ``build(x, y, training=False)`` for ``val_*`` logs.
    """

    def __init__(self, build: Callable, params, optimizer=None, *, name: str = "step",
                 every: int = 1, repeat: int = 1, regularization: Callable[[list], Var] | None = None,
                 validate: bool = True):
        from . import optim

        if not callable(build):
            raise TypeError(f"Step {name!r}: build must be callable build(x, y, training), got {type(build).__name__}")
        for what, v in (("every", every), ("repeat", repeat)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Step {name!r}: {what} must be a positive int, got {v!r}")
        self.build, self.name, self.every, self.repeat = build, name, every, repeat
        self.optimizer = optimizer if optimizer is not None else optim.Adam()
        self.params, self.state = _collect(params, name)
        if not self.params:
            raise ValueError(f"Step {name!r}: no trainable parameters (build the models first)")
        self.regularization, self.validate = regularization, validate
        self.train_fn = self.eval_fn = None
        self.names: list[str] = []

    def compile(self, inputs: list, x: Var, y: Var | None, backend: str | None, single: bool) -> None:
        """Build and compile the train (and evaluation) functions on placeholders `x`, `y`."""
        outs, extra = _normalise(self.build(x, y, True), self, single)
        loss = outs["loss"] if "loss" in outs else next(iter(outs.values()))
        if loss.ndim != 0:
            raise ValueError(f"Step {self.name!r}: the minimised loss must be a scalar, got shape {loss.shape}")
        if self.regularization is not None:
            loss = loss + self.regularization(self.params)
        updates = self.optimizer.updates(loss, self.params) + list(extra)
        self.names = list(outs)
        self.train_fn = function(inputs, list(outs.values()), updates=updates, backend=backend)
        if self.validate:
            eval_outs, _ = _normalise(self.build(x, y, False), self, single)
            if list(eval_outs) != self.names:
                raise ValueError(f"Step {self.name!r}: build returned {list(eval_outs)} for training=False "
                                 f"but {self.names} for training=True")
            self.eval_fn = function(inputs, list(eval_outs.values()), backend=backend)

    @property
    def variables(self) -> list[SharedVar]:
        """Parameters, state and optimizer slots: what a checkpoint of this step holds."""
        return self.params + self.state + list(self.optimizer.slots)

    def __repr__(self) -> str:
        return f"<Step {self.name}: {len(self.params)} params, every {self.every}, repeat {self.repeat}>"


def _collect(params, name: str) -> tuple[list[SharedVar], list[SharedVar]]:
    items = params if isinstance(params, (list, tuple)) else [params]
    ps, st = [], []
    for item in items:
        if isinstance(item, SharedVar):
            ps.append(item)
        elif hasattr(item, "params"):
            ps += list(item.params)
            st += list(getattr(item, "state", []))
        else:
            raise TypeError(f"Step {name!r}: params must be shared variables or layers, got {type(item).__name__}")
    return unique(ps), unique(st)


def _normalise(out, step: Step, single: bool) -> tuple[dict, list]:
    extra: Sequence = ()
    if isinstance(out, tuple):
        if len(out) != 2:
            raise TypeError(f"Step {step.name!r}: build returned a tuple of {len(out)}; return "
                            "Var, {name: Var} or ({name: Var}, updates)")
        out, extra = out
    if isinstance(out, Var):
        out = {"loss" if single else f"{step.name}_loss": out}
    if not isinstance(out, dict) or not out:
        raise TypeError(f"Step {step.name!r}: build must return a Var or a non-empty dict of Vars, "
                        f"got {type(out).__name__}")
    for k, v in out.items():
        if not isinstance(v, Var) or v.ndim != 0:
            raise TypeError(f"Step {step.name!r}: {k!r} must be a scalar Var, got {v!r}")
    return dict(out), list(extra.items() if isinstance(extra, dict) else extra)

