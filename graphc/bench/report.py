"""The results as Markdown: the table, the summary and the generated block of benchmarks/RESULTS.md."""

from __future__ import annotations

import os

from .frameworks import FRAMEWORKS, LABELS

BEGIN_MARK = "<!-- graphc bench: begin -->"
END_MARK = "<!-- graphc bench: end -->"


def fmt_seconds(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale or unit == "µs":
            v = s / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{s:g} s"


def _cell(row: dict, fw: str, results: dict) -> str:
    if fw in row["times"]:
        st = row["times"][fw]
        spread = (st["q3"] - st["q1"]) / 2 / st["median"] * 100
        return f"{fmt_seconds(st['median'])} ±{spread:.0f}%"
    if fw in row["failed"]:
        return "FAILED"
    if fw in results.get("skipped", {}):
        return "—"
    return "—"


def markdown_table(results: dict) -> str:
    """The results as a Markdown table (visible rows only) with footnotes for failures."""
    others = [fw for fw in FRAMEWORKS if fw != "graphc"]
    hdr = ["workload"] + [LABELS[fw] for fw in FRAMEWORKS] + [f"x {LABELS[fw]}" for fw in others] + [
        "graphc achieved", "roofline", "faster than graphc"]
    lines = ["| " + " | ".join(hdr) + " |", "|" + " --- |" * len(hdr)]
    notes, figures = [], []
    for row in results["workloads"]:
        if row.get("hidden"):
            continue
        if row["name"] == "compile":
            lines += _compile_lines(row)
            if row["failed"]:
                notes.append(f"`compile`: FAILED: {row['failed'].get('graphc')}")
            continue
        cells = [row["title"]] + [_cell(row, fw, results) for fw in FRAMEWORKS]
        sp = row.get("speedup", {})
        for fw in others:
            cells.append(f"**{sp[fw]:.2f}x**" if fw == "numpy" and fw in sp else f"{sp[fw]:.2f}x" if fw in sp else "")
        if "graphc" in row.get("achieved", {}):
            unit = "GFLOP/s" if row["bound"] == "compute" else "GB/s"
            cells += [f"{row['achieved']['graphc']:.3g} {unit}",
                      f"{100 * row['roofline_fraction']['graphc']:.0f}% ({row['bound']})"]
        else:
            cells += ["", ""]
        cells.append(", ".join(LABELS[fw] for fw in others if sp.get(fw, 1.0) < 1.0))
        lines.append("| " + " | ".join(cells) + " |")
        figures += _extra_lines(row)
        for fw, err in row["failed"].items():
            notes.append(f"`{row['name']}` {LABELS[fw]}: FAILED: {err}")
    out = "\n".join(lines)
    if figures:
        out += "\n\n" + "\n".join(f"- {f}" for f in figures)
    if notes:
        out += "\n\nFailures (refused by the correctness gate or unable to run; never timed):\n\n" + "\n".join(
            f"- {n}" for n in notes)
    return out


def _extra_lines(row: dict) -> list[str]:
    """The per-step cost, the gemm ceiling and the PyTensor C VM's Python thunks of a row that
    has them."""
    out = []
    for fw, th in row.get("thunks", {}).items():
        if th.get("py_thunks"):  # ops the C VM ran as Python (no C code, or no BLAS to link)
            loops = f", {th['scans']} Scan loop(s) (Cython) around them" if th.get("scans") else ""
            out.append(f"`{row['name']}` {LABELS[fw]}: {th['c_thunks']} C thunks{loops}; Python thunks: "
                       f"{', '.join(th['py_thunks'])}.")
    per = row.get("per_step_s")
    if per:
        cells = ", ".join(f"{LABELS[fw]} {fmt_seconds(s)}" for fw, s in per.items() if fw in LABELS)
        out.append(f"`{row['name']}` per step ({row['steps']} steps): {cells}.")
    if row.get("gemm_ceiling_s"):
        g = row["times"].get("graphc", {}).get("median")
        frac = f"; graphc's step takes {g / row['gemm_ceiling_s']:.2f}x that" if g else ""
        out.append(f"`{row['name']}` gemm ceiling: its gemms' {row['gemm_flops'] / 1e9:.3g} GFLOP at the measured "
                   f"sgemm rate take {fmt_seconds(row['gemm_ceiling_s'])}{frac}.")
    return out


def _compile_lines(row: dict) -> list[str]:
    t = row.get("times", {})
    first = row.get("first_call_s", {})
    # the later frameworks; the ratios, achieved, roofline and faster-than-graphc columns
    blank = ["—"] * (len(FRAMEWORKS) - 5) + [""] * (len(FRAMEWORKS) + 2)
    cold = fmt_seconds(t["cold"]["median"]) + f" ({fmt_seconds(t['cold']['min'])}–{fmt_seconds(t['cold']['max'])})" \
        if "cold" in t else "FAILED"
    warm = fmt_seconds(t["warm"]["median"]) + f" ({fmt_seconds(t['warm']['min'])}–{fmt_seconds(t['warm']['max'])})" \
        if "warm" in t else "FAILED"
    tc = fmt_seconds(first["torch_compile"]) + " (first call)" if "torch_compile" in first else "—"
    jx = fmt_seconds(first["jax"]) + " (first call)" if "jax" in first else "—"
    return [f"| {row['title']}, cold (new process, empty cache: passes, codegen, gcc) | {cold} | — | — | {tc} | "
            f"{jx} | " + " | ".join(blank) + " |",
            f"| {row['title']}, warm (new process, cache hit) | {warm} | — | — | — | — | " + " | ".join(blank) + " |"]


def summary_text(results: dict, command: str) -> str:
    m, c = results["machine"], results["ceilings"]
    soft = [f"Python {m['python']}", f"NumPy {m['numpy']}", f"graphc {m['graphc']}", f"gcc {m['gcc']}"]
    soft += [f"PyTorch {m['torch']}" if m["torch"] else "PyTorch not installed",
             f"JAX {m['jax']} (jaxlib {m['jaxlib']})" if m["jax"] else "JAX not installed"]
    if m.get("pytensor"):
        soft.append(f"PyTensor {m['pytensor']}")
    for fw, v in m.get("child_python", {}).items():
        soft.append(f"{LABELS[fw]} under Python {v}")
    twins = [_twin_config(fw, t) for fw, t in m.get("twins", {}).items()]
    lines = [
        f"Command: `{command}` ({results['mode']} mode; the run took {results['elapsed_s']:.0f} s, {m['date']}).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable); {', '.join(soft)}; {m['os']}.",
        "",
        f"Other load: 1-minute load average {_fmt_load(m.get('load_start'))} before the run; during it, other "
        f"processes took {_fmt_pct(m.get('others_cpu_fraction'))} of the CPU and the hypervisor "
        f"{_fmt_pct(m.get('steal_fraction'))} (steal)"
        + (" — **the machine was busy, and the timings suffer**" if (m.get("others_cpu_fraction") or 0)
           + (m.get("steal_fraction") or 0) > 0.1 else "") + ".",
        "",
        f"Ceilings, measured at the start and at the end of the run (the larger is used): memory bandwidth "
        f"(`np.copyto`, read + write) **{c['copy_GBps']:.1f} GB/s** ({c['start']['copy_GBps']:.1f} / "
        f"{c['end']['copy_GBps']:.1f}); float32 gemm 2048³ **{c['sgemm_GFLOPs']:.0f} GFLOP/s** "
        f"({c['start']['sgemm_GFLOPs']:.0f} / {c['end']['sgemm_GFLOPs']:.0f}).",
        "",
        *([" ".join(twins), ""] if twins else []),
        markdown_table(results),
        "",
        "Times are medians; ± is half the interquartile range, in % of the median (all quartiles, min and "
        "max are in the JSON). `x F` = F's time / graphc's time: above 1, graphc is faster. \"achieved\" is "
        "GB/s for memory-bound workloads and GFLOP/s for compute-bound ones; \"roofline\" is the roofline "
        "time max(FLOPs / gemm ceiling, bytes / bandwidth) over graphc's time (above 100% means the data "
        "stayed in cache, beating the DRAM ceiling). \"faster than graphc\" names every contender whose "
        "median beats graphc's. `—`: not run.",
    ]
    for fw, why in results.get("skipped", {}).items():
        lines.append(f"{LABELS[fw]}: {why}.")
    for name, why in results.get("pending", {}).items():
        lines.append(f"Not yet measured: `{name}` ({why}).")
    return "\n".join(lines)


def _twin_config(fw: str, t: dict) -> str:
    """How a PyTensor child was configured: the BLAS the bench chose for it and the flags that
    PyTensor parsed (so a flag it ignored shows)."""
    if fw != "pytensor_cvm":
        return f"{LABELS[fw]}: the default mode ({t.get('default_linker', '?')}), floatX {t.get('floatX', '?')}."
    ob = f"; the library says: {t['openblas']} ({t['openblas_path']})" if t.get("openblas") else ""
    return (f"{LABELS[fw]} BLAS: {t.get('blas') or '?'}; PyTensor's blas__ldflags: "
            f"`{t.get('blas__ldflags') or '(empty: no BLAS linked)'}`{ob}.")


def _fmt_load(x) -> str:
    return "?" if x is None else f"{x:.2f}"


def _fmt_pct(x) -> str:
    return "?" if x is None else f"{100 * x:.0f}%"


def write_results(path: str, results: dict, command: str, plot_path: str | None = None) -> None:
    """Regenerate the generated block of `path` (between BEGIN_MARK and END_MARK), keeping
    everything outside the markers; without markers the block is appended."""
    body = summary_text(results, command)
    if plot_path:
        rel = os.path.relpath(os.path.abspath(plot_path), os.path.dirname(os.path.abspath(path)))
        body += f"\n\n![speedup over NumPy per workload]({rel})"
    block = (f"{BEGIN_MARK}\n<!-- generated by `graphc bench --results`: edit outside the markers only -->\n\n"
             f"{body}\n\n{END_MARK}")
    old = ""
    if os.path.exists(path):
        with open(path) as fh:
            old = fh.read()
    if BEGIN_MARK in old and END_MARK in old and old.index(BEGIN_MARK) < old.index(END_MARK):
        new = old[:old.index(BEGIN_MARK)] + block + old[old.index(END_MARK) + len(END_MARK):]
    else:
        new = (old.rstrip("\n") + "\n\n" if old else "# Benchmark results\n\n") + block + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(new)
    os.replace(tmp, path)
