"""Every workload of `graphc bench`, by name, in table order, and the `--only` selection."""

from __future__ import annotations

import fnmatch

from .harness import Workload
from .lenet import LeNetStep
from .mlp import COMPILE, MLP_ADAM, MLPStep
from .rnn import LSTM_STEP, RNN_STEP, RNN_STEP_PYLOOP, SCAN_OVERHEAD
from .workloads import LONG_CHAIN, SHORT_CHAIN, CrossEntropy, Matmul, Reduction

# The workloads of `graphc bench`, in table order.
WORKLOADS: dict[str, Workload] = {w.name: w for w in [
    SHORT_CHAIN, LONG_CHAIN, CrossEntropy(), Reduction(0), Reduction(1), Reduction(None),
    Matmul(128), Matmul(512), Matmul(1024), MLP_ADAM, LeNetStep(), LSTM_STEP, RNN_STEP, RNN_STEP_PYLOOP,
    SCAN_OVERHEAD, COMPILE,
]}
# Run only when named with --only: the issue-3 SGD steps (benchmarks/c_backend.py).
EXTRA_WORKLOADS: dict[str, Workload] = {w.name: w for w in [
    MLPStep("sgd", 128, "mlp_sgd_128"), MLPStep("sgd", 16, "mlp_sgd_16"),
]}
PENDING: dict[str, str] = {}


def select(only: str | None) -> list[str]:
    """Workload names matching `only` (comma-separated names or globs; a prefix matches too)."""
    if not only:
        return list(WORKLOADS)
    every = list(WORKLOADS) + list(EXTRA_WORKLOADS)
    names: list[str] = []
    for pat in (p.strip() for p in only.split(",")):
        if not pat:
            continue
        hits = [n for n in every if fnmatch.fnmatch(n, pat) or n.startswith(pat)]
        if not hits:
            raise ValueError(f"no workload matches {pat!r}; workloads: {', '.join(every)}"
                             + "".join(f"; {k} is pending ({v})" for k, v in PENDING.items() if k == pat))
        names += [n for n in hits if n not in names]
    return names


def get_workload(name: str) -> Workload:
    """The workload called `name` (a default or an extra one); KeyError if there is none."""
    return WORKLOADS.get(name) or EXTRA_WORKLOADS[name]
