"""The speedup bar chart (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

from .frameworks import LABELS


def plot(results: dict, path: str) -> None:
    """A bar chart PNG: each framework's speedup over NumPy, per workload (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["workloads"] if "numpy" in r.get("times", {}) and not r.get("hidden")]
    fws = [fw for fw in ("graphc", "torch", "torch_compile", "jax") if any(fw in r["times"] for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.8))
    width = 0.8 / max(1, len(fws))
    for k, fw in enumerate(fws):
        xs = [i + (k - (len(fws) - 1) / 2) * width for i, r in enumerate(rows) if fw in r["times"]]
        ys = [r["times"]["numpy"]["median"] / r["times"][fw]["median"] for r in rows if fw in r["times"]]
        bars = ax.bar(xs, ys, width, label=LABELS[fw])
        if fw == "graphc":
            ax.bar_label(bars, labels=[f"{y:.2g}x" for y in ys], fontsize=7, padding=1)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("speedup over NumPy (NumPy time / time)")
    m = results["machine"]
    ax.set_title(f"graphc bench ({results['mode']}): {m['cpu']}, {m['cores']} cores", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
