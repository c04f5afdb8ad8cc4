"""Collective ops across MPI ranks: `Allreduce`, and the process's view of the MPI world.

MPI is optional: nothing here imports mpi4py until a collective actually runs inside a job
started by ``mpiexec``. Outside one, `world()` is None, the job has one rank, and an allreduce
is the identity (the sum or the mean over a single rank), so the same training script runs
unchanged with and without MPI.

The op reduces several tensors at once (all gradients of a step): the compiled backends lay its
outputs out as one contiguous region and make one ``MPI_Allreduce`` over it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import weakref
from dataclasses import dataclass

import numpy as np

from ..core import Constant, Op, Placeholder, SharedVar, TensorType, Var, is_float, shape_error, toposort

# Environment variables that launchers set in every rank: MPICH/Intel MPI hydra and Slurm (PMI),
# Open MPI, PMIx, MVAPICH. Their absence means "not under mpiexec": no MPI is loaded at all.
_LAUNCHER_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")
REDUCTIONS = ("sum", "mean")


def default_threads_per_rank() -> None:
    """Under mpiexec, give each rank its share of the cores: OMP_NUM_THREADS and
    OPENBLAS_NUM_THREADS default to ``cores // ranks on this host`` (as torchrun does), unless
    set already. Ranks that each start a thread per core oversubscribe the machine: on 2 cores
    an MNIST epoch on 2 ranks measured 40x slower. Runs when graphc is imported, before any
    generated library (and so OpenBLAS) is loaded."""
    if not launched_under_mpi():
        return
    local = 1
    for var in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"):
        if os.environ.get(var, "").isdigit():
            local = max(1, int(os.environ[var]))
            break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(max(1, cores // local)))


class DistributedError(RuntimeError):
    """Ranks disagree (different graphs, shapes) or a collective cannot run."""


def launched_under_mpi() -> bool:
    """True inside a job started by mpiexec/mpirun/srun. ``GRAPHC_MPI=0`` or ``1`` overrides.

    >>> import os; os.environ.get("PMI_SIZE") is None and not launched_under_mpi()
    True
    """
    forced = os.environ.get("GRAPHC_MPI", "")
    if forced in ("0", "1"):
        return forced == "1"
    return any(os.environ.get(v) for v in _LAUNCHER_VARS)


default_threads_per_rank()


class World:
    """The MPI state graphc uses: a private duplicate of COMM_WORLD (graphc's collectives never
    match a user's own messages), rank, size, and the raw handles the generated C passes to
    ``MPI_Allreduce`` of the same libmpi that mpi4py loaded."""

    def __init__(self):
        try:
            from mpi4py import MPI
        except ImportError as e:  # launched by mpiexec but the extra is missing
            raise DistributedError("graphc.distributed: this process was started by mpiexec, but mpi4py is not "
                                   "installed; pip install 'graphc[mpi]'") from e
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self._native = None
        if self.size > 1:
            install_abort_hook(self)

    def native(self) -> dict[str, int]:
        """Addresses and handle values for generated code: ``allreduce`` (the function),
        ``in_place`` (MPI_IN_PLACE), ``comm``, ``sum``, ``float32``/``float64``/``int32``/``int64``
        datatypes, and ``handle_bytes`` (4 on MPICH's ABI, 8 where handles are pointers)."""
        if self._native is None:
            import ctypes

            MPI = self.MPI
            # dlsym through mpi4py's own extension module finds the MPI_Allreduce it is linked
            # with, whichever libmpi (MPICH, Open MPI, the standard ABI) mpi4py picked at run time
            lib = ctypes.CDLL(MPI.__file__, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
            self._native = {k: _int64(v) for k, v in {
                "allreduce": ctypes.cast(lib.MPI_Allreduce, ctypes.c_void_p).value,
                "in_place": int(MPI.IN_PLACE),
                "comm": int(self.comm.handle),
                "sum": int(MPI.SUM.handle),
                "float32": int(MPI.FLOAT.handle), "float64": int(MPI.DOUBLE.handle),
                "int32": int(MPI.INT32_T.handle), "int64": int(MPI.INT64_T.handle),
                "handle_bytes": int(MPI._sizeof(MPI.Comm)),
            }.items()}
        return self._native

    def datatype(self, dtype: str):
        MPI = self.MPI
        return {"float32": MPI.FLOAT, "float64": MPI.DOUBLE, "int32": MPI.INT32_T, "int64": MPI.INT64_T}[dtype]

    def agree(self, fingerprint: int, describe, what: str) -> None:
        """Raise DistributedError unless every rank passes the same `fingerprint`. Polls a
        non-blocking allgather with a deadline ($GRAPHC_MPI_TIMEOUT seconds, default 300), so a
        rank that never gets here is reported instead of hanging the job. `describe()` gives the
        text shown per rank when they differ."""
        if self.size == 1:
            return
        mine = np.array([fingerprint & (2**63 - 1)], np.int64)
        every = np.zeros(self.size, np.int64)
        req = self.comm.Iallgather(mine, every)
        deadline = time.monotonic() + float(os.environ.get("GRAPHC_MPI_TIMEOUT", "300"))
        pause = 1e-5
        while not req.Test():
            if time.monotonic() > deadline:
                raise DistributedError(f"{what}: rank {self.rank} waited {os.environ.get('GRAPHC_MPI_TIMEOUT', '300')}"
                                       " s for the other ranks to reach the same collective; they run a different "
                                       "program or stopped")
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        if len(set(every.tolist())) > 1:
            texts = self.comm.allgather(describe())
            lines = "\n".join(f"  rank {r}: {t}" for r, t in enumerate(texts))
            raise DistributedError(f"{what}: the ranks built different graphs or shared variables of different "
                                   f"shapes, so their collectives would not match:\n{lines}")


def _int64(v: int) -> int:
    """`v` as a signed 64-bit value (mpi4py reports some C int handles sign-extended to 64
    unsigned bits); the generated C truncates it back to the handle's width."""
    v = int(v) & (2**64 - 1)
    return v - 2**64 if v >= 2**63 else v


_world: World | None = None
_world_known = False


def world() -> World | None:
    """The MPI world, initialised on first use; None when not started by mpiexec."""
    global _world, _world_known
    if not _world_known:
        _world = World() if launched_under_mpi() else None
        _world_known = True
    return _world


def install_abort_hook(w: World) -> None:
    """An uncaught exception on any rank prints its traceback (prefixed with the rank) and
    aborts the whole job: the other ranks, blocked in a collective, would otherwise wait forever."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        try:
            import traceback

            text = "".join(traceback.format_exception(kind, value, tb))
            sys.stderr.write("".join(f"[rank {w.rank}] {line}\n" for line in text.rstrip("\n").split("\n")))
            sys.stderr.write(f"[rank {w.rank}] graphc.distributed: aborting all {w.size} ranks\n")
            sys.stderr.flush()
        finally:
            if kind is KeyboardInterrupt:
                previous(kind, value, tb)
            w.MPI.COMM_WORLD.Abort(1)

    sys.excepthook = hook


# -- the op --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allreduce(Op):
    """Reduce `n` tensors over every rank (``reduce`` is "sum" or "mean"); output i is the
    reduction of input i. The backends place the outputs in one contiguous region and make one
    MPI call for all of them."""

    reduce: str
    n: int = 1
    foldable = False  # a constant input still needs every rank's value
    #: tells the memory plan: outputs in one contiguous region, output i may reuse input i's memory
    packed_outputs = True

    @property
    def nout(self):
        return self.n

    def infer(self, *types: TensorType):
        if self.reduce not in REDUCTIONS:
            raise shape_error("allreduce", f"op must be 'sum' or 'mean', got {self.reduce!r}")
        if len(types) != self.n or not types:
            raise shape_error("allreduce", f"expected {self.n} inputs, got {len(types)}")
        dtypes = {t.dtype for t in types}
        if len(dtypes) != 1:
            raise shape_error("allreduce", f"all inputs must share one dtype, got {sorted(dtypes)}")
        (dtype,) = dtypes
        if dtype not in ("float32", "float64", "int32", "int64"):
            raise shape_error("allreduce", f"dtype must be float32, float64, int32 or int64, got {dtype}")
        if self.reduce == "mean" and not is_float(dtype):
            raise shape_error("allreduce", f"op='mean' needs a float dtype, got {dtype}; use op='sum'")
        return tuple(types)

    def infer_shape(self, node, shapes):
        return [tuple(s) for s in shapes]

    def perform(self, node, *arrays):
        w = world()
        if w is None or w.size == 1:
            return tuple(np.array(a, copy=True) for a in arrays)
        check_once(node, w)
        # one contiguous buffer and one call, as in the compiled backends
        buf = np.concatenate([np.ascontiguousarray(a).reshape(-1) for a in arrays]) if arrays else np.zeros(0)
        w.comm.Allreduce(w.MPI.IN_PLACE, [buf, w.datatype(buf.dtype.name)], op=w.MPI.SUM)
        if self.reduce == "mean":
            buf /= buf.dtype.type(w.size)
        out, start = [], 0
        for a in arrays:
            out.append(buf[start:start + a.size].reshape(a.shape).copy())
            start += a.size
        return tuple(out)

    def vjp(self, node, cotangents):
        # every rank's output is the same function of every rank's input: the cotangent of x_r is
        # the same reduction of the output cotangents (the mean's vjp is the mean, the sum's the sum)
        from .shape import zeros_like

        cots = [c if c is not None else zeros_like(o) for c, o in zip(cotangents, node.outputs)]
        out = apply_allreduce(cots, self.reduce)
        return [g if is_float(x.dtype) else None for g, x in zip(out, node.inputs)]


def apply_allreduce(xs: list[Var], reduce: str) -> list[Var]:
    """The outputs of one Allreduce node over `xs`."""
    node = Allreduce(reduce, len(xs))(*xs)
    return [node] if len(xs) == 1 else list(node)


# -- agreement between ranks ----------------------------------------------------------------------

_checked: weakref.WeakSet = weakref.WeakSet()


def check_once(node, w: World) -> None:
    """Compare `node`'s fingerprint across ranks the first time this process runs it."""
    if node in _checked:
        return
    _checked.add(node)
    w.agree(fingerprint(node), lambda: describe(node), "allreduce")


def fingerprint(node) -> int:
    """A hash of everything that must match across ranks for `node` to pair up: its op, the
    static types of what it reduces, and the structure of the graph computing them (op names,
    attributes, leaf types; not shared variables' names, which depend on creation order)."""
    h = hashlib.blake2b(digest_size=8)
    index: dict[int, int] = {}
    nodes = toposort(node.inputs) + [node]

    def ref(v: Var) -> str:
        if v.owner is not None:
            return f"n{index[id(v.owner)]}.{v.index}"
        if isinstance(v, Constant):
            return f"c{v.type}:{hashlib.blake2b(v.value.tobytes(), digest_size=8).hexdigest()}"
        if isinstance(v, SharedVar):
            return f"s{v.type}"
        if isinstance(v, Placeholder):
            return f"p{v.name}:{v.type}"
        return f"?{v.type}"

    for i, n in enumerate(nodes):
        index[id(n)] = i
        attrs = ",".join(f"{k}={_plain(a)}" for k, a in sorted(n.op.attrs().items()))
        h.update(f"{type(n.op).__name__}({attrs})[{' '.join(ref(v) for v in n.inputs)}];".encode())
    return int.from_bytes(h.digest(), "little")


def describe(node) -> str:
    shapes = ", ".join(f"{v.dtype}{list(v.shape)}" for v in node.inputs)
    return f"allreduce({node.op.reduce}) of {len(node.inputs)} tensor(s): {shapes}; graph hash {fingerprint(node):016x}"


def _plain(a) -> str:
    if isinstance(a, (bool, int, float, str, type(None))):
        return repr(a)
    if isinstance(a, (tuple, list)):
        return "(" + ",".join(_plain(x) for x in a) + ")"
    if isinstance(a, Var):
        return str(a.type)
    return type(a).__name__
