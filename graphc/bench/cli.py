"""`graphc bench`'s arguments and command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .harness import MODES
from .plot import plot
from .registry import EXTRA_WORKLOADS, WORKLOADS, select
from .report import summary_text, write_results
from .runner import run


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="fewer repeats and no torch.compile (under 2 minutes)")
    p.add_argument("--only", metavar="NAME", help="comma-separated workload names or globs (a prefix matches: "
                   f"'matmul'); default: {', '.join(WORKLOADS)}; extra: {', '.join(EXTRA_WORKLOADS)}")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a bar chart PNG of the speedups over NumPy")
    p.add_argument("--results", metavar="PATH", help="regenerate the marked block of this Markdown file "
                   "(e.g. benchmarks/RESULTS.md), keeping the rest")
    p.add_argument("--size", choices=["full", "tiny"], default="full", help=argparse.SUPPRESS)  # tiny: tests


def main(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """`graphc bench` with parsed `args`; `argv` (the command's arguments) is recorded."""
    mode = MODES["tiny" if args.size == "tiny" else "quick" if args.quick else "full"]
    try:
        names = select(args.only)
    except ValueError as e:
        print(f"graphc bench: {e}", file=sys.stderr)
        return 2
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "graphc " + " ".join(argv)
    results = run(names, mode, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    results["command"] = command
    print(summary_text(results, command))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    if args.plot:
        try:
            plot(results, args.plot)
        except ImportError as e:
            print(f"graphc bench: --plot needs matplotlib (pip install 'graphc[train]'): {e}", file=sys.stderr)
            args.plot = None
    if args.results:
        write_results(args.results, results, command, args.plot)
    return 1 if any(r.get("status") == "FAILED" for r in results["workloads"]) else 0
