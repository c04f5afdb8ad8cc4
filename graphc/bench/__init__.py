"""`graphc bench`: graphc side by side with NumPy, PyTorch, JAX and PyTensor, against the machine's limits.

Every workload is defined once, as a graphc graph, with a hand-written NumPy twin (what a good
NumPy user writes: in-place operations where natural) and, when installed, a PyTorch twin (eager,
and ``torch.compile`` in the full run), a JAX twin (``jax.jit``) and a PyTensor twin (one compiled
``pytensor.function``), timed twice: in PyTensor's default mode (Numba) and in its C VM
(``mode="CVM"``, linked to the system's OpenBLAS where ``libopenblas.so`` exists). JAX and
PyTensor run under the twins venv's Python where ``make twins`` built one
(``$GRAPHC_BENCH_TWINS_PYTHON`` overrides).

Method (learned on a 2-core machine; see benchmarks/RESULTS.md):

- **Correctness gate first.** Every graphc output, and every twin's, is compared with the NumPy
  twin's before anything is timed (stateful workloads: a few steps from identical weights, then
  the weights). A mismatch refuses to time the contender: it is recorded as FAILED, with the
  error, never as a time.
- **Alternating blocks.** graphc and NumPy are timed in one process, in alternating blocks; each
  block starts after a settle pause and two untimed calls, because NumPy's OpenBLAS pool and
  graphc's OpenMP/OpenBLAS pools keep spinning for a while after use and a contender timed right
  after another would pay for the other's threads. Inputs rotate among several arrays.
- **Other frameworks in child processes.** PyTorch (its own OpenMP pool), ``torch.compile``,
  JAX (XLA's own thread pool) and each PyTensor mode run in a child process of their own,
  started after the graphc and NumPy timings: in one process their pools would contend with
  NumPy's and graphc's on 2 cores (graphc's MLP step measured 48 ms instead of 3 ms beside an idle-spinning PyTorch).
- **Ceilings in the same run.** Memory bandwidth (``np.copyto`` of 32 MB, read + write) and
  float32 gemm (2048^3) are measured at the start and at the end of the run; the larger of the
  two is the ceiling. Each workload's FLOPs and compulsory bytes are counted, its roofline time
  is ``max(flops / gemm ceiling, bytes / bandwidth)``, and the fraction of the roofline reached is
  that time over the measured median.
- **Statistics.** Medians, with the interquartile range and min-max kept in the JSON.

Programmatic use: ``run(names, mode)`` returns the results dict that ``--json`` writes.

The package, each module importing only those above it:

- ``frameworks``: the contenders, input conversion, the PyTorch/JAX/PyTensor twin helpers, the
  C VM's BLAS flags;
- ``harness``: modes, timing, statistics, the gate, the ``Workload``/``Impl`` protocol;
- ``workloads``, ``mlp``, ``lenet``, ``rnn``: the benchmarks; ``registry``: them by name, ``select``;
- ``children``: the child processes (other frameworks, compile time);
- ``machine``: ceilings, versions, other load; ``runner``: the whole run;
- ``report``, ``plot``: Markdown and PNG output; ``cli``: the ``graphc bench`` command.
"""

from .children import CHILD_CODE, CHILD_TAG, COMPILE_CHILD, child_main, run_child, run_compile
from .cli import add_arguments, main
from .frameworks import (
    FRAMEWORKS,
    LABELS,
    Math,
    child_python,
    convert,
    framework_available,
    jax_fn,
    to_numpy,
    to_numpy_list,
    torch_fn,
)
from .harness import (
    MODES,
    Impl,
    Mode,
    Workload,
    check_close,
    error_text,
    gate,
    median_seconds,
    plan_repeats,
    run_side,
    summarize,
    time_blocks,
)
from .lenet import LeNetStep, NumpyLeNet, graphc_lenet_step, lenet_data, lenet_params
from .machine import cpu_snapshot, machine_info, measure_ceilings, others_load
from .mlp import ADAM, COMPILE, MLP_ADAM, CompileTime, MLPStep, NumpyMLP, adam_update, graphc_mlp_step, mlp_params
from .plot import plot
from .registry import EXTRA_WORKLOADS, PENDING, WORKLOADS, get_workload, select
from .report import BEGIN_MARK, END_MARK, fmt_seconds, markdown_table, summary_text, write_results
from .rnn import (
    LSTM_STEP,
    RNN_STEP,
    RNN_STEP_PYLOOP,
    SCAN_OVERHEAD,
    NumpyRecurrent,
    RecurrentStep,
    ScanOverhead,
    recurrent_params,
)
from .runner import finish_row, run
from .workloads import LONG_CHAIN, SHORT_CHAIN, CrossEntropy, Elementwise, Matmul, Reduction

# the names graphc/bench.py had before it became this package
_to_numpy_list, _child_main, _torch_fn, _jax_fn, _error = to_numpy_list, child_main, torch_fn, jax_fn, error_text
