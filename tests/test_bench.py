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
NO_TWIN = {
    "torch": {"scan_overhead"},
    "torch_compile": {"scan_overhead"},
    "jax": {"lenet_step", "rnn_step_pyloop", "scan_overhead"},
    "pytensor": set(TIMED) - {"mlp_adam", "lstm_step", "rnn_step"},
}


def _twin_test(fw):
    if not bench.framework_available(fw):
        pytest.skip(f"{fw} is not installed in {bench.child_python(fw)}")
    results = bench.run_child(fw, TIMED, bench.MODES["tiny"])
    assert {n: r["failed"] for n, r in results.items() if r["failed"]} == {}
    # every workload is timed, except those that declare they have no twin for this framework
    assert {n for n, r in results.items() if fw not in r["times"]} == NO_TWIN[fw]
    assert all(fw in r.get("no_twin", {}) for n, r in results.items() if n in NO_TWIN[fw])


# PyTensor compiles each scan with g++ on first use: minutes with a cold ~/.pytensor cache
@pytest.mark.parametrize("fw", ["torch", "jax", pytest.param("pytensor", marks=pytest.mark.slow)])
def test_twins_match_numpy_tiny(fw):
    """Each PyTorch, JAX and PyTensor twin passes the gate (in a child process, as in the
    benchmark; JAX and PyTensor under the twins venv's Python where `make twins` built one)."""
    _twin_test(fw)


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
