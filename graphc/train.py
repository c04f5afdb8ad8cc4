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
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from . import ops
from .core import SharedVar, Var, unique
from .runtime import function, placeholder
from .steps import Step


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
        save_checkpoint(self.path, checkpoint_variables(trainer), epoch=epoch + 1)


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate from ``schedule(epoch)`` before each epoch (no recompile:
    the rate is a shared variable)."""

    def __init__(self, schedule: Callable[[int], float]):
        self.schedule = schedule

    def on_epoch_begin(self, epoch, trainer):
        trainer.optimizer.lr.set_value(np.float32(self.schedule(epoch)))


# -- checkpoints -------------------------------------------------------------------------------


def checkpoint_variables(trainer) -> dict[str, SharedVar]:
    """The variables a checkpoint of `trainer` holds, keyed by structure: ``model.<key>`` from
    the model's `named_weights` (``model.layers.0.kernel``), ``optimizer.lr``,
    ``optimizer.iterations`` and ``optimizer.<param key>.<slot>``. Layer names come from a
    process-global counter, so these keys (unlike names) are the same when the same
    architecture is built again in the same process. Variables without a structural key
    (a model without `named_weights`) are keyed by name.

    >>> import graphc as gc
    >>> from graphc.nn import Dense, Sequential
    >>> m = Sequential([Dense(2, seed=1)], input_shape=(3,))
    >>> t = Trainer(m, np.zeros((1, 3), "float32"), np.zeros(1, "int32"), optimizer=gc.optim.SGD(0.1))
    >>> sorted(checkpoint_variables(t))[:3]
    ['model.layers.0.bias', 'model.layers.0.kernel', 'optimizer.iterations']
    """
    named = getattr(trainer.model, "named_weights", None)
    pairs = [(f"model.{k}", v) for k, v in named()] if named is not None else []
    keyed = {id(v): k for k, v in pairs}
    # one optimizer: "optimizer."; several compiled steps (a GAN): "steps.<name>.optimizer."
    steps = getattr(trainer, "steps", None) or []
    optimizers = [(f"steps.{st.name}.optimizer", st.optimizer) for st in steps] if len(steps) > 1 else \
        [("optimizer", trainer.optimizer)]
    params = [(k, v) for k, v in pairs]
    for prefix, opt in optimizers:
        for attr in ("lr", "iterations"):
            v = getattr(opt, attr, None)
            if isinstance(v, SharedVar) and id(v) not in keyed:
                keyed[id(v)] = f"{prefix}.{attr}"
        # a slot is named "<param name>/<slot>"; get_slot confirms which parameter it belongs to
        for s in getattr(opt, "slots", []):
            if id(s) in keyed:
                continue
            for k, p in params:
                head = f"{p.name}/"
                if s.name.startswith(head):
                    try:
                        if opt.get_slot(p, s.name[len(head):]) is s:
                            keyed[id(s)] = f"{prefix}.{k[len('model.'):]}.{s.name[len(head):]}"
                            break
                    except KeyError:
                        pass
    out: dict[str, SharedVar] = {}
    for v in trainer.variables:
        key = keyed.get(id(v), v.name)
        if key in out:
            raise ValueError(f"checkpoint_variables: two variables have the key {key!r}")
        out[key] = v
    return out


def _keyed(variables, what: str) -> dict[str, SharedVar]:
    if isinstance(variables, Mapping):
        return dict(variables)
    names = [v.name for v in variables]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"{what}: variable names must be unique, repeated: {sorted(dup)}")
    return {v.name: v for v in variables}


def save_checkpoint(path: str, variables: Sequence[SharedVar] | Mapping[str, SharedVar], **meta) -> None:
    """Write the variables and `meta` to `path` as .npz: to a temporary file in the same
    directory, then renamed over `path`, so a crash never leaves a half-written checkpoint.
    `variables` is a list (keyed by name) or a dict of key -> variable (as
    `checkpoint_variables` gives; the file then also records each variable's name, so that
    `load_checkpoint` by name still works).

    >>> import graphc as gc, tempfile, os
    >>> w = gc.shared(np.arange(3, dtype="float32"), name="w")
    >>> p = os.path.join(tempfile.mkdtemp(), "ck.npz"); save_checkpoint(p, [w], epoch=3)
    >>> w.set_value(np.zeros(3, "float32")); load_checkpoint(p, [w])["epoch"], w.get_value()
    (3, array([0., 1., 2.], dtype=float32))
    """
    keyed = _keyed(variables, "save_checkpoint")
    bad = [k for k in keyed if not isinstance(k, str) or not k]
    if bad:
        raise ValueError(f"save_checkpoint: keys must be non-empty strings, got {bad}")
    arrays = {f"var:{k}": v.get_value() for k, v in keyed.items()}
    if isinstance(variables, Mapping):  # names too, so a name-keyed load of this file still works
        arrays["names"] = np.array([[k, v.name] for k, v in keyed.items()], dtype=str).reshape(-1, 2)
    arrays.update({f"meta:{k}": np.asarray(v) for k, v in meta.items()})
    directory = os.path.dirname(os.path.abspath(path))
    blocker = directory
    while blocker and not os.path.exists(blocker):
        blocker = os.path.dirname(blocker)
    if blocker and not os.path.isdir(blocker):
        raise NotADirectoryError(f"save_checkpoint: cannot write {path}: {blocker} is a file, not a directory")
    if os.path.isdir(path):
        raise IsADirectoryError(f"save_checkpoint: {path} is a directory; give a file name such as ck.npz")
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


def load_checkpoint(path: str, variables: Sequence[SharedVar] | Mapping[str, SharedVar],
                    strict: bool = True) -> dict:
    """Load variables saved by `save_checkpoint` and return the metadata. `variables` is a
    list (matched by name) or a dict of key -> variable (matched by key, falling back to the
    variable's name, so checkpoints written by older versions, keyed by name, still load).

    All or nothing: every variable is checked (present, same shape, same dtype) before any is
    written, and a failure while writing restores the earlier values. With `strict`, a
    variable missing from the file is an error; otherwise it keeps its value.

    >>> import graphc as gc, tempfile, os
    >>> a, b = gc.shared(np.zeros(2, "float32"), name="a"), gc.shared(np.zeros(3, "float32"), name="b")
    >>> p = os.path.join(tempfile.mkdtemp(), "ck.npz"); save_checkpoint(p, {"x.a": a, "x.b": b})
    >>> _ = load_checkpoint(p, {"x.a": a, "x.b": gc.shared(np.ones(4, "float32"), name="b")})
    Traceback (most recent call last):
    ValueError: load_checkpoint: ... x.b (b) has shape (4,), the checkpoint (3,)
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"load_checkpoint: {path} is a directory, not a checkpoint file")
    try:
        with np.load(path) as data:
            stored = {k[4:]: data[k] for k in data.files if k.startswith("var:")}
            meta = {k[5:]: data[k].item() if data[k].ndim == 0 else data[k] for k in data.files
                    if k.startswith("meta:")}
            names = {str(n): str(k) for k, n in data["names"]} if "names" in data.files else {}
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"load_checkpoint: {path} is not a readable graphc checkpoint ({e})") from e
    keyed = _keyed(variables, "load_checkpoint")
    plan, missing, problems = [], [], []
    for key, v in keyed.items():
        # by key; then by name (a name-keyed file, or a key-keyed file loaded with a list)
        src = key if key in stored else v.name if v.name in stored else names.get(v.name)
        if src is None or src not in stored:
            missing.append(key if key == v.name else f"{key} ({v.name})")
            continue
        value, label = stored[src], key if key == v.name else f"{key} ({v.name})"
        if value.shape != tuple(v.shape):
            problems.append(f"{label} has shape {tuple(v.shape)}, the checkpoint {value.shape}")
        elif value.dtype != np.dtype(v.dtype):
            problems.append(f"{label} has dtype {v.dtype}, the checkpoint {value.dtype}")
        else:
            plan.append((v, value))
    if problems:
        raise ValueError(f"load_checkpoint: {path} does not fit (nothing was loaded): " + "; ".join(problems))
    if missing and strict:
        raise KeyError(f"load_checkpoint: {path} has no values for {missing} (nothing was loaded)")
    before = [(v, v.get_value()) for v, _ in plan]
    try:
        for v, value in plan:
            v.set_value(value)
    except BaseException:
        for v, old in before:
            v.set_value(old)
        raise
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
    keys = [k for k in history if not k.startswith("val_") and k != "epoch_time"][:8]
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
    """Compiles the train, evaluation and prediction functions of a model once.

    A classifier-style model is one `Step` (loss on ``model(x)`` against `y`; with
    ``y_example=None`` against `x` itself, an autoencoder). Pass ``steps=[Step, ...]`` instead
    for anything else (VAEs, GANs, several optimizers); `model` may then be None.
    ``train_fn``/``eval_fn`` are the first step's functions; `variables` holds everything a
    checkpoint needs: every step's parameters, state and optimizer slots.
    """

    def __init__(self, model, x_example: np.ndarray, y_example: np.ndarray | None = None,
                 loss="categorical_crossentropy", optimizer=None, metrics: Sequence | None = None,
                 backend: str | None = None, regularization: Callable[[list], Var] | None = None,
                 steps: Sequence[Step] | None = None):
        self.model = model
        self.backend = backend
        x = placeholder("x", (None, *x_example.shape[1:]), _float_or_int(x_example))
        y = None if y_example is None else placeholder("y", (None, *y_example.shape[1:]), _float_or_int(y_example))
        self.inputs = [x] if y is None else [x, y]
        self._x = x
        if steps is None:
            if model is None:
                raise ValueError("Trainer: give a model, or steps=[Step, ...]")
            if metrics is None:
                metrics = ("accuracy",) if y is not None else ()
            loss_fn = resolve_loss(loss)
            metric_fns = {m if isinstance(m, str) else m.__name__: METRICS[m] if isinstance(m, str) else m
                          for m in metrics}

            def build(xv, yv, training):
                out = model(xv, training=training)
                target = xv if yv is None else yv  # no labels: reconstruct the input
                updates = list(getattr(model, "updates", [])) if training else []
                logs = {"loss": loss_fn(out, target)}
                logs.update({n: f(out, target) for n, f in metric_fns.items()})
                return logs, updates

            steps = [Step(build, model, optimizer, name="train", regularization=regularization)]
        elif optimizer is not None or regularization is not None:
            raise ValueError("Trainer: with steps=..., give each Step its own optimizer and regularization")
        self.steps = list(steps)
        if not self.steps or not all(isinstance(s, Step) for s in self.steps):
            raise TypeError("Trainer: steps must be a non-empty list of graphc.train.Step")
        for s in self.steps:
            s.compile(self.inputs, x, y, backend, single=len(self.steps) == 1)
        seen: dict[str, str] = {}
        for s in self.steps:
            for n in s.names:
                if n in seen:
                    raise ValueError(f"Trainer: steps {seen[n]!r} and {s.name!r} both log {n!r}; rename one")
                seen[n] = s.name
        first = self.steps[0]
        self.optimizer, self.train_fn, self.eval_fn = first.optimizer, first.train_fn, first.eval_fn
        self.metric_names = [n for n in first.names if n != "loss"]
        self.log_names = [n for s in self.steps for n in s.names]
        model_vars = list(getattr(model, "params", [])) + list(getattr(model, "state", [])) if model else []
        self.variables = _unique(model_vars + [v for s in self.steps for v in s.variables])
        self._predict_fn = None
        self.stop_training = False

    @property
    def predict_fn(self):
        """``model(x, training=False)`` compiled on first use."""
        if self._predict_fn is None:
            if self.model is None or not callable(self.model):
                raise ValueError("Trainer.predict: this trainer has no model to predict with")
            self._predict_fn = function([self._x], self.model(self._x, training=False), backend=self.backend)
        return self._predict_fn

    def evaluate(self, x, y=None, batch_size: int = 256) -> dict:
        """Every validating step's logs (training=False graphs), averaged over `x` (and `y`)."""
        if (y is None) != (len(self.inputs) == 1):
            raise ValueError("Trainer.evaluate: give y exactly when the trainer was built with labels")
        totals: dict[str, float] = {}
        n = 0
        for start in range(0, len(x), batch_size):
            batch = [x[start:start + batch_size]] + ([] if y is None else [y[start:start + batch_size]])
            for s in self.steps:
                if s.eval_fn is not None:
                    for k, v in zip(s.names, s.eval_fn(*batch)):
                        totals[k] = totals.get(k, 0.0) + float(v) * len(batch[0])
            n += len(batch[0])
        return {k: t / n for k, t in totals.items()}

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        return np.concatenate([self.predict_fn(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])


def _float_or_int(a: np.ndarray) -> str:
    return "int32" if a.dtype.kind in "iu" else "float32"


_unique = unique


def fit(model, x, y=None, *, loss="categorical_crossentropy", optimizer=None, epochs: int = 10,
        batch_size: int = 32, validation_data=None, metrics: Sequence | None = None,
        callbacks: Sequence[Callback] = (), shuffle: bool = True, seed: int = 0, verbose=None,
        backend: str | None = None, resume_from: str | None = None, regularization=None, plot: str | None = None,
        trainer: Trainer | None = None, steps: Sequence[Step] | None = None) -> History:
    """Train `model` on (x, y) with minibatch steps; returns the per-epoch History.

    loss: a Keras name ("categorical_crossentropy" takes integer or one-hot labels, "mse", ...)
    or ``loss(output, target) -> Var``. y=None: unsupervised, the target is `x` itself (an
    autoencoder with loss="mse"). steps: a list of `Step` (each with its own loss builder,
    parameters, optimizer and update ratio) instead of model/loss/optimizer: VAEs, GANs...;
    each step's named outputs become History keys. optimizer: a `graphc.optim` optimizer
    (default Adam). metrics: names or callables (default accuracy when there are labels).
    validation_data: (x_val, y_val), or (x_val,) / x_val without labels, for ``val_*`` logs.
    callbacks: EarlyStopping, ModelCheckpoint, LearningRateScheduler or your own.
    resume_from: a checkpoint written by ModelCheckpoint (keyed by structure, so the same
    architecture built again resumes); training continues after its epoch; a path that does not
    exist is a FileNotFoundError.
    verbose: 0 silent, 1 a tqdm progress bar and a line per epoch, 2 a line per epoch (default:
    1 on a terminal, else 2), on stderr. plot: write a PNG of every logged curve there.

    >>> import numpy as np, graphc as gc
    >>> ae = gc.nn.Sequential([gc.nn.Dense(2, seed=1), gc.nn.Dense(4, seed=2)], input_shape=(4,))
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    >>> h = fit(ae, x, loss="mse", optimizer=gc.optim.Adam(0.01), epochs=3, verbose=0)
    >>> sorted(h), h["loss"][-1] < h["loss"][0]
    (['epoch_time', 'loss'], True)
    """
    x = _as_array(x, "x")
    y = None if y is None else _as_array(y, "y")
    if y is not None and len(x) != len(y):
        raise ValueError(f"fit: x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError("fit: no training samples")
    if batch_size <= 0 or epochs < 0:
        raise ValueError(f"fit: batch_size must be > 0 and epochs >= 0, got {batch_size} and {epochs}")
    x = x.astype("float32") if x.dtype.kind == "f" and x.dtype != np.float32 else x
    from . import distributed  # under mpiexec: gradients averaged over ranks, batches sharded

    if steps is None:
        optimizer = distributed.fit_optimizer(optimizer)
    elif trainer is None:
        for s in steps:  # each compiled step averages its own gradients over the ranks
            if isinstance(s, Step) and s.train_fn is None:
                s.optimizer = distributed.fit_optimizer(s.optimizer)
    trainer = trainer or Trainer(model, x, y, loss, optimizer, metrics, backend, regularization, steps=steps)
    if (y is None) != (len(trainer.inputs) == 1):
        raise ValueError("fit: the trainer was built " + ("without" if y is not None else "with") + " labels")
    ctx = distributed.FitContext(trainer)
    # Keras' levels: 0 silent, 1 progress bar and a line per epoch, 2 a line per epoch only
    verbose = ctx.verbose((1 if sys.stderr.isatty() else 2) if verbose is None else int(verbose))
    callbacks = ctx.callbacks(callbacks)
    history = History()
    start_epoch = 0
    if resume_from is not None:
        if not os.path.isfile(resume_from):
            raise FileNotFoundError(f"fit: resume_from={resume_from!r} does not exist (or is not a file); "
                                    "pass resume_from=None to start from scratch")
        start_epoch = int(load_checkpoint(resume_from, checkpoint_variables(trainer)).get("epoch", 0))
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
        sums = {s.name: np.zeros(len(s.names)) for s in trainer.steps}
        counts = dict.fromkeys(sums, 0)
        bar = _progress(range(0, n, batch_size), f"epoch {epoch + 1}/{epochs}", verbose == 1)
        for b, start in enumerate(bar):
            idx, weight = ctx.shard(order[start:start + batch_size])  # this rank's slice of the batch
            batch = (x[idx],) if y is None else (x[idx], y[idx])
            for s in trainer.steps:
                if b % s.every:
                    continue
                for _ in range(s.repeat):
                    vals = s.train_fn(*batch)
                    sums[s.name] += np.array([float(v) for v in vals]) * weight
                    counts[s.name] += weight
            if verbose == 1:
                bar.set_postfix(loss=f"{_first_mean(trainer, sums, counts):.4f}", refresh=False)
        logs = {}
        for s in trainer.steps:
            total = ctx.total(np.append(sums[s.name], counts[s.name]))  # summed over the ranks
            logs.update(zip(s.names, (total[:-1] / max(total[-1], 1)).tolist()))
        logs["epoch_time"] = time.perf_counter() - t0
        if validation_data is not None:
            vdata = _validation(validation_data, y is not None)
            val = ctx.evaluate(*vdata) if len(vdata) == 2 else trainer.evaluate(*vdata)
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


def _first_mean(trainer: Trainer, sums: dict, counts: dict) -> float:
    s = trainer.steps[0]
    return float(sums[s.name][0] / max(counts[s.name], 1))


def _validation(data, labelled: bool) -> tuple:
    if isinstance(data, np.ndarray):
        data = (data,)
    data = tuple(data)
    want = 2 if labelled else 1
    if len(data) != want:
        raise ValueError(f"fit: validation_data must be {'(x_val, y_val)' if labelled else 'x_val or (x_val,)'}, "
                         f"got {len(data)} arrays")
    xv = _as_array(data[0], "x_val")
    return (xv,) if not labelled else (xv, _as_array(data[1], "y_val"))


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
