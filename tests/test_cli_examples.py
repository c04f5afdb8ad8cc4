"""The command line and the examples run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from graphc.cli import build_parser, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["ops", "--help"], ["version", "--help"]])
def test_every_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage: graphc" in capsys.readouterr().out


def test_subcommands_listed_in_help():
    text = build_parser().format_help()
    for cmd in ("demo", "ops", "version"):
        assert cmd in text


def test_ops_lists_registry(capsys):
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert "matmul" in out and "softmax_cross_entropy" in out


def test_demo_prints_the_gradient_and_trains_mnist(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo writes its plot to the working directory
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "grad = [-4.0, -4.0, 3.0]" in out
    acc = float(out.split("test accuracy ")[1].split()[0])
    assert acc > 0.9  # 784-256-10 with Adam, 20 epochs on 4000 MNIST images
    assert "NumPy" in out and (tmp_path / "mlp_mnist.png").read_bytes()[:4] == b"\x89PNG"


def test_quickstart_example_runs_and_learns():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "quickstart.py")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    losses = [float(line.split()[-1]) for line in r.stdout.splitlines() if line.startswith("step")]
    assert losses[0] == pytest.approx(1.3863, abs=1e-3)  # log(4): zero weights give uniform softmax
    assert losses[-1] < 0.5 * losses[0]
    assert "softmax_cross_entropy" in r.stdout
