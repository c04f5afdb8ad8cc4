"""The whole run: ceilings, graphc and NumPy in this process, the other frameworks in children,
then the roofline figures of every row."""

from __future__ import annotations

import time
from collections.abc import Sequence

from .children import run_child, run_compile
from .frameworks import FRAMEWORKS, LABELS, framework_available
from .harness import MODES, Mode, run_side
from .machine import cpu_snapshot, machine_info, measure_ceilings, others_load
from .mlp import MLP_ADAM, CompileTime
from .registry import PENDING, WORKLOADS, get_workload


def finish_row(row: dict, ceil: dict) -> None:
    """Ratios and roofline figures of one workload's row (in place)."""
    t = {fw: s["median"] for fw, s in row["times"].items() if fw in FRAMEWORKS}
    if "graphc" in t:
        row["speedup"] = {fw: t[fw] / t["graphc"] for fw in t if fw != "graphc"}
    flops, nbytes = row.get("flops"), row.get("bytes")
    if not flops or not nbytes:
        return
    t_flops, t_bytes = flops / (ceil["sgemm_GFLOPs"] * 1e9), nbytes / (ceil["copy_GBps"] * 1e9)
    row["bound"] = "compute" if t_flops >= t_bytes else "memory"
    row["roofline_s"] = max(t_flops, t_bytes)
    row["achieved"], row["roofline_fraction"] = {}, {}
    for fw, s in t.items():
        row["achieved"][fw] = (flops / s / 1e9) if row["bound"] == "compute" else (nbytes / s / 1e9)
        row["roofline_fraction"][fw] = row["roofline_s"] / s


def extra_figures(row: dict, wl, size: str, ceil: dict) -> None:
    """The per-step cost of a loop workload (`wl.steps`) and the gemm ceiling of one with gemms
    (`wl.gemm_flops`: their FLOPs at the measured sgemm rate), in place."""
    if hasattr(wl, "steps"):
        n = wl.steps(size)
        row["steps"] = n
        row["per_step_s"] = {fw: s["median"] / n for fw, s in row["times"].items()}
    if hasattr(wl, "gemm_flops"):
        row["gemm_flops"] = wl.gemm_flops(size)
        row["gemm_ceiling_s"] = row["gemm_flops"] / (ceil["sgemm_GFLOPs"] * 1e9)


def run(names: Sequence[str] | None = None, mode: str | Mode = "full", log=None) -> dict:
    """Run the benchmark: the results dict that `--json` writes."""
    mode = MODES[mode] if isinstance(mode, str) else mode
    log = log or (lambda *a: None)
    names = list(names) if names is not None else list(WORKLOADS)
    t_start = time.perf_counter()
    machine = machine_info()
    snap = cpu_snapshot()
    log(f"ceilings ({mode.name}) ...")
    ceil_start = measure_ceilings(mode)
    rows: dict[str, dict] = {}
    for name in names:
        wl = get_workload(name)
        log(f"{name}: graphc and NumPy ...")
        if isinstance(wl, CompileTime):
            res = run_compile(mode)
        else:
            res = run_side(wl, ["graphc", "numpy"], mode)  # a graphc refused by the gate: nothing is timed
        rows[name] = {"name": name, "title": wl.title(mode.size), **res}
    timed = [n for n in names if not isinstance(get_workload(n), CompileTime) and "graphc" not in rows[n]["failed"]]
    if any(isinstance(get_workload(n), CompileTime) for n in names) and MLP_ADAM.name not in timed:
        extra_mlp = [MLP_ADAM.name]  # the compile row shows JAX's and torch.compile's first call of this step
    else:
        extra_mlp = []
    skipped: dict[str, str] = {}
    for fw in FRAMEWORKS[2:]:  # every framework but graphc and NumPy, which ran above
        if not framework_available(fw):
            skipped[fw] = "not installed"
            continue
        if fw == "torch_compile" and not mode.torch_compile:
            skipped[fw] = f"not run in {mode.name} mode (compiling costs minutes; the full run has it)"
            continue
        todo = timed + [n for n in extra_mlp if n not in timed]
        if not todo:
            continue
        log(f"{LABELS[fw]} (child process) ...")
        for name, res in run_child(fw, todo, mode).items():
            if name not in rows:
                rows[name] = {"name": name, "title": get_workload(name).title(mode.size), "times": {},
                              "failed": {}, "build_s": {}, "hidden": True}
            for key in ("times", "failed", "build_s"):
                rows[name][key].update(res[key])
            if "thunks" in res:  # PyTensor: the linker, and the C VM's C and Python thunks
                rows[name].setdefault("thunks", {}).update(res["thunks"])
            if res.get("blas") or res.get("info"):  # PyTensor: the BLAS chosen and the config it parsed
                machine.setdefault("twins", {})[fw] = {"blas": res.get("blas"), **res.get("info", {})}
            for dist, version in res.get("versions", {}).items():  # the child's interpreter may be the twins venv
                if dist != "python":
                    machine[dist] = version
                elif version != machine["python"]:
                    machine.setdefault("child_python", {})[fw] = version
    log("ceilings again ...")
    ceil_end = measure_ceilings(mode)
    ceil = {k: max(ceil_start[k], ceil_end[k]) for k in ceil_start}
    for name, row in rows.items():
        wl = get_workload(name)
        if isinstance(wl, CompileTime):
            mlp = rows.get(MLP_ADAM.name, {}).get("build_s", {})
            row["first_call_s"] = {fw: mlp[fw] for fw in ("jax", "torch_compile") if fw in mlp}
            continue
        row["flops"], row["bytes"] = wl.cost(mode.size)
        row["status"] = "FAILED" if "graphc" in row["failed"] else "ok"
        if row["status"] == "ok":
            finish_row(row, ceil)
            extra_figures(row, wl, mode.size, ceil)
    for row in rows.values():
        row.setdefault("status", "FAILED" if "graphc" in row["failed"] else "ok")
    machine.update(others_load(snap, cpu_snapshot(), machine["cores"] or 1))
    return {"mode": mode.name, "machine": machine, "ceilings": {**ceil, "start": ceil_start, "end": ceil_end},
            "skipped": skipped, "pending": dict(PENDING), "elapsed_s": time.perf_counter() - t_start,
            "workloads": [rows[n] for n in rows]}
