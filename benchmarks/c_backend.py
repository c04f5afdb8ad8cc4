"""The C backend's issue-3 benchmarks, now run by `graphc bench` (the graphc/bench/ package holds the
workloads, the timing method and the correctness gate):

    .venv/bin/python benchmarks/c_backend.py [--quick] [--json PATH] [--plot PATH]

is ``graphc bench --only ew_short,ew_long,matmul_1024,mlp_sgd_128,mlp_sgd_16,compile ...``: the
arithmetic chain against the memory ceiling, the transcendental chain, matmul 1024^3, the SGD
training step of the 784-512-512-10 MLP at batch 128 and 16 (with PyTorch eager in a child
process) and the cold/warm compile time of a training step (now the Adam step).
"""

from __future__ import annotations

import sys

from graphc.cli import main as graphc_main

ISSUE3 = "ew_short,ew_long,matmul_1024,mlp_sgd_128,mlp_sgd_16,compile"


def main(argv: list[str] | None = None) -> int:
    return graphc_main(["bench", "--only", ISSUE3, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
