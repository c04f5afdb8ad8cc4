"""The `graphc` command. Every subcommand has --help."""

from __future__ import annotations

import argparse
import os
import sys


def _cmd_demo(args) -> int:
    from .demo import main

    return main()


def _cmd_ops(args) -> int:
    from .ops import REGISTRY

    for name, entry in sorted(REGISTRY.items()):
        print(f"{name:24s} {'differentiable' if entry.differentiable else '-'}")
    return 0


def _cmd_version(args) -> int:
    from . import __version__

    print(f"graphc {__version__}")
    return 0


def _cmd_cache_info(args) -> int:
    from .backends.c.build import cache_info

    info = cache_info()
    print(f"directory: {info['dir']}{'' if info['exists'] else ' (not created yet)'}")
    print(f"entries:   {info['entries']}")
    print(f"size:      {info['bytes'] / 1e6:.1f} MB ({info['bytes']} bytes)")
    print(f"failed:    {info['failed']} saved source(s) that did not compile")
    if info["problem"]:
        print(f"WARNING:   {info['problem']}")
    return 0


def _cmd_cache_clear(args) -> int:
    from .backends.c.build import cache_clear, cache_dir

    try:
        removed = cache_clear()
    except PermissionError as e:  # an unsafe cache directory: say why and how to fix it, no traceback
        print(f"graphc: {e}", file=sys.stderr)
        return 1
    print(f"removed {removed} entries from {cache_dir()}")
    return 0


def _cmd_bench(args) -> int:
    from .bench import main

    return main(args, args.argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphc", description="graphc: a deep-learning compiler.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("demo", help="run the worked example (gradient graph + an MLP trained on MNIST-5k)",
                       description="Print a symbolic gradient graph and its values, then train a 784-256-10 MLP "
                                   "with Adam on MNIST-5k (C backend; the NumPy reference when no C compiler is "
                                   "found) and time one training step against NumPy.")
    p.set_defaults(fn=_cmd_demo)
    p = sub.add_parser("ops", help="list the registered ops", description="List every registered op.")
    p.set_defaults(fn=_cmd_ops)
    p = sub.add_parser("version", help="print the version", description="Print graphc's version.")
    p.set_defaults(fn=_cmd_version)
    p = sub.add_parser("cache", help="inspect or clear the compile cache",
                       description="Manage the C backend's compile cache ($GRAPHC_CACHE_DIR, else "
                                   "$XDG_CACHE_HOME/graphc, else ~/.cache/graphc).")
    p.set_defaults(fn=lambda args, p=p: p.print_help() or 2)
    cache_sub = p.add_subparsers(dest="cache_command", metavar="ACTION")
    q = cache_sub.add_parser("info", help="show the cache directory, entry count and size",
                             description="Show the cache directory, its number of entries and its size.")
    q.set_defaults(fn=_cmd_cache_info)
    q = cache_sub.add_parser("clear", help="remove every cache entry",
                             description="Remove every compiled library from the cache (they are rebuilt on demand).")
    q.set_defaults(fn=_cmd_cache_clear)
    p = sub.add_parser("bench", help="benchmark graphc against NumPy, PyTorch and JAX",
                       description="Time graphc's workloads beside NumPy, PyTorch and JAX twins (each checked "
                                   "against NumPy first), against the machine's measured memory and gemm ceilings.")
    from .bench import add_arguments

    add_arguments(p)
    p.set_defaults(fn=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `graphc` command; returns the exit status.

    A closed stdout (``graphc ops | head``) ends the command quietly, as Unix tools do.

    >>> main(["version"]) == 0  # doctest: +ELLIPSIS
    graphc ...
    True
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not hasattr(args, "fn"):
        parser.print_help()
        return 2
    try:
        rc = args.fn(args)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        # the reader went away: point stdout at /dev/null so the interpreter's final flush is
        # silent too (the recipe in Python's signal documentation)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
