"""The C backend's compile cache: build, load, reuse across processes, concurrency, repair, safety."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

import graphc as gc
from graphc.backends import cache as compile_cache
from graphc.backends.c import build
from graphc.backends.c.build import build_library, cache_clear, cache_info
from graphc.cli import main

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")

CDEF = "int add(int a, int b);"

# A child process: builds the source in argv[1] with CDEF, calls add(2, 3) and prints what happened
# as JSON. Given a barrier directory, it first says it is ready there and waits for a "go" file, so
# that several children start building at the same moment.
CHILD = f"CDEF = {CDEF!r}\n" + textwrap.dedent("""
    import json, os, sys, time
    from graphc.backends.c import build
    source = open(sys.argv[1]).read()
    if len(sys.argv) > 2:
        open(os.path.join(sys.argv[2], f"ready-{os.getpid()}"), "w").close()
        while not os.path.exists(os.path.join(sys.argv[2], "go")):
            time.sleep(0.001)
    b = build.build_library(source, CDEF)
    print(json.dumps({"stats": build.STATS, "result": b.lib.add(2, 3), "cache_hit": b.cache_hit, "key": b.key}))
""")


def add_source(tag: str, body: str = "a + b") -> str:
    """A source unique to `tag`, so no test sees another test's memo or cache entry."""
    return f"/* {tag} */\nint add(int a, int b) {{ return {body}; }}\n"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A private, empty cache directory, an empty memo and zeroed counters for every test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(root))
    build._MEMO.clear()
    monkeypatch.setattr(build, "STATS", {"compiles": 0, "hits": 0, "memo_hits": 0})
    yield root
    build._MEMO.clear()


def start_child(tmp_path, source: str, barrier: str | None = None) -> subprocess.Popen:
    src = tmp_path / f"child-{time.monotonic_ns()}.c"
    src.write_text(source)
    argv = [sys.executable, "-c", CHILD, str(src)] + ([barrier] if barrier else [])
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def run_child(tmp_path, source: str) -> dict:
    p = start_child(tmp_path, source)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return json.loads(out)


def test_build_and_call(cache):
    b = build_library(add_source("build"), CDEF)
    assert b.lib.add(2, 3) == 5
    assert not b.cache_hit and build.STATS == {"compiles": 1, "hits": 0, "memo_hits": 0}
    entry = cache / b.key[:2] / b.key
    assert b.path == entry / "lib.so" and b.source_path == entry / "source.c"
    assert b.source_path.read_text() == add_source("build")
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["key"] == b.key and meta["lib_sha256"] == compile_cache.sha256_file(b.path)
    assert meta["graphc_version"] == gc.__version__ and "-O3" in meta["flags"]
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)
    assert not [p for p in cache.iterdir() if p.name.startswith(("tmp-", "trash-"))]


def test_same_key_in_process_is_memoized(cache):
    b1 = build_library(add_source("memo"), CDEF)
    shutil.rmtree(cache)  # a memo hit must not even look at the disk
    b2 = build_library(add_source("memo"), CDEF)
    assert b2 is b1 and build.STATS == {"compiles": 1, "hits": 0, "memo_hits": 1}


def test_flags_are_part_of_the_key():
    src = "int add(int a, int b) { return a + b + VALUE; }"
    b3 = build_library(src, CDEF, extra_cflags=("-DVALUE=3",))
    b4 = build_library(src, CDEF, extra_cflags=("-DVALUE=4",))
    assert (b3.lib.add(0, 0), b4.lib.add(0, 0)) == (3, 4) and b3.key != b4.key


def test_links_openblas():
    src = textwrap.dedent("""
        #include <cblas.h>
        float dot3(void) {  /* [1 2 3] @ [[4] [5] [6]] through sgemm */
            float a[3] = {1, 2, 3}, b[3] = {4, 5, 6}, c[1] = {0};
            scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 3, 1.0f, a, 3, b, 1, 0.0f, c, 1);
            return c[0];
        }
    """)
    assert build_library(src, "float dot3(void);").lib.dot3() == 32.0


def test_second_process_hits_the_cache_without_compiling(tmp_path):
    source = add_source("second process")
    first = run_child(tmp_path, source)
    second = run_child(tmp_path, source)
    assert first["stats"]["compiles"] == 1 and not first["cache_hit"]
    assert second["stats"] == {"compiles": 0, "hits": 1, "memo_hits": 0} and second["cache_hit"]
    assert second["result"] == 5 and second["key"] == first["key"]


def test_concurrent_processes_compile_once(tmp_path, cache):
    source = add_source("concurrent")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    children = [start_child(tmp_path, source, str(barrier)) for _ in range(2)]
    deadline = time.monotonic() + 60
    while len(list(barrier.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    (barrier / "go").touch()
    results = []
    for p in children:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert [r["result"] for r in results] == [5, 5]
    # the loser of the lock finds the winner's entry installed: one compile in all
    assert sum(r["stats"]["compiles"] for r in results) == 1
    assert sum(r["stats"]["hits"] for r in results) == 1
    assert cache_info()["entries"] == 1
    assert not [p for p in cache.iterdir() if p.name.startswith(("tmp-", "trash-"))]


@pytest.mark.parametrize("damage", ["truncate lib.so", "garbage lib.so with matching hash", "delete meta.json",
                                    "delete source.c", "invalid meta.json"])
def test_broken_entry_is_detected_and_rebuilt(tmp_path, cache, damage):
    source = add_source(f"broken {damage}")
    if "lib.so" in damage:  # built elsewhere: damaging a library this process has mapped could crash it
        key = run_child(tmp_path, source)["key"]
    else:
        key = build_library(source, CDEF).key
        build._MEMO.clear()
        build.STATS["compiles"] = 0
    entry = cache / key[:2] / key
    lib = entry / "lib.so"
    if damage == "truncate lib.so":
        os.truncate(lib, lib.stat().st_size // 2)
    elif damage == "garbage lib.so with matching hash":  # passes the hash check, fails in dlopen
        lib.write_bytes(b"\x7fELF not really")
        meta = json.loads((entry / "meta.json").read_text())
        meta["lib_sha256"] = compile_cache.sha256_file(lib)
        (entry / "meta.json").write_text(json.dumps(meta))
    elif damage == "invalid meta.json":
        (entry / "meta.json").write_text("{")
    else:
        (entry / damage.split()[1]).unlink()
    b = build_library(source, CDEF)
    assert b.lib.add(2, 3) == 5
    assert build.STATS["compiles"] == 1 and not b.cache_hit
    assert json.loads((entry / "meta.json").read_text())["lib_sha256"] == compile_cache.sha256_file(lib)
    if damage == "truncate lib.so":
        assert run_child(tmp_path, source)["stats"]["compiles"] == 0  # the repaired entry is reused


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_writable_cache_dir_is_refused(cache, mode):
    cache.mkdir(mode=0o700)
    cache.chmod(mode)
    with pytest.raises(PermissionError, match="chmod 700") as e:
        build_library(add_source("unsafe"), CDEF)
    assert str(cache) in str(e.value) and build.STATS["compiles"] == 0
    assert cache_info()["problem"] is not None


def test_cache_dir_of_another_user_is_refused(cache, monkeypatch):
    cache.mkdir(mode=0o700)
    monkeypatch.setattr(build.os, "getuid", lambda: cache.stat().st_uid + 1)
    with pytest.raises(PermissionError, match="not by you") as e:
        build_library(add_source("other user"), CDEF)
    assert str(cache) in str(e.value)


def test_syntax_error_raises_compile_error(cache):
    source = "int add(int a, int b) { return a + ; }\n"
    with pytest.raises(gc.CompileError) as e:
        build_library(source, CDEF)
    err = e.value
    assert "error" in str(err) and "expected expression" in str(err)
    assert err.source_path in str(err) and os.path.exists(err.source_path)
    assert open(err.source_path).read() == source
    assert "error" in err.log
    info = cache_info()
    assert info["entries"] == 0 and info["failed"] == 1
    assert not [p for p in cache.iterdir() if p.name.startswith(("tmp-", "trash-"))]


def test_unloadable_library_raises_compile_error(cache):
    source = "int missing(int); int add(int a, int b) { return missing(a) + b; }\n"
    with pytest.raises(gc.CompileError, match="undefined symbol: missing") as e:
        build_library(source, CDEF)
    assert open(e.value.source_path).read() == source
    assert cache_info()["entries"] == 0


def test_cli_cache_info_and_clear(cache, capsys):
    build_library(add_source("cli 1"), CDEF)
    build_library(add_source("cli 2"), CDEF)
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(cache) in out and "entries:   2" in out
    assert main(["cache", "clear"]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert cache_info()["entries"] == 0
    b = build_library(add_source("cli 1"), CDEF)  # clear also forgets the memo: a fresh build
    assert b.lib.add(2, 3) == 5 and not b.cache_hit and build.STATS["compiles"] == 3


@pytest.mark.parametrize("argv", [["cache", "--help"], ["cache", "info", "--help"], ["cache", "clear", "--help"]])
def test_cache_subcommands_have_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0 and "usage: graphc cache" in capsys.readouterr().out


def test_cache_clear_returns_count_and_skips_missing_dir(cache):
    assert cache_clear() == 0  # no directory yet: nothing to do, nothing created
    assert not cache.exists()
    build_library(add_source("clear"), CDEF)
    assert cache_clear() == 1 and cache_info()["entries"] == 0
