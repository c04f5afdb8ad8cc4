"""The fit loop: minibatches, epochs, metrics, validation, callbacks, checkpoints, plots.

One training step (forward, backward, optimizer and batch-norm updates) is one compiled
function, so on the C backend each minibatch is one native call.

>>> import numpy as np, graphc as gc
>>> from graphc.nn import Dense, Sequential
>>> x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], "float32"); y = np.array([0, 1, 1, 0], "int32")
>>> model = Sequential([Dense(8, activation="tanh", seed=1), Dense(2, seed=2)], input_shape=(2,))
>>> hist = fit(model, x, y, optimizer=gc.optim.Adam(0.05), epochs=150, batch_size=4, verbose=False)
>>> hist["accuracy"][-1]
1.0
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np

from . import ops
from .core import SharedVar, Var
from .runtime import function, placeholder


class History(dict):
    """Per-epoch lists: ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``epoch_time``..."""

    def append(self, logs: dict) -> None:
        for k, v in logs.items():
            self.setdefault(k, []).append(v)


# -- losses and metrics by name ----------------------------------------------------------------


def resolve_loss(loss) -> Callable[[Var, Var], Var]:
    """A loss by Keras name, or a callable ``loss(model_output, target) -> scalar Var``."""
    from .nn import losses

    if callable(loss):
        return loss
    table = {
        "categorical_crossentropy": losses.categorical_crossentropy,
        "sparse_categorical_crossentropy": losses.categorical_crossentropy,
        "binary_crossentropy": losses.binary_crossentropy, "mse": losses.mse, "mae": losses.mae,
        "hinge": losses.hinge, "squared_hinge": losses.squared_hinge, "multiclass_hinge": losses.multiclass_hinge,
    }
    if loss not in table:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(sorted(table))} or pass a callable")
    return table[loss]


def accuracy(out: Var, target: Var) -> Var:
    """Fraction of correct predictions: argmax for multi-class outputs (integer or one-hot
    targets), a 0 threshold on logits for single-output binary models."""
    if out.ndim >= 2 and out.shape[-1] not in (None, 1):
        pred = ops.argmax(out, axis=-1)
        t = target if target.dtype.startswith("int") else ops.argmax(target, axis=-1)
        return ops.mean(ops.cast(ops.equal(pred, ops.cast(t, "int64")), "float32"))
    logits = ops.reshape(out, (-1,))
    return ops.mean(ops.cast(ops.equal(ops.greater(logits, 0.0), ops.greater(ops.reshape(target, (-1,)), 0.5)),
                             "float32"))


METRICS = {"accuracy": accuracy, "acc": accuracy}


# -- callbacks ---------------------------------------------------------------------------------


class Callback:
    """Hooks called by `fit`. Set ``trainer.stop_training = True`` to stop after this epoch."""

    def on_train_begin(self, trainer) -> None: ...
    def on_epoch_begin(self, epoch: int, trainer) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict, trainer) -> None: ...
    def on_train_end(self, trainer) -> None: ...


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs; with
    `restore_best_weights` (the default) put back the weights of the best epoch."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0, mode: str = "auto",
                 restore_best_weights: bool = True):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.restore = restore_best_weights
        self.best, self.best_epoch, self.wait, self.best_weights = None, -1, 0, None
        self.stopped_epoch = None

    def _better(self, value) -> bool:
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs, trainer):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, but the logs have {sorted(logs)}")
        value = logs[self.monitor]
        if self._better(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore:
                self.best_weights = {v.name: v.get_value() for v in trainer.variables}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                trainer.stop_training = True

    def on_train_end(self, trainer):
        if self.restore and self.best_weights is not None:
            for v in trainer.variables:
                v.set_value(self.best_weights[v.name])


class ModelCheckpoint(Callback):
    """Save every trained variable (weights, optimizer slots, batch-norm state) and the epoch to
    `path` (.npz, written atomically) after each epoch, or only on improvement of `monitor`."""

    def __init__(self, path: str, monitor: str = "val_loss", save_best_only: bool = False):
        self.path, self.monitor, self.save_best_only = path, monitor, save_best_only
        self.best = None

    def on_epoch_end(self, epoch, logs, trainer):
        value = logs.get(self.monitor)
        if self.save_best_only:
            if value is None:
                raise KeyError(f"ModelCheckpoint monitors {self.monitor!r}, but the logs have {sorted(logs)}")
            better = self.best is None or (value > self.best if "acc" in self.monitor else value < self.best)
            if not better:
                return
            self.best = value
        save_checkpoint(self.path, trainer.variables, epoch=epoch + 1)


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate from ``schedule(epoch)`` before each epoch (no recompile:
    the rate is a shared variable)."""

    def __init__(self, schedule: Callable[[int], float]):
        self.schedule = schedule

    def on_epoch_begin(self, epoch, trainer):
        trainer.optimizer.lr.set_value(np.float32(self.schedule(epoch)))


# -- checkpoints -------------------------------------------------------------------------------


def save_checkpoint(path: str, variables: Sequence[SharedVar], **meta) -> None:
    """Write the variables (by name) and `meta` to `path` as .npz: to a temporary file in the
    same directory, then renamed over `path`, so a crash never leaves a half-written checkpoint.

    >>> import graphc as gc, tempfile, os
    >>> w = gc.shared(np.arange(3, dtype="float32"), name="w")
    >>> p = os.path.join(tempfile.mkdtemp(), "ck.npz"); save_checkpoint(p, [w], epoch=3)
    >>> w.set_value(np.zeros(3, "float32")); load_checkpoint(p, [w])["epoch"], w.get_value()
    (3, array([0., 1., 2.], dtype=float32))
    """
    names = [v.name for v in variables]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"save_checkpoint: variable names must be unique, repeated: {sorted(dup)}")
    arrays = {f"var:{v.name}": v.get_value() for v in variables}
    arrays.update({f"meta:{k}": np.asarray(v) for k, v in meta.items()})
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str, variables: Sequence[SharedVar], strict: bool = True) -> dict:
    """Load variables saved by `save_checkpoint` (matched by name; shapes must agree). Returns
    the metadata. With `strict`, a variable missing from the file is an error."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {path}")
    try:
        data = np.load(path)
        stored = {k[4:]: data[k] for k in data.files if k.startswith("var:")}
        meta = {k[5:]: data[k].item() if data[k].ndim == 0 else data[k] for k in data.files if k.startswith("meta:")}
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"load_checkpoint: {path} is not a readable graphc checkpoint ({e})") from e
    missing = [v.name for v in variables if v.name not in stored]
    if missing and strict:
        raise KeyError(f"load_checkpoint: {path} has no values for {missing}")
    for v in variables:
        if v.name in stored:
            if stored[v.name].shape != v.shape:
                raise ValueError(f"load_checkpoint: {v.name} has shape {v.shape}, "
                                 f"the checkpoint {stored[v.name].shape}")
    for v in variables:
        if v.name in stored:
            v.set_value(stored[v.name])
    return meta


# -- plots -------------------------------------------------------------------------------------


def plot_history(history: dict, path: str, title: str = "training") -> str:
    """Write a PNG with loss (and accuracy, when recorded) per epoch, train and validation."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plot_history needs matplotlib: pip install 'graphc[train]'") from e
    keys = [k for k in ("loss", "accuracy") if k in history]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        epochs = range(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], "o-", label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s--", label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the loop ----------------------------------------------------------------------------------


class Trainer:
    """Compiles the train, evaluation and prediction functions of a model once."""

    def __init__(self, model, x_example: np.ndarray, y_example: np.ndarray, loss="categorical_crossentropy",
                 optimizer=None, metrics: Sequence = ("accuracy",), backend: str | None = None,
                 regularization: Callable[[list], Var] | None = None):
        from . import optim

        self.model = model
        self.optimizer = optimizer if optimizer is not None else optim.Adam()
        self.loss_fn = resolve_loss(loss)
        self.metric_fns = {m if isinstance(m, str) else m.__name__: METRICS[m] if isinstance(m, str) else m
                           for m in metrics}
        x = placeholder("x", (None, *x_example.shape[1:]), _float_or_int(x_example))
        y = placeholder("y", (None, *y_example.shape[1:]), _float_or_int(y_example))
        out_train = model(x, training=True)
        state_updates = list(getattr(model, "updates", []))
        out_eval = model(x, training=False)
        loss_train = self.loss_fn(out_train, y)
        if regularization is not None:
            loss_train = loss_train + regularization(model.params)
        loss_eval = self.loss_fn(out_eval, y)
        opt_updates = self.optimizer.updates(loss_train, model.params)
        names = list(self.metric_fns)
        self.train_fn = function([x, y], [loss_train] + [self.metric_fns[n](out_train, y) for n in names],
                                 updates=opt_updates + state_updates, backend=backend)
        self.eval_fn = function([x, y], [loss_eval] + [self.metric_fns[n](out_eval, y) for n in names],
                                backend=backend)
        self.predict_fn = function([x], out_eval, backend=backend)
        self.metric_names = names
        self.variables = _unique(list(model.params) + list(model.state) + list(self.optimizer.slots))
        self.stop_training = False

    def evaluate(self, x, y, batch_size: int = 256) -> dict:
        totals, n = None, 0
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            vals = [float(v) for v in self.eval_fn(xb, yb)]
            totals = [v * len(xb) for v in vals] if totals is None else [t + v * len(xb) for t, v in zip(totals, vals)]
            n += len(xb)
        return dict(zip(["loss"] + self.metric_names, [t / n for t in totals]))

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        return np.concatenate([self.predict_fn(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])


def _float_or_int(a: np.ndarray) -> str:
    return "int32" if a.dtype.kind in "iu" else "float32"


def _unique(vs):
    seen, out = set(), []
    for v in vs:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def fit(model, x, y, *, loss="categorical_crossentropy", optimizer=None, epochs: int = 10, batch_size: int = 32,
        validation_data=None, metrics: Sequence = ("accuracy",), callbacks: Sequence[Callback] = (),
        shuffle: bool = True, seed: int = 0, verbose=None, backend: str | None = None, resume_from: str | None = None,
        regularization=None, plot: str | None = None, trainer: Trainer | None = None) -> History:
    """Train `model` on (x, y) with minibatch steps; returns the per-epoch History.

    loss: a Keras name ("categorical_crossentropy" takes integer or one-hot labels, "mse", ...)
    or ``loss(output, target) -> Var``. optimizer: a `graphc.optim` optimizer (default Adam).
    validation_data: (x_val, y_val) for ``val_*`` metrics. callbacks: EarlyStopping,
    ModelCheckpoint, LearningRateScheduler or your own. resume_from: a checkpoint written by
    ModelCheckpoint; training continues after its epoch. verbose: 0 silent, 1 a tqdm progress
    bar and a line per epoch, 2 a line per epoch (default: 1 on a terminal, else 2), on stderr.
    plot: write the loss/accuracy PNG there.
    """
    x, y = _as_array(x, "x"), _as_array(y, "y")
    if len(x) != len(y):
        raise ValueError(f"fit: x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError("fit: no training samples")
    if batch_size <= 0 or epochs < 0:
        raise ValueError(f"fit: batch_size must be > 0 and epochs >= 0, got {batch_size} and {epochs}")
    x = x.astype("float32") if x.dtype.kind == "f" and x.dtype != np.float32 else x
    from . import distributed  # under mpiexec: gradients averaged over ranks, batches sharded

    optimizer = distributed.fit_optimizer(optimizer)
    trainer = trainer or Trainer(model, x, y, loss, optimizer, metrics, backend, regularization)
    ctx = distributed.FitContext(trainer)
    # Keras' levels: 0 silent, 1 progress bar and a line per epoch, 2 a line per epoch only
    verbose = ctx.verbose((1 if sys.stderr.isatty() else 2) if verbose is None else int(verbose))
    callbacks = ctx.callbacks(callbacks)
    history = History()
    start_epoch = 0
    if resume_from is not None and os.path.exists(resume_from):
        start_epoch = int(load_checkpoint(resume_from, trainer.variables).get("epoch", 0))
    start_epoch = ctx.start(start_epoch)  # every rank starts from rank 0's weights and epoch
    rng = np.random.default_rng(seed)
    for _ in range(start_epoch):  # the same shuffles as an uninterrupted run
        rng.permutation(len(x))
    for cb in callbacks:
        cb.on_train_begin(trainer)
    n = len(x)
    for epoch in range(start_epoch, epochs):
        for cb in callbacks:
            cb.on_epoch_begin(epoch, trainer)
        order = rng.permutation(n) if shuffle else np.arange(n)
        t0 = time.perf_counter()
        sums = np.zeros(1 + len(trainer.metric_names))
        bar = _progress(range(0, n, batch_size), f"epoch {epoch + 1}/{epochs}", verbose == 1)
        for start in bar:
            idx, weight = ctx.shard(order[start:start + batch_size])  # this rank's slice
            vals = trainer.train_fn(x[idx], y[idx])
            sums += np.array([float(v) for v in vals]) * weight
            if verbose == 1:
                bar.set_postfix(loss=f"{float(vals[0]):.4f}", refresh=False)
        logs = dict(zip(["loss"] + trainer.metric_names, (ctx.total(sums) / n).tolist()))
        logs["epoch_time"] = time.perf_counter() - t0
        if validation_data is not None:
            val = ctx.evaluate(_as_array(validation_data[0], "x_val"), _as_array(validation_data[1], "y_val"))
            logs.update({f"val_{k}": v for k, v in val.items()})
        history.append(logs)
        if verbose:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k != "epoch_time")
            print(f"epoch {epoch + 1}/{epochs}  {shown}  ({logs['epoch_time']:.2f} s)", file=sys.stderr)
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs, trainer)
        if trainer.stop_training:
            break
    for cb in callbacks:
        cb.on_train_end(trainer)
    history.trainer = trainer
    if plot and ctx.root:
        plot_history(history, plot)
    return history


def _as_array(a, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"fit: {what} must be numeric, got {arr.dtype}")
    return arr


def _progress(iterable, desc: str, enabled: bool):
    if not enabled:
        return _Quiet(iterable)
    try:
        from tqdm import tqdm
    except ImportError:
        return _Quiet(iterable)
    return tqdm(iterable, desc=desc, leave=False, file=sys.stderr)


class _Quiet:
    def __init__(self, it):
        self.it = it

    def __iter__(self):
        return iter(self.it)

    def set_postfix(self, **kw):
        pass
