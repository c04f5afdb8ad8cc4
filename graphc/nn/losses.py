"""Loss functions: each builds graph Vars from predictions and targets.

Every loss takes ``reduction="mean" | "sum" | "none"``:

* ``"none"`` returns the unreduced loss: one value per element for the elementwise losses
  (`mse`, `mae`, `pseudo_huber`, `binary_crossentropy`, `hinge`, `squared_hinge`, `gaussian_nll`),
  one value per example for the losses that consume the last axis (`categorical_crossentropy`,
  `multiclass_hinge`, `kl_normal`).
* ``"mean"`` (the default) averages that over everything, which is the mean over examples of each
  example's mean loss (Keras' ``sum_over_batch_size`` and PyTorch's ``mean`` agree on this).
* ``"sum"`` sums it.

Predictions and targets must have the same shape (a dimension that is None matches anything); a
loss never broadcasts them silently, since ``(N, 1)`` against ``(N,)`` would build an ``(N, N)``
loss. Targets are cast to the prediction's dtype, so a float32 model stays float32.

>>> import numpy as np, graphc as gc
>>> from graphc.nn import losses
>>> pred = gc.placeholder("pred", (None, 3))
>>> losses.mse(pred, gc.placeholder("t", (None, 3))).shape
()
>>> losses.categorical_crossentropy(pred, gc.placeholder("y", (None,), "int32"), reduction="none").shape
(None,)
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..core import Var, compatible, dtype_error, is_float, is_int, shape_error
from ..ops import as_var

REDUCTIONS = ("mean", "sum", "none")

__all__ = [
    "REDUCTIONS", "binary_crossentropy", "categorical_crossentropy", "gaussian_nll", "hinge", "kl_normal", "mae",
    "mse", "multiclass_hinge", "pseudo_huber", "reduce", "squared_hinge",
]


# -- helpers -----------------------------------------------------------------------------------


def _check_reduction(reduction, name: str) -> None:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")


def reduce(loss: Var, reduction: str = "mean") -> Var:
    """Apply `reduction` ("mean", "sum" or "none") to an unreduced loss.

    >>> import graphc as gc
    >>> reduce(gc.placeholder("l", (None,)), "sum").shape
    ()
    """
    _check_reduction(reduction, "reduce")
    loss = as_var(loss)
    if reduction == "none" or loss.ndim == 0:
        return loss
    return ops.mean(loss) if reduction == "mean" else ops.sum(loss)


def _var(x) -> Var:
    return x if isinstance(x, Var) else as_var(np.asarray(x))


def _as_float(x) -> Var:
    """`x` as a float Var (ints and bools become float64, as in NumPy)."""
    x = _var(x)
    return x if is_float(x.dtype) else ops.cast(x, "float64")


def _like(x, ref: Var) -> Var:
    """`x` as a Var of `ref`'s dtype (targets follow the prediction's precision)."""
    return ops.cast(_var(x), ref.dtype)


def _same_shape(name: str, a: Var, b: Var, an: str, bn: str) -> None:
    if not compatible(a.shape, b.shape):
        raise shape_error(name, f"{an} {a.shape} and {bn} {b.shape} must have the same shape "
                                "(losses do not broadcast; reshape one of them)")


def _check_labels(name: str, scores: Var, labels: Var) -> None:
    if scores.ndim < 1:
        raise shape_error(name, f"scores/logits need a class axis (at least 1-D), got shape {scores.shape}")
    if scores.shape[-1] is None:
        raise shape_error(name, f"the class axis (last) of {scores.shape} must have a static size")
    if not compatible(scores.shape[:-1], labels.shape):
        raise shape_error(name, f"integer labels must have shape {scores.shape[:-1]} for logits/scores "
                                f"{scores.shape}, got {labels.shape}")


def _as_labels(name: str, labels) -> Var:
    labels = _var(labels)
    if not is_int(labels.dtype):
        raise dtype_error(name, f"labels must be integer class indices, got dtype {labels.dtype}")
    return labels


# -- regression --------------------------------------------------------------------------------


def mse(pred, target, reduction: str = "mean") -> Var:
    """Mean squared error ``(pred - target)**2``.

    >>> import numpy as np, graphc as gc
    >>> loss = mse(gc.constant(np.array([1.0, 2.0])), np.array([0.0, 4.0]))
    >>> float(gc.function([], loss, backend="ref")())
    2.5
    """
    _check_reduction(reduction, "mse")
    pred = _as_float(pred)
    target = _like(target, pred)
    _same_shape("mse", pred, target, "pred", "target")
    return reduce(ops.square(pred - target), reduction)


def mae(pred, target, reduction: str = "mean") -> Var:
    """Mean absolute error ``|pred - target|`` (gradient ``sign(pred - target)``).

    >>> import numpy as np, graphc as gc
    >>> loss = mae(gc.constant(np.array([1.0, 2.0])), np.array([0.0, 4.0]), reduction="sum")
    >>> float(gc.function([], loss, backend="ref")())
    3.0
    """
    _check_reduction(reduction, "mae")
    pred = _as_float(pred)
    target = _like(target, pred)
    _same_shape("mae", pred, target, "pred", "target")
    return reduce(ops.abs(pred - target), reduction)


def pseudo_huber(pred, target, delta: float = 1.0, reduction: str = "mean") -> Var:
    """Pseudo-Huber loss ``delta**2 * (sqrt(1 + ((pred - target) / delta)**2) - 1)``: quadratic near 0,
    linear with slope `delta` far away, smooth everywhere.

    >>> import numpy as np, graphc as gc
    >>> loss = pseudo_huber(gc.constant(np.array([0.0, 3.0])), np.array([0.0, -1.0]), delta=3.0)
    >>> round(float(gc.function([], loss, backend="ref")()), 6)  # mean of 0 and 9 * (5/3 - 1)
    3.0
    """
    _check_reduction(reduction, "pseudo_huber")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not delta > 0 or math.isinf(delta):
        raise ValueError(f"pseudo_huber: delta must be a positive finite number, got {delta!r}")
    pred = _as_float(pred)
    target = _like(target, pred)
    _same_shape("pseudo_huber", pred, target, "pred", "target")
    d2 = float(delta) ** 2
    r = ops.square(pred - target) * (1.0 / d2)
    return reduce((ops.sqrt(1.0 + r) - 1.0) * d2, reduction)


def gaussian_nll(mean, log_var, target, reduction: str = "mean") -> Var:
    """Negative log-likelihood of `target` under ``N(mean, exp(log_var))``:
    ``0.5 * (log(2*pi) + log_var + (target - mean)**2 / exp(log_var))``.

    `log_var` may broadcast against `mean` (a shared or per-feature variance), `target` may not.

    >>> import numpy as np, graphc as gc
    >>> loss = gaussian_nll(gc.constant(np.zeros(2)), np.zeros(2), np.zeros(2))
    >>> round(float(gc.function([], loss, backend="ref")()), 6)  # 0.5 * log(2 pi)
    0.918939
    """
    _check_reduction(reduction, "gaussian_nll")
    mean = _as_float(mean)
    target = _like(target, mean)
    log_var = _like(log_var, mean)
    _same_shape("gaussian_nll", mean, target, "mean", "target")
    lv, m = log_var.shape, mean.shape
    if len(lv) > len(m) or not all(a == 1 or a is None or b is None or a == b for a, b in zip(lv[::-1], m[::-1])):
        raise shape_error("gaussian_nll", f"log_var {lv} must broadcast to the shape of mean {m}")
    nll = 0.5 * (math.log(2 * math.pi) + log_var + ops.square(target - mean) * ops.exp(-log_var))
    return reduce(nll, reduction)


# -- binary classification ---------------------------------------------------------------------


def binary_crossentropy(logits, target, reduction: str = "mean") -> Var:
    """Binary cross-entropy of `target` in [0, 1] under ``sigmoid(logits)``, from the logits:
    ``softplus(z) - t * z``, which equals ``-(t log s(z) + (1 - t) log(1 - s(z)))`` without ever
    forming ``log(sigmoid)``; finite for any logits, gradient ``sigmoid(z) - t``.

    >>> import numpy as np, graphc as gc
    >>> loss = binary_crossentropy(gc.constant(np.array([0.0, 1000.0])), np.array([1.0, 0.0]), reduction="none")
    >>> gc.function([], loss, backend="ref")().round(4).tolist()
    [0.6931, 1000.0]
    """
    _check_reduction(reduction, "binary_crossentropy")
    logits = _as_float(logits)
    target = _like(target, logits)
    _same_shape("binary_crossentropy", logits, target, "logits", "target")
    return reduce(ops.softplus(logits) - target * logits, reduction)


def hinge(pred, target, reduction: str = "mean") -> Var:
    """Hinge loss ``max(0, 1 - target * pred)`` for targets in {-1, 1} (the SVM loss).

    >>> import numpy as np, graphc as gc
    >>> loss = hinge(gc.constant(np.array([0.5, 2.0, -1.0])), np.array([1.0, 1.0, 1.0]), reduction="none")
    >>> gc.function([], loss, backend="ref")().tolist()
    [0.5, 0.0, 2.0]
    """
    _check_reduction(reduction, "hinge")
    pred = _as_float(pred)
    target = _like(target, pred)
    _same_shape("hinge", pred, target, "pred", "target")
    return reduce(ops.relu(1.0 - target * pred), reduction)


def squared_hinge(pred, target, reduction: str = "mean") -> Var:
    """Squared hinge loss ``max(0, 1 - target * pred)**2`` for targets in {-1, 1}.

    >>> import numpy as np, graphc as gc
    >>> loss = squared_hinge(gc.constant(np.array([0.5, -1.0])), np.array([1.0, 1.0]), reduction="sum")
    >>> float(gc.function([], loss, backend="ref")())
    4.25
    """
    _check_reduction(reduction, "squared_hinge")
    pred = _as_float(pred)
    target = _like(target, pred)
    _same_shape("squared_hinge", pred, target, "pred", "target")
    return reduce(ops.square(ops.relu(1.0 - target * pred)), reduction)


# -- multi-class classification ----------------------------------------------------------------


def categorical_crossentropy(logits, labels, label_smoothing: float = 0.0, reduction: str = "mean") -> Var:
    """Cross-entropy of `labels` under ``softmax(logits)`` over the last (class) axis, from the logits.

    `labels` are either integer class indices of shape ``logits.shape[:-1]`` (computed with the fused
    `gc.softmax_cross_entropy`; an index outside [0, C) contributes 0, as with `gc.one_hot`) or
    one-hot / soft float labels of the logits' shape (``-sum(labels * log_softmax(logits), -1)``).
    ``label_smoothing = e`` replaces the labels by ``(1 - e) * labels + e / C`` (Keras' definition).
    Stable for any logits: nothing divides by or takes the log of a probability.

    >>> import numpy as np, graphc as gc
    >>> loss = categorical_crossentropy(gc.constant(np.zeros((2, 4))), np.array([0, 3]))
    >>> round(float(gc.function([], loss, backend="ref")()), 6)  # log(4)
    1.386294
    """
    name = "categorical_crossentropy"
    _check_reduction(reduction, name)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    eps = float(label_smoothing)
    logits = _as_float(logits)
    labels = _var(labels)
    if is_int(labels.dtype):
        _check_labels(name, logits, labels)
        loss = ops.softmax_cross_entropy(logits, labels)
        if eps > 0.0:
            c = logits.shape[-1]
            valid = ops.sum(ops.one_hot(labels, c, logits.dtype), -1)  # 0 for an index outside [0, C)
            uniform = -ops.sum(ops.log_softmax(logits, -1), -1) * (1.0 / c)
            loss = loss * (1.0 - eps) + uniform * valid * eps
        return reduce(loss, reduction)
    if not (is_float(labels.dtype) or labels.dtype == "bool"):
        raise dtype_error(name, f"labels must be integer indices or float (one-hot/soft) labels, got {labels.dtype}")
    if logits.ndim < 1:
        raise shape_error(name, f"logits need a class axis (at least 1-D), got shape {logits.shape}")
    labels = ops.cast(labels, logits.dtype)
    if not compatible(logits.shape, labels.shape):
        hint = f"; integer labels would have shape {logits.shape[:-1]}" if labels.ndim == logits.ndim - 1 else ""
        raise shape_error(name, f"float (one-hot/soft) labels must have the logits' shape {logits.shape}, "
                                f"got {labels.shape}{hint}")
    if eps > 0.0:
        if logits.shape[-1] is None:
            raise shape_error(name, f"label smoothing needs a static class axis, got logits {logits.shape}")
        labels = labels * (1.0 - eps) + eps / logits.shape[-1]
    return reduce(-ops.sum(labels * ops.log_softmax(logits, -1), -1), reduction)


def multiclass_hinge(scores, labels, margin: float = 1.0, squared: bool = False, reduction: str = "mean") -> Var:
    """Multi-class SVM (Weston-Watkins) hinge loss per example:
    ``sum over j != y of max(0, scores_j - scores_y + margin)`` (each term squared if `squared`).

    `labels` are integer class indices of shape ``scores.shape[:-1]``; an index outside [0, C)
    contributes 0.

    >>> import numpy as np, graphc as gc
    >>> s = gc.constant(np.array([[3.0, 1.0, 2.5], [0.0, 0.0, 0.0]]))
    >>> gc.function([], multiclass_hinge(s, np.array([0, 1]), reduction="none"), backend="ref")().tolist()
    [0.5, 2.0]
    """
    name = "multiclass_hinge"
    _check_reduction(reduction, name)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin):
        raise ValueError(f"{name}: margin must be a finite number, got {margin!r}")
    scores = _as_float(scores)
    labels = _as_labels(name, labels)
    _check_labels(name, scores, labels)
    hot = ops.one_hot(labels, scores.shape[-1], scores.dtype)
    true_score = ops.sum(scores * hot, -1, keepdims=True)
    terms = ops.relu(scores - true_score + float(margin)) * (1.0 - hot)
    if squared:
        terms = ops.square(terms)
    loss = ops.sum(terms, -1) * ops.sum(hot, -1)
    return reduce(loss, reduction)


# -- variational autoencoders ------------------------------------------------------------------


def kl_normal(mu, log_var, reduction: str = "mean") -> Var:
    """``KL(N(mu, exp(log_var)) || N(0, 1))`` summed over the last (latent) axis, one value per example:
    ``-0.5 * sum(1 + log_var - mu**2 - exp(log_var), -1)`` (the VAE regulariser).

    >>> import numpy as np, graphc as gc
    >>> kl = kl_normal(gc.constant(np.array([[1.0, 0.0]])), np.zeros((1, 2)), reduction="none")
    >>> gc.function([], kl, backend="ref")().tolist()
    [0.5]
    """
    _check_reduction(reduction, "kl_normal")
    mu = _as_float(mu)
    log_var = _like(log_var, mu)
    if mu.ndim < 1:
        raise shape_error("kl_normal", f"mu needs a latent axis (at least 1-D), got shape {mu.shape}")
    _same_shape("kl_normal", mu, log_var, "mu", "log_var")
    kl = ops.sum(1.0 + log_var - ops.square(mu) - ops.exp(log_var), -1) * -0.5
    return reduce(kl, reduction)
