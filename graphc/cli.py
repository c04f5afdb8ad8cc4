"""The `graphc` command. Every subcommand has --help."""

from __future__ import annotations

import argparse
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphc", description="graphc: a deep-learning compiler.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("demo", help="run the worked example (gradient graph + XOR training)",
                       description="Print a symbolic gradient graph and its values, then train XOR.")
    p.set_defaults(fn=_cmd_demo)
    p = sub.add_parser("ops", help="list the registered ops", description="List every registered op.")
    p.set_defaults(fn=_cmd_ops)
    p = sub.add_parser("version", help="print the version", description="Print graphc's version.")
    p.set_defaults(fn=_cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "fn"):
        parser.print_help()
        return 2
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
