"""`graphc bench`: every workload agrees with its NumPy twin (tiny sizes), the CLI writes its
outputs, and the correctness gate refuses a wrong kernel before anything is timed. No timing is
asserted here (performance is measured by the benchmark, never by unit tests)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graphc import bench
from graphc.cli import main as cli_main

TIMED = [n for n, w in {**bench.WORKLOADS, **bench.EXTRA_WORKLOADS}.items() if not isinstance(w, bench.CompileTime)]


@pytest.mark.parametrize("name", TIMED)
def test_graphc_matches_numpy_twin_tiny(name):
    wl = bench.get_workload(name)
    data = wl.data("tiny")
    impl = wl.impl("graphc", "tiny")
    bench.gate(wl, "graphc", "tiny", data, impl, data)  # raises on any disagreement
    # the gate is not vacuous: the NumPy twin computes something of the right shape
    out = bench._to_numpy_list(wl.impl("numpy", "tiny").fn(*data[0]))
    assert out and all(np.all(np.isfinite(o)) for o in out)


# The workloads that have no twin for a framework (everything else must have one and pass its gate).
PYTENSOR_NO_TWIN = {"lenet_step", "rnn_step_pyloop", "scan_overhead"}
NO_TWIN = {
    "torch": {"scan_overhead"},
    "torch_compile": {"scan_overhead"},
    "jax": {"lenet_step", "rnn_step_pyloop", "scan_overhead"},
    "pytensor": PYTENSOR_NO_TWIN,
    "pytensor_cvm": PYTENSOR_NO_TWIN,
}


def _twin_test(fw):
    if not bench.framework_available(fw):
        hint = " (`make twins` builds .venv-twins with it)" if fw in bench.frameworks.TWINS else ""
        pytest.skip(f"{fw} is not installed in {bench.child_python(fw)}{hint}")
    results = bench.run_child(fw, TIMED, bench.MODES["tiny"])
    assert {n: r["failed"] for n, r in results.items() if r["failed"]} == {}
    # every workload is timed, except those that declare they have no twin for this framework
    assert {n for n, r in results.items() if fw not in r["times"]} == NO_TWIN[fw]
    assert all(fw in r.get("no_twin", {}) for n, r in results.items() if n in NO_TWIN[fw])
    return results


# PyTensor compiles each graph (C VM: g++; default mode: Numba) on first use: minutes with a cold
# ~/.pytensor cache
@pytest.mark.parametrize("fw", ["torch", "jax", pytest.param("pytensor", marks=pytest.mark.slow)])
def test_twins_match_numpy_tiny(fw):
    """Each PyTorch, JAX and PyTensor twin passes the gate (in a child process, as in the
    benchmark; JAX and PyTensor under the twins venv's Python where `make twins` built one)."""
    results = _twin_test(fw)
    if fw == "pytensor":  # the default mode is Numba's: no VM of thunks
        assert {r["thunks"][fw]["linker"] for n, r in results.items() if n not in NO_TWIN[fw]} == {"NumbaLinker"}


@pytest.mark.slow
def test_pytensor_cvm_twins_match_numpy_and_run_c_thunks():
    """The PyTensor C VM twins pass the gate, PyTensor parsed the BLAS flag the bench gave it, and
    every node runs a C thunk but the advanced indexing ops (no C code in PyTensor): no gemm
    falls back to Python."""
    results = _twin_test("pytensor_cvm")
    lib = bench.frameworks.openblas_library()
    if lib is None:
        pytest.skip("no libopenblas.so (apt-get install libopenblas-dev): the C VM runs without a BLAS")
    for name, r in results.items():
        if name in PYTENSOR_NO_TWIN:
            continue
        assert "-lopenblas" in r["info"]["blas__ldflags"] and r["blas"] == f"OpenBLAS {lib}"
        th = r["thunks"]["pytensor_cvm"]
        assert th["linker"] == "VMLinker" and th["c_thunks"] > 0, (name, th)
        assert set(th["py_thunks"]) <= {"AdvancedIncSubtensor", "AdvancedSubtensor{idx_list=(0, 1)}"}, (name, th)


def test_pytensor_frameworks_are_wired():
    """Both PyTensor modes are contenders of their own, run in the twins interpreter, and a
    workload hands each its mode."""
    assert {"pytensor", "pytensor_cvm"} <= set(bench.FRAMEWORKS) and bench.LABELS["pytensor_cvm"] == "PyTensor C VM"
    assert bench.child_python("pytensor_cvm") == bench.child_python("pytensor") == bench.child_python("jax")
    seen = []

    class Probe(bench.Workload):
        def _pytensor(self, size, mode):
            seen.append((size, mode))
            return bench.Impl(lambda: None)

    Probe().impl("pytensor", "tiny")
    Probe().impl("pytensor_cvm", "full")
    assert seen == [("tiny", None), ("full", "CVM")]
    with pytest.raises(NotImplementedError, match="scan_overhead has no PyTensor twin"):
        bench.SCAN_OVERHEAD.impl("pytensor_cvm", "tiny")


def test_openblas_detection_and_child_flags(tmp_path):
    """The C VM child links the OpenBLAS found (and only that child gets a BLAS flag); without
    one it is told nothing and the report says so; a user's own blas__ldflags wins."""
    assert bench.frameworks.openblas_library([str(tmp_path)]) is None
    (tmp_path / "libopenblas.so.0").write_bytes(b"")  # the runtime library alone cannot be linked
    assert bench.frameworks.openblas_library([str(tmp_path)]) is None
    (tmp_path / "libopenblas.so").write_bytes(b"")
    lib = bench.frameworks.openblas_library(["/nonexistent", str(tmp_path)])
    assert lib == str(tmp_path / "libopenblas.so")

    env, blas = bench.children.child_env("pytensor_cvm", {"PYTENSOR_FLAGS": "compiledir=/c", "HOME": "/h"}, lib)
    assert env["HOME"] == "/h" and blas == f"OpenBLAS {lib}"
    assert env["PYTENSOR_FLAGS"].split(",") == ["floatX=float32", "compiledir=/c",
                                               f"blas__ldflags=-L{tmp_path} -lopenblas"]
    env, blas = bench.children.child_env("pytensor", {}, lib)
    assert env["PYTENSOR_FLAGS"] == "floatX=float32" and blas is None
    env, blas = bench.children.child_env("pytensor_cvm", {}, None)
    assert "blas__ldflags" not in env["PYTENSOR_FLAGS"] and "none found" in blas
    env, blas = bench.children.child_env("pytensor_cvm", {"PYTENSOR_FLAGS": "blas__ldflags=-lmkl_rt"}, lib)
    assert env["PYTENSOR_FLAGS"] == "floatX=float32,blas__ldflags=-lmkl_rt" and "-lmkl_rt" in blas
    env, blas = bench.children.child_env("torch", {"X": "1"}, lib)
    assert env == {"X": "1"} and blas is None


def test_run_child_starts_the_cvm_child_with_its_flags(monkeypatch, tmp_path):
    """run_child hands the C VM child its PYTENSOR_FLAGS and the twins interpreter, and keeps
    the child's report (the thunks and the flags PyTensor parsed) with each result."""
    (tmp_path / "libopenblas.so").write_bytes(b"")
    monkeypatch.setattr(bench.children, "openblas_library", lambda: str(tmp_path / "libopenblas.so"))
    started = {}
    line = {"name": "matmul_128", "times": {}, "failed": {}, "build_s": {}, "versions": {},
            "thunks": {"pytensor_cvm": {"linker": "VMLinker", "c_thunks": 1, "py_thunks": [], "scans": 0}},
            "info": {"blas__ldflags": f"-L{tmp_path} -lopenblas"}}

    class FakeChild:
        pid, returncode = 0, 0

        def __init__(self, argv, env, **kw):
            started.update(argv=argv, env=env)

        def communicate(self, timeout=None):
            return bench.CHILD_TAG + json.dumps(line) + "\n", ""

    monkeypatch.setattr(bench.children.subprocess, "Popen", FakeChild)
    (res,) = bench.run_child("pytensor_cvm", ["matmul_128"], bench.MODES["tiny"]).values()
    assert started["argv"][0] == bench.child_python("pytensor_cvm")
    assert json.loads(started["argv"][-1])["framework"] == "pytensor_cvm"
    assert f"blas__ldflags=-L{tmp_path} -lopenblas" in started["env"]["PYTENSOR_FLAGS"].split(",")
    assert res["blas"] == f"OpenBLAS {tmp_path / 'libopenblas.so'}" and res["thunks"] == line["thunks"]


def test_thunk_census_counts_c_python_and_scan_thunks():
    """What the report says the C VM ran: C thunks (carrying ``cthunk``), Python ones (by op),
    and a Scan's inner function counted through its Cython loop."""
    from types import SimpleNamespace as NS

    def c_thunk():
        pass

    c_thunk.cthunk = object()
    inner = NS(nodes=[NS(op="Elemwise{tanh}"), NS(op="Dot22")], thunks=[c_thunk, lambda: None])
    vm = NS(nodes=[NS(op="Dot22"), NS(op=NS(_fn=NS(vm=inner))), NS(op="AdvancedSubtensor")],
            thunks=[c_thunk, lambda: None, lambda: None])
    f = NS(maker=NS(linker=NS()), vm=vm)
    assert bench.frameworks.thunk_census(f) == {"linker": "SimpleNamespace", "c_thunks": 2, "scans": 1,
                                                "py_thunks": ["AdvancedSubtensor", "Dot22"]}
    assert bench.frameworks.thunk_census(NS(maker=NS(linker=NS()), vm=lambda: None)) == {"linker": "SimpleNamespace"}


def test_report_names_twins_faster_than_graphc_and_the_cvm_blas(monkeypatch):
    """The table's last column names each contender faster than graphc (PyTensor's modes among
    them), and the summary says which BLAS the C VM twin ran and what PyTensor parsed."""
    monkeypatch.setattr(bench.runner, "measure_ceilings", lambda mode: {"copy_GBps": 20.0, "sgemm_GFLOPs": 200.0})
    monkeypatch.setattr(bench.runner, "framework_available", lambda fw: fw.startswith("pytensor"))
    children = []

    def fake_child(fw, names, mode):
        children.append((fw, list(names)))
        t = {"pytensor": 1.0, "pytensor_cvm": 1e-9}[fw]  # the C VM beats any real graphc time
        return {n: {"times": {fw: {"median": t, "q1": t, "q3": t, "min": t, "max": t, "n": 3}}, "failed": {},
                    "build_s": {fw: 0.1}, "thunks": {fw: {"linker": "VMLinker", "c_thunks": 3, "scans": 0,
                                                          "py_thunks": ["AdvancedSubtensor"]}},
                    "blas": "OpenBLAS /x/libopenblas.so" if fw == "pytensor_cvm" else None,
                    "info": {"blas__ldflags": "-L/x -lopenblas", "floatX": "float32", "default_linker": "NumbaLinker"}}
                for n in names}

    monkeypatch.setattr(bench.runner, "run_child", fake_child)
    results = bench.run(["ew_short"], "tiny")
    assert children == [("pytensor", ["ew_short"]), ("pytensor_cvm", ["ew_short"])]
    (row,) = results["workloads"]
    assert row["speedup"]["pytensor_cvm"] < 1 < row["speedup"]["pytensor"]
    table = bench.markdown_table(results)
    header, _, line = table.splitlines()[:3]
    assert header.rstrip(" |").endswith("faster than graphc") and line.rstrip(" |").endswith("| PyTensor C VM")
    assert "`ew_short` PyTensor C VM: 3 C thunks; Python thunks: AdvancedSubtensor." in table
    text = bench.summary_text(results, "graphc bench")
    assert "PyTensor C VM BLAS: OpenBLAS /x/libopenblas.so; PyTensor's blas__ldflags: `-L/x -lopenblas`" in text
    assert "PyTensor: the default mode (NumbaLinker), floatX float32." in text


def test_recurrent_numpy_twin_bptt_matches_finite_differences():
    """The hand-written BPTT of the NumPy twin (the gate's reference) against central differences
    in float64, for the LSTM and the tanh RNN."""
    rng = np.random.default_rng(0)
    for cell in ("lstm", "rnn"):
        net = bench.NumpyRecurrent(cell, 3, 4)
        net.params = [p.astype("float64") for p in net.params]
        x, y = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 4))
        _, grads = net.grads(x, y)
        for p, g in zip(net.params, grads):
            for idx in [(0,) * p.ndim, tuple(s - 1 for s in p.shape), tuple(s // 2 for s in p.shape)]:
                old = p[idx]
                p[idx] = old + 1e-6
                up = net.grads(x, y)[0]
                p[idx] = old - 1e-6
                down = net.grads(x, y)[0]
                p[idx] = old
                assert g[idx] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9), (cell, p.shape, idx)


def test_recurrent_rows_report_per_step_cost_and_gemm_ceiling():
    row = {"name": "lstm_step", "times": {"graphc": {"median": 0.2}, "numpy": {"median": 0.4}}}
    bench.runner.extra_figures(row, bench.LSTM_STEP, "full", {"sgemm_GFLOPs": 100.0, "copy_GBps": 20.0})
    # T=100, B=64, D=64, H=256: 2*T*B*4H*(2D + 3H) FLOPs of gemm at 100 GFLOP/s
    assert row["gemm_flops"] == 2 * 100 * 64 * 1024 * (2 * 64 + 3 * 256)
    assert row["gemm_ceiling_s"] == pytest.approx(row["gemm_flops"] / 1e11)
    assert row["per_step_s"] == {"graphc": pytest.approx(2e-3), "numpy": pytest.approx(4e-3)}
    lines = bench.report._extra_lines(row)
    assert "per step (100 steps): graphc 2 ms, NumPy 4 ms" in lines[0] and "gemm ceiling" in lines[1]


@pytest.mark.slow
def test_torch_compile_twins_match_numpy_tiny():
    _twin_test("torch_compile")


def test_cost_model_counts_flops_and_bytes():
    assert bench.get_workload("matmul_128").cost("full") == (2 * 128**3, 12 * 128 * 128)
    flops, nbytes = bench.MLP_ADAM.cost("full")
    assert 4.1e8 < flops < 4.3e8 and nbytes > 6 * 4 * 669_706
    row = {"times": {"graphc": {"median": 1e-3}, "numpy": {"median": 2e-3}}, "flops": 1e6, "bytes": 1e8}
    bench.finish_row(row, {"sgemm_GFLOPs": 100.0, "copy_GBps": 20.0})
    assert row["bound"] == "memory" and row["speedup"]["numpy"] == pytest.approx(2.0)
    assert row["roofline_fraction"]["graphc"] == pytest.approx(5e-3 / 1e-3)  # 100 MB at 20 GB/s = 5 ms


def test_select_names_globs_and_prefixes():
    assert bench.select(None) == list(bench.WORKLOADS)
    assert bench.select("matmul") == ["matmul_128", "matmul_512", "matmul_1024"]
    assert bench.select("sum_*,xent") == ["sum_axis0", "sum_axis1", "sum_all", "xent"]
    assert bench.select("mlp_sgd_16") == ["mlp_sgd_16"]
    assert bench.select("lenet") == ["lenet_step"]
    assert bench.select("lstm_step,rnn_step,scan_overhead") == ["lstm_step", "rnn_step", "rnn_step_pyloop",
                                                                 "scan_overhead"]
    with pytest.raises(ValueError, match="no workload matches"):
        bench.select("resnet")


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--quick", "--only", "--json", "--plot", "--results"):
        assert flag in out


def test_cli_json_plot_results(tmp_path, capsys):
    res_md = tmp_path / "RESULTS.md"
    res_md.write_text(f"# Results\n\nhand-written intro\n\n{bench.BEGIN_MARK}\nold table\n{bench.END_MARK}\n\n"
                      "## Method notes\n\nkept\n")
    js, png = tmp_path / "b.json", tmp_path / "b.png"
    rc = cli_main(["bench", "--size", "tiny", "--only", "ew_short", "--json", str(js), "--plot", str(png),
                   "--results", str(res_md)])
    results = json.loads(js.read_text())
    assert rc == 0, [(r["name"], r["failed"]) for r in results["workloads"]]
    (row,) = [r for r in results["workloads"] if not r.get("hidden")]
    assert row["name"] == "ew_short" and row["status"] == "ok" and not row["failed"]
    for fw in ["graphc", "numpy"] + [f for f in ("torch", "jax") if bench.framework_available(f)]:
        assert row["times"][fw]["median"] > 0 and row["times"][fw]["n"] >= 3
    assert row["bound"] in ("memory", "compute") and 0 < row["roofline_fraction"]["graphc"]
    assert results["ceilings"]["copy_GBps"] > 0 and results["ceilings"]["sgemm_GFLOPs"] > 0
    assert results["command"].startswith("graphc bench --size tiny --only ew_short")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = res_md.read_text()
    assert "hand-written intro" in md and "## Method notes\n\nkept" in md and "old table" not in md
    assert md.count(bench.BEGIN_MARK) == 1 and "arithmetic chain" in md and "Machine:" in md
    assert "| workload | graphc | NumPy |" in capsys.readouterr().out


def test_gate_refuses_a_broken_kernel_before_timing(monkeypatch):
    wl = bench.SHORT_CHAIN
    good = wl._graphc

    def broken(size):
        impl = good(size)
        return bench.Impl(lambda x: impl.fn(x) + np.float32(1e-2))  # a kernel off by 0.01

    timed = []
    real_time_blocks = bench.time_blocks
    monkeypatch.setattr(wl, "_graphc", broken)
    # patched where they are looked up: run_side lives in bench.harness, run in bench.runner
    monkeypatch.setattr(bench.harness, "time_blocks", lambda *a, **k: timed.append(a) or real_time_blocks(*a, **k))
    monkeypatch.setattr(bench.runner, "measure_ceilings", lambda mode: {"copy_GBps": 20.0, "sgemm_GFLOPs": 200.0})
    monkeypatch.setattr(bench.runner, "framework_available", lambda fw: fw not in ("torch", "torch_compile", "jax"))
    results = bench.run(["ew_short"], "tiny")
    (row,) = results["workloads"]
    assert row["status"] == "FAILED"
    assert "disagrees with NumPy" in row["failed"]["graphc"]
    assert row["times"] == {} and "speedup" not in row and not timed
    assert "FAILED" in bench.markdown_table(results)


def test_results_block_appended_when_no_markers(tmp_path):
    path = tmp_path / "R.md"
    path.write_text("# Title\n\nprose\n")
    results = {"mode": "tiny", "elapsed_s": 1.0, "skipped": {}, "pending": {}, "workloads": [],
               "machine": {"cpu": "cpu", "cores": 2, "usable_cores": 2, "python": "3", "numpy": "2", "graphc": "0",
                           "gcc": "12", "torch": None, "jax": None, "jaxlib": None, "os": "linux", "date": "today"},
               "ceilings": {"copy_GBps": 1.0, "sgemm_GFLOPs": 2.0, "start": {"copy_GBps": 1.0, "sgemm_GFLOPs": 2.0},
                            "end": {"copy_GBps": 1.0, "sgemm_GFLOPs": 2.0}}}
    bench.write_results(str(path), results, "graphc bench --results R.md")
    bench.write_results(str(path), results, "graphc bench --results R.md")  # idempotent: one block
    text = path.read_text()
    assert text.startswith("# Title\n\nprose\n") and text.count(bench.BEGIN_MARK) == 1
    assert "`graphc bench --results R.md`" in text
