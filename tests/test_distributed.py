"""graphc.distributed: single-process behaviour in this process, MPI behaviour through a few
``mpiexec -n K`` launches of tests/mpi_worker.py (each with a time-out, each running several
checks). Skipped only when mpi4py is not installed (`make test` installs the mpi extra)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc import distributed as dist
from graphc.nn import Dense, Sequential, losses

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "mpi_worker.py"


def _mpiexec() -> str | None:
    here = Path(sys.executable).parent / "mpiexec"  # the mpich wheel installs it into the venv
    return str(here) if here.exists() else shutil.which("mpiexec")


def launch(n: int | None, *checks: str, timeout: float = 240, env: dict | None = None):
    """Run the worker under ``mpiexec -n n`` (or as a plain process when n is None). On a time-out
    the whole process group is killed and the test fails with the output so far."""
    pytest.importorskip("mpi4py")
    mpiexec = _mpiexec()
    if n is not None and mpiexec is None:
        pytest.fail("mpi4py is installed but there is no mpiexec (pip install 'graphc[mpi]' brings one)")
    tag = f"--tag={uuid.uuid4().hex}"  # finds leftover ranks afterwards
    cmd = ([mpiexec, "-n", str(n)] if n is not None else []) + [sys.executable, str(WORKER), *checks, tag]
    # the suite's conftest makes "ref" the default backend; the worker's fits run on C
    full_env = {k: v for k, v in os.environ.items() if k not in ("GRAPHC_MPI", "GRAPHC_BACKEND")}
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
    full_env.update(env or {})
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(checks)} on {n} ranks did not finish within {timeout} s:\n{out[-4000:]}")
    # ranks killed by an abort may take a moment to go; none may survive for long
    deadline = time.monotonic() + 15
    while (leftovers := _ranks_with(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in leftovers:
        os.kill(int(pid), signal.SIGKILL)
    assert not leftovers, f"ranks still running 15 s after mpiexec returned: {leftovers}\n{out[-3000:]}"
    return proc.returncode, out


def _ranks_with(tag: str) -> list[str]:
    return [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, tag)]


def _cmdline_has(pid: str, tag: str) -> bool:
    try:
        if tag.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()  # zombies have exited
    except OSError:
        return False


def expect_ok(n, *checks, **kw) -> str:
    rc, out = launch(n, *checks, **kw)
    assert rc == 0, f"{checks} on {n} ranks failed (exit {rc}):\n{out[-6000:]}"
    return out


# -- one process -----------------------------------------------------------------------------------


def test_outside_mpiexec_one_rank_and_no_mpi_loaded():
    code = ("import sys, numpy as np, graphc as gc; from graphc import distributed as d; "
            "x = gc.placeholder('x', (2,)); f = gc.function([x], d.allreduce(x, op='sum')); "
            "assert (f(np.ones(2, 'float32')) == 1).all(); d.broadcast_variables([gc.shared(np.ones(2))]); "
            "print(d.rank(), d.size(), 'mpi4py.MPI' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "PMI_RANK", "GRAPHC_MPI")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "1", "False"]


@pytest.mark.parametrize("backend", ["ref", "c"])
def test_one_rank_allreduce_is_identity_with_gradient(backend):
    x = gc.placeholder("x", (None, 3), "float64")
    y = dist.allreduce(gc.exp(x), op="mean")
    s = dist.allreduce([x * 2.0, gc.sum(x, axis=0)], op="sum")
    g = gc.grad(gc.sum(y * y) + gc.sum(s[1]), x)
    f = gc.function([x], [y, s[0], s[1], g], backend=backend)
    xv = np.linspace(-1, 1, 6).reshape(2, 3)
    yv, s0, s1, gv = f(xv)
    np.testing.assert_allclose(yv, np.exp(xv))
    np.testing.assert_allclose(s0, 2 * xv)
    np.testing.assert_allclose(s1, xv.sum(axis=0))
    np.testing.assert_allclose(gv, 2 * np.exp(2 * xv) + 1, rtol=1e-12)


def test_gradients_are_written_straight_into_one_contiguous_pack():
    """The memory plan puts the reduced gradients back to back, and each gradient's producer (a
    gemm, a bias reduction) writes into the pack itself: the allreduce kernel copies nothing."""
    model = Sequential([Dense(8, activation="relu", seed=1), Dense(3, seed=2)], input_shape=(5,))
    x, t = gc.placeholder("x", (None, 5)), gc.placeholder("t", (None,), "int32")
    loss = losses.categorical_crossentropy(model(x, training=True), t)
    grads = gc.grad(loss, model.params)
    reduced = dist.allreduce(grads, op="mean")
    f = gc.function([x, t], loss, updates=[(p, p - 0.1 * g) for p, g in zip(model.params, reduced)], backend="c")
    prog = f._program
    (pack,) = prog.plan.packs
    assert [m.shape for m in pack] == [p.shape for p in model.params]
    assert all(m.owner.op.name != "allreduce" for m in pack), "a gradient was copied into the pack"
    shapes = prog.graph.bind_shapes([(4, 5), (4,)])
    offsets, _ = prog.plan.layout(shapes)
    at = offsets[id(pack[0])]
    for m in pack:
        assert offsets[id(m)] == at
        at += int(np.prod(m.shape)) * 4
    kernel = prog.source.split("/* op[allreduce] */")[1].split("\n}\n")[0]
    assert "memcpy" not in kernel and kernel.count("call(") == 1
    # and the step still computes plain SGD
    W0 = [p.get_value() for p in model.params]
    ref = gc.function([x, t], grads, backend="ref")
    xv, tv = np.random.default_rng(0).normal(size=(4, 5)).astype("float32"), np.array([0, 1, 2, 1], "int32")
    want = [w - 0.1 * g for w, g in zip(W0, ref(xv, tv))]
    f(xv, tv)
    for p, w in zip(model.params, want):
        np.testing.assert_allclose(p.get_value(), w, rtol=1e-5, atol=1e-6)


def test_debug_mode_and_graph_outputs_of_reduced_values():
    x = gc.placeholder("x", (3,))
    a, b = dist.allreduce([x * 2.0, x * 3.0])
    f = gc.function([x], [a, b, a + b], backend="c", debug=True)
    outs = f(np.arange(3, dtype="float32"))
    np.testing.assert_allclose(outs[2], 5 * np.arange(3))


def test_one_rank_distributed_optimizer_is_the_wrapped_optimizer():
    model = Sequential([Dense(4, seed=1)], input_shape=(3,))
    inner = gc.optim.Adam(1e-2)
    opt = dist.DistributedOptimizer(inner)
    x = gc.placeholder("x", (None, 3))
    loss = gc.mean(gc.square(model(x)))
    ups = opt.updates(loss, model.params)
    assert not any(n.op.name == "allreduce" for _, e in ups for n in gc.core.toposort([e]))
    opt.learning_rate = 0.5
    assert inner.learning_rate == 0.5 and opt.lr is inner.lr and opt.slots == inner.slots
    assert "Adam" in repr(opt)


def test_bad_arguments():
    x = gc.placeholder("x", (2,))
    with pytest.raises(ValueError, match="'sum' or 'mean'"):
        dist.allreduce(x, op="max")
    with pytest.raises(gc.ShapeError, match="one dtype"):
        dist.allreduce([x, gc.placeholder("y", (2,), "float64")])
    with pytest.raises(gc.ShapeError, match="float dtype"):
        dist.allreduce(gc.placeholder("i", (2,), "int32"), op="mean")
    with pytest.raises(ValueError, match="root"):
        dist.broadcast_variables([gc.shared(np.ones(2))], root=1)
    with pytest.raises(TypeError, match="shared variable"):
        dist.broadcast_variables([x])
    with pytest.raises(TypeError, match="graphc.optim"):
        dist.DistributedOptimizer("adam")
    with pytest.raises(TypeError, match="already distributed"):
        dist.DistributedOptimizer(dist.DistributedOptimizer(gc.optim.SGD()))
    with pytest.raises(ValueError, match="bucket_bytes"):
        dist.DistributedOptimizer(gc.optim.SGD(), bucket_bytes=0)


# -- under mpiexec -------------------------------------------------------------------------------


def _load(path):
    with open(path) as fh:
        return json.load(fh)


def _max_diff(a, b):
    return max(float(np.abs(np.array(x) - np.array(y)).max()) for x, y in zip(a, b))


def test_data_parallel_equals_one_process(tmp_path):
    """2 ranks x batch 32 == 1 process x batch 64 (SGD, momentum, Adam; every optimizer for 3
    steps), ranks bitwise identical; allreduce values and gradients; broadcast; per-rank dropout;
    fit on 2 and 3 ranks (uneven shards) == fit in one process, with two compiled steps too; a checkpoint written by the
    2-rank fit resumes the same on 3 ranks and on 1 process; MNIST-5k test accuracy on 2 ranks
    within 0.5% of one process."""
    d1, d2, d3 = (tmp_path / f"r{k}" for k in (1, 2, 3))
    for d in (d1, d2, d3):
        d.mkdir()
    out = expect_ok(2, "allreduce", "equivalence", "optimizers", "broadcast", "dropout", f"fit={d2}", f"mnist={d2}")
    for line in ("OK allreduce 2 ranks", "OK equivalence 2 ranks x batch 32", "OK every optimizer",
                 "OK broadcast", "OK dropout streams", "OK fit"):
        assert line in out, out
    out = expect_ok(3, "allreduce", f"fit={d3}", f"resume={d2}", f"steps={d3}")
    assert "OK allreduce 3 ranks" in out and "OK resume" in out and "OK steps" in out
    expect_ok(None, f"fit={d1}", f"resume={d2}", f"mnist={d1}", f"steps={d1}")
    one, two, three = (_load(d / f"fit{k}.json") for d, k in ((d1, 1), (d2, 2), (d3, 3)))
    for other in (two, three):
        assert _max_diff(one["weights"], other["weights"]) < 1e-5
        np.testing.assert_allclose(other["loss"], one["loss"], rtol=1e-5)
        np.testing.assert_allclose(other["val_loss"], one["val_loss"], rtol=1e-5)
    assert _max_diff(_load(d2 / "resume1.json"), _load(d2 / "resume3.json")) < 1e-5
    # two compiled steps with their own optimizers (a GAN's shape): 3 ranks == one process
    s1, s3 = _load(d1 / "steps1.json"), _load(d3 / "steps3.json")
    assert _max_diff(s1["weights"], s3["weights"]) < 1e-5
    np.testing.assert_allclose(s3["loss"], s1["loss"], rtol=1e-5)
    np.testing.assert_allclose(s3["half_loss"], s1["half_loss"], rtol=1e-5)
    # MNIST-5k, 3 epochs: the 2-rank fit reaches the test accuracy of the 1-process fit
    acc1, acc2 = _load(d1 / "mnist1.json")["accuracy"], _load(d2 / "mnist2.json")["accuracy"]
    assert acc1 > 0.85 and abs(acc1 - acc2) <= 0.005, (acc1, acc2)


def test_allreduce_on_one_and_four_ranks():
    assert "OK allreduce 1 ranks" in expect_ok(1, "allreduce")
    assert "OK allreduce 4 ranks" in expect_ok(4, "allreduce")


@pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")
def test_cuda_backend_allreduce_is_host_staged_on_two_ranks():
    out = expect_ok(2, "allreduce_cuda", timeout=400)
    assert "OK allreduce 2 ranks on cuda" in out and "OK cuda allreduce 2 ranks" in out


def test_a_rank_raising_aborts_every_rank_with_its_message():
    rc, out = launch(2, "raise", timeout=120)
    assert rc != 0
    assert "[rank 1] RuntimeError: deliberate failure on rank 1" in out
    assert "aborting all 2 ranks" in out


def test_different_graphs_on_different_ranks_fail_clearly_at_the_first_step():
    rc, out = launch(2, "mismatch", timeout=120)
    assert rc != 0
    assert "DistributedError" in out and "built different graphs" in out, out[-3000:]
    assert "rank 0: allreduce(mean) of 4 tensor(s): float32[4, 16]" in out
    assert "rank 1: allreduce(mean) of 4 tensor(s): float32[4, 17]" in out
    assert "the mismatched graphs were not detected" not in out


def test_a_rank_that_never_joins_is_reported_not_waited_for():
    rc, out = launch(2, "absent", timeout=60, env={"GRAPHC_MPI_TIMEOUT": "2"})
    assert rc != 0
    assert "waited 2 s for the other ranks" in out, out[-3000:]


def test_the_readme_command_trains_on_two_ranks_and_only_rank_0_prints(tmp_path):
    """`mpiexec -n 2 .venv/bin/python examples/mlp_mnist.py` (the README's command), one epoch."""
    pytest.importorskip("mpi4py")
    cmd = [_mpiexec(), "-n", "2", sys.executable, str(ROOT / "examples" / "mlp_mnist.py"), "--epochs", "1",
           "--plot", str(tmp_path / "mlp.png")]
    env = {k: v for k, v in os.environ.items() if k not in ("GRAPHC_MPI", "GRAPHC_BACKEND")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("test accuracy") == 1 and out.stdout.count("Total params") == 1, out.stdout
    assert out.stderr.count("epoch 1/1") == 1, out.stderr
    accuracy = float(out.stdout.split("test accuracy ")[1].split(",")[0])
    assert accuracy > 0.8
    assert (tmp_path / "mlp.png").exists()
