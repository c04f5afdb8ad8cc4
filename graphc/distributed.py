"""Data-parallel training on MPI (through mpi4py; ``pip install 'graphc[mpi]'``).

Start N copies of the same script with ``mpiexec -n N python script.py``. Each rank computes
the gradients of its slice of the global batch; `DistributedOptimizer` averages them across the
ranks with one allreduce — a node of the training graph, so on the C backend the whole step,
MPI call included, is still one native call — and then applies the wrapped optimizer's update,
identically on every rank. `gc.train.fit` does all of this by itself under mpiexec.

>>> from graphc import distributed as dist
>>> dist.rank(), dist.size()          # outside mpiexec: one rank, and MPI is never loaded
(0, 1)

What is kept per rank: batch-norm moving statistics (each rank normalises its own slice; rank 0's
are the ones checkpoints save) and random streams (dropout masks differ between ranks: the
call counters of a training graph's random ops are offset by ``rank << 40``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .autodiff import grad as _grad
from .core import SharedVar, Var, constant, toposort
from .ops import cast
from .ops.collective import (
    REDUCTIONS,
    Allreduce,
    DistributedError,
    apply_allreduce,
    launched_under_mpi,
    world,
)
from .ops.random import Random, counter_of
from .runtime import shared

__all__ = ["DistributedError", "DistributedOptimizer", "allreduce", "barrier", "broadcast_variables",
           "is_root", "launched_under_mpi", "rank", "size", "Allreduce"]

#: gradients are reduced in buckets of at most this many bytes (Horovod's fusion buffer size)
BUCKET_BYTES = 64 << 20
#: the call counters of random ops on rank r start at r << RNG_RANK_SHIFT: disjoint streams
RNG_RANK_SHIFT = 40


def rank() -> int:
    """This process's rank: 0 outside mpiexec.

    >>> rank()
    0
    """
    w = world()
    return 0 if w is None else w.rank


def size() -> int:
    """The number of ranks: 1 outside mpiexec.

    >>> size()
    1
    """
    w = world()
    return 1 if w is None else w.size


def is_root() -> bool:
    """True on rank 0, the rank that prints, plots and writes checkpoints."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (no-op with one rank)."""
    w = world()
    if w is not None and w.size > 1:
        w.comm.Barrier()


def allreduce(x, op: str = "mean"):
    """The sum or mean of `x` over all ranks, as a graph op (differentiable: the gradient of a
    mean-allreduce is the mean-allreduce of the output's gradient). `x` may be a list of Vars
    of one dtype: they are reduced together in one MPI call and a list comes back. Every rank
    must reduce tensors of the same shapes, in the same order.

    >>> import graphc as gc, numpy as np
    >>> x = gc.placeholder("x", (3,))
    >>> f = gc.function([x], allreduce(x, op="sum"))
    >>> f(np.array([1, 2, 3], "float32")) * size()
    array([1., 2., 3.], dtype=float32)
    """
    if op not in REDUCTIONS:
        raise ValueError(f"allreduce: op must be 'sum' or 'mean', got {op!r}")
    if isinstance(x, (list, tuple)):
        xs = [_as_var(v) for v in x]
        return apply_allreduce(xs, op) if xs else []
    return apply_allreduce([_as_var(x)], op)[0]


def _as_var(x) -> Var:
    return x if isinstance(x, Var) else constant(np.asarray(x))


# -- broadcast -----------------------------------------------------------------------------------


def broadcast_variables(variables: Iterable[SharedVar], root: int = 0) -> None:
    """Copy rank `root`'s values of `variables` into every rank's shared variables (one
    broadcast per dtype). Every rank passes the same variables in the same order; differing
    shapes or dtypes raise DistributedError on every rank (no mismatched broadcast).

    >>> import graphc as gc, numpy as np
    >>> w = gc.shared(np.ones(2, "float32"))
    >>> broadcast_variables([w]); w.get_value()
    array([1., 1.], dtype=float32)
    """
    vs = list(variables)
    for i, v in enumerate(vs):
        if not isinstance(v, SharedVar):
            raise TypeError(f"broadcast_variables: variables[{i}] must be a shared variable, got {v!r}")
    n = size()
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < n:
        raise ValueError(f"broadcast_variables: root must be a rank in [0, {n}), got {root!r}")
    w = world()
    if w is None or w.size == 1:
        return
    meta = [(v.dtype, v.shape) for v in vs]
    import hashlib

    fp = int.from_bytes(hashlib.blake2b(repr(meta).encode(), digest_size=8).digest(), "little")
    w.agree(fp, lambda: f"{len(vs)} variables: " + ", ".join(f"{v.name} {v.dtype}{list(v.shape)}" for v in vs),
            "broadcast_variables")
    for dtype in sorted({v.dtype for v in vs}):
        group = [v for v in vs if v.dtype == dtype]
        buf = np.concatenate([v.get_value().reshape(-1) for v in group]) if group else np.zeros(0, dtype)
        buf = np.ascontiguousarray(buf, dtype=dtype)
        w.comm.Bcast(buf, root=int(root))
        at = 0
        for v in group:
            k = int(np.prod(v.shape, dtype=np.int64))
            v.set_value(buf[at:at + k].reshape(v.shape))
            at += k


# -- the optimizer -------------------------------------------------------------------------------


class DistributedOptimizer:
    """Wrap any `graphc.optim` optimizer: the gradients are mean-allreduced over the ranks (in
    buckets of at most `bucket_bytes`, one MPI call each), then the wrapped optimizer's update
    (clipping included, applied to the averaged gradients) runs on every rank alike.

    With one rank it adds nothing to the graph. `grad_scale` (a float32 shared scalar, 1 by
    default) multiplies the loss before differentiation: `fit` sets it to
    ``local_batch * ranks / global_batch`` when a global batch does not split evenly, so the
    averaged gradient is still exactly the gradient of the global batch's mean loss.
    Everything else (`lr`, `slots`, `variables`, `iterations`, ...) is the wrapped optimizer's.

    >>> import graphc as gc, numpy as np
    >>> opt = DistributedOptimizer(gc.optim.Adam(1e-3))
    >>> W = gc.shared(np.ones((3, 1), "float32"), name="W")
    >>> x = gc.placeholder("x", (None, 3))
    >>> step = gc.function([x], gc.mean(gc.square(x @ W)), updates=opt.updates(gc.mean(gc.square(x @ W)), [W]))
    >>> float(step(np.ones((4, 3), "float32"))), opt.learning_rate
    (9.0, 0.0010000000474974513)
    """

    def __init__(self, optimizer, bucket_bytes: int = BUCKET_BYTES):
        if isinstance(optimizer, DistributedOptimizer):
            raise TypeError("DistributedOptimizer: the optimizer is already distributed")
        if not hasattr(optimizer, "apply_gradients"):
            raise TypeError(f"DistributedOptimizer wraps a graphc.optim optimizer, got {type(optimizer).__name__}")
        if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, (int, np.integer)) or bucket_bytes <= 0:
            raise ValueError(f"DistributedOptimizer: bucket_bytes must be a positive int, got {bucket_bytes!r}")
        self.__dict__["optimizer"] = optimizer
        self.__dict__["bucket_bytes"] = int(bucket_bytes)
        self.__dict__["grad_scale"] = shared(np.float32(1.0), name=f"{optimizer.name}/grad_scale")
        self.__dict__["_offset_counters"] = set()

    def __getattr__(self, name):
        return getattr(self.__dict__["optimizer"], name)

    def __setattr__(self, name, value):
        setattr(self.optimizer, name, value)  # learning_rate = ..., etc. belong to the wrapped one

    def __repr__(self) -> str:
        return f"DistributedOptimizer({self.optimizer!r}, ranks={size()})"

    def updates(self, loss: Var, params: Sequence[SharedVar]) -> list[tuple[SharedVar, Var]]:
        """The wrapped optimizer's update list, from the gradients of `loss` averaged over ranks."""
        params = [params] if isinstance(params, SharedVar) else list(params)
        if size() == 1:
            return self.optimizer.updates(loss, params)
        if not isinstance(loss, Var):
            raise TypeError(f"DistributedOptimizer.updates: loss must be a Var, got {type(loss).__name__}")
        self._offset_random_streams(loss)
        scale = self.grad_scale if loss.dtype == "float32" else cast(self.grad_scale, loss.dtype)
        grads = _grad(loss * scale, params) if params else []
        return self.apply_gradients(list(zip(grads, params)))

    def apply_gradients(self, grads_and_params) -> list[tuple[SharedVar, Var]]:
        """Mean-allreduce the given gradients, then the wrapped optimizer's `apply_gradients`."""
        pairs = list(grads_and_params)
        if size() == 1:
            return self.optimizer.apply_gradients(pairs)
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[0], Var):
                raise TypeError(f"DistributedOptimizer: grads_and_params[{i}] must be a (gradient Var, parameter) pair")
        reduced = self.average([g for g, _ in pairs])
        return self.optimizer.apply_gradients(zip(reduced, [p for _, p in pairs]))

    def average(self, grads: Sequence[Var]) -> list[Var]:
        """The mean over ranks of each gradient: per dtype, buckets of consecutive gradients of
        at most `bucket_bytes`, each one Allreduce node (one MPI call over one contiguous pack)."""
        out: list[Var | None] = [None] * len(grads)
        by_dtype: dict[str, list[int]] = {}
        for i, g in enumerate(grads):
            by_dtype.setdefault(g.dtype, []).append(i)
        for dtype, idx in by_dtype.items():
            item = np.dtype(dtype).itemsize
            bucket: list[int] = []
            used = 0
            for i in idx + [None]:
                nbytes = None if i is None else int(np.prod([d or 1 for d in grads[i].shape], dtype=np.int64)) * item
                if bucket and (i is None or used + nbytes > self.bucket_bytes):
                    for j, r in zip(bucket, apply_allreduce([grads[j] for j in bucket], "mean")):
                        out[j] = r
                    bucket, used = [], 0
                if i is not None:
                    bucket.append(i)
                    used += nbytes
        return out

    def _offset_random_streams(self, loss: Var) -> None:
        """Give each rank its own random stream (dropout masks differ between ranks): offset the
        call counter of every random op of the training graph by ``rank << 40``, once."""
        r = rank()
        for node in toposort([loss]):
            if isinstance(node.op, Random):
                c = counter_of(node)
                if id(c) not in self._offset_counters:
                    self._offset_counters.add(id(c))
                    c.set_value(c.get_value() + (np.int64(r) << RNG_RANK_SHIFT))


# -- fit's hooks ---------------------------------------------------------------------------------


def fit_optimizer(optimizer):
    """The optimizer `fit` builds its trainer with: wrapped in DistributedOptimizer under
    mpiexec with several ranks (the default Adam too), unchanged otherwise."""
    if size() == 1 or isinstance(optimizer, DistributedOptimizer):
        return optimizer
    from . import optim

    return DistributedOptimizer(optimizer if optimizer is not None else optim.Adam())


class FitContext:
    """What `fit` does differently with several ranks; with one rank every method is the
    identity. `shard` takes this rank's slice of a global batch, `total` sums per-rank numbers,
    `evaluate` evaluates a data set split across the ranks."""

    def __init__(self, trainer):
        self.rank, self.size = rank(), size()
        self.root = self.rank == 0
        self.trainer = trainer
        self._scales = []
        if self.size > 1:
            for step in trainer.steps:
                if not isinstance(step.optimizer, DistributedOptimizer):
                    raise DistributedError(
                        f"fit under mpiexec needs every step built with a DistributedOptimizer; step "
                        f"{step.name!r} has {type(step.optimizer).__name__} (fit wraps the optimizers itself "
                        "when it builds the trainer)")
            self._scales = list({id(s.optimizer.grad_scale): s.optimizer.grad_scale for s in trainer.steps}.values())

    def start(self, start_epoch: int) -> int:
        """Broadcast rank 0's weights, optimizer and model state, and its start epoch (from a
        checkpoint only rank 0 may be able to read)."""
        if self.size == 1:
            return start_epoch
        broadcast_variables(self.trainer.variables, root=0)
        return int(world().comm.bcast(int(start_epoch), root=0))

    def verbose(self, verbose: int) -> int:
        return verbose if self.root else 0

    def callbacks(self, callbacks):
        """ModelCheckpoint writes on rank 0 only; every other callback runs on every rank (their
        decisions, like EarlyStopping's, see the same reduced logs everywhere)."""
        if self.root:
            return list(callbacks)
        from .train import ModelCheckpoint

        return [cb for cb in callbacks if not isinstance(cb, ModelCheckpoint)]

    def shard(self, batch: np.ndarray) -> tuple[np.ndarray, int]:
        """(indices this rank trains on, their weight in the batch's totals). The global batch
        is cut in `size` nearly equal consecutive parts. A rank left without samples runs one
        with weight 0, so every rank still joins the allreduce."""
        if self.size == 1:
            return batch, len(batch)
        n = len(batch)
        lo, hi = self.rank * n // self.size, (self.rank + 1) * n // self.size
        mine = batch[lo:hi]
        scale = np.float32(len(mine) * self.size / n)
        for v in self._scales:
            if v.storage[()] != scale:
                v.set_value(scale)
        if len(mine) == 0:
            return batch[:1], 0
        return mine, len(mine)

    def total(self, values: np.ndarray) -> np.ndarray:
        """The sum over ranks (float64)."""
        values = np.ascontiguousarray(values, np.float64)
        if self.size == 1:
            return values
        out = np.empty_like(values)
        w = world()
        w.comm.Allreduce(values, out, op=w.MPI.SUM)
        return out

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict:
        """`trainer.evaluate` over the whole set, each rank evaluating its slice."""
        if self.size == 1:
            return self.trainer.evaluate(x, y)
        n = len(x)
        lo, hi = self.rank * n // self.size, (self.rank + 1) * n // self.size
        names = ["loss"] + list(self.trainer.metric_names)
        sums = np.zeros(len(names) + 1)
        if hi > lo:
            res = self.trainer.evaluate(x[lo:hi], y[lo:hi])
            sums[:-1] = [res[k] * (hi - lo) for k in names]
            sums[-1] = hi - lo
        sums = self.total(sums)
        return dict(zip(names, (sums[:-1] / max(sums[-1], 1)).tolist()))
