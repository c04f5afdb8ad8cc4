"""The smaller reliability fixes of issue 15 (item 7) and the fuzzing findings (item 8)."""

import os
import stat

import numpy as np
import pytest

import graphc as gc
from graphc.backends.c import build
from graphc.core.errors import CompileError


def _script(tmp_path, name, body):
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return str(p)


def _fresh_graph():
    # a constant nobody else compiles, so neither the memo nor the disk cache answers
    x = gc.placeholder("x", (3,), "float64")
    return x, x * gc.constant(np.random.default_rng().uniform(1, 2, 3))


def test_cc_is_used_for_building(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    cc = _script(tmp_path, "mycc", f'echo "$@" >> {log}\nexec gcc "$@"\n')
    monkeypatch.setenv("CC", cc)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    x, y = _fresh_graph()
    f = gc.function([x], y, backend="c")
    assert f(np.ones(3)).shape == (3,)
    assert "source.c" in log.read_text()  # the build itself ran $CC, not gcc


def test_compiler_that_writes_nothing_is_a_compile_error(tmp_path, monkeypatch):
    cc = _script(tmp_path, "fakecc", 'case "$1" in --version) echo "fakecc 1.0";; esac\nexit 0\n')
    monkeypatch.setenv("CC", cc)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    x, y = _fresh_graph()
    with pytest.raises(CompileError, match="status 0 but wrote no library"):
        gc.function([x], y, backend="c")
