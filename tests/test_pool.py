"""graphc's worker pool (kernels/gc_pool.c, graphc/backends/c/pool.py): one pool per process,
shared by every generated library; results identical to one thread; correct under concurrent
callers, after fork, and without the pool (GRAPHC_POOL=0: the OpenMP fallback)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

import graphc as gc
from graphc.backends.c import pool

pytestmark = [pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed"),
              pytest.mark.skipif(not pool.enabled(), reason="the pool is Linux-only")]

# above the pool's threshold (2^21 multiply-adds), below the OpenMP fallback's (2^24), and above both
SIZES = [(16, 784, 512), (64, 300, 200), (300, 300, 200)]


def _matmul(tb: bool = False):
    x, w = gc.placeholder("x", (None, None)), gc.placeholder("w", (None, None))
    return gc.function([x, w], x @ (w.T if tb else w), backend="c")


def _operands(n, k, m, tb=False, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random((n, k), dtype=np.float32) - 0.5
    b = rng.random((m, k) if tb else (k, m), dtype=np.float32) - 0.5
    return a, b


def _run_child(code: str, **env) -> str:
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "GRAPHC_BACKEND": "c", **env},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_one_pool_serves_every_library_and_its_workers_take_chunks():
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: no worker is asked for")
    # a child with two threads asked for: the adaptive count would drop to one beside a busy test
    out = _run_child(
        "import numpy as np, graphc as gc\n"
        "from graphc.backends.c import pool\n"
        "fs = []\n"
        "for i in range(3):\n"
        "    x, w = gc.placeholder('x', (None, None)), gc.placeholder('w', (None, None))\n"
        "    fs.append(gc.function([x, w], x @ w + float(i), backend='c'))\n"
        "a, b = np.ones((16, 784), np.float32), np.ones((784, 512), np.float32)\n"
        "for _ in range(300):\n"
        "    for i, f in enumerate(fs): assert float(f(a, b)[15, 511]) == 784.0 + i\n"
        "s = pool.stats()\n"
        "print(s['workers'], s['jobs'], s['worker_chunks'])\n",
        OMP_NUM_THREADS="2", GRAPHC_ADAPTIVE_THREADS="0")
    workers, jobs, worker_chunks = map(int, out.split())
    assert workers == 1  # three libraries, one pool
    assert jobs == 900  # every gemm above the threshold went through it
    assert worker_chunks > 0  # and the worker did part of them


def test_the_pool_is_loaded_for_generated_programs_and_not_counted_as_a_compile(tmp_path):
    out = _run_child(
        "import numpy as np, graphc as gc\n"
        "from graphc.backends.c import build, pool\n"
        "b = build.build_library('int add(int a, int b) { return a + b; }', 'int add(int a, int b);')\n"
        "print(b.lib.add(2, 3), pool.is_loaded())  # a plain source does not need it\n"
        "x = gc.placeholder('x', (None, None))\n"
        "f = gc.function([x], gc.tanh(x) * 2.0, backend='c')\n"
        "f(np.ones((2, 2), np.float32))\n"
        "print(pool.is_loaded(), build.STATS['compiles'], build.cache_info()['entries'])\n",
        GRAPHC_CACHE_DIR=str(tmp_path / "cache"))
    # two user compiles (the plain library and f), three entries (and the pool)
    assert out.split() == ["5", "False", "True", "2", "3"]


@pytest.mark.parametrize("tb", [False, True])
def test_threaded_results_have_the_bits_of_one_thread(tb):
    code = (
        "import hashlib, sys, numpy as np, graphc as gc\n"
        "rng = np.random.default_rng(1)\n"
        "x, w = gc.placeholder('x', (None, None)), gc.placeholder('w', (None, None))\n"
        f"f = gc.function([x, w], x @ ({'w.T' if tb else 'w'}), backend='c')\n"
        f"for n, k, m in {SIZES!r}:\n"
        "    a = rng.random((n, k), dtype=np.float32) - 0.5\n"
        f"    b = rng.random(({'(m, k)' if tb else '(k, m)'}), dtype=np.float32) - 0.5\n"
        "    for _ in range(20): r = f(a, b)\n"
        "    sys.stdout.write(hashlib.sha256(r.tobytes()).hexdigest() + '\\n')\n")
    _assert_same_bits_in_every_mode(code)


def test_column_reductions_through_the_pool_have_the_bits_of_one_thread():
    code = (
        "import hashlib, sys, numpy as np, graphc as gc\n"
        "rng = np.random.default_rng(4)\n"
        "x = gc.placeholder('x', (None, None))\n"
        "f = gc.function([x], [gc.sum(gc.exp(x), axis=0), gc.max(x * 3.0, axis=0)], backend='c')\n"
        "for shape in [(4096, 129), (70000, 5), (1000, 2000)]:\n"
        "    a = rng.normal(size=shape).astype(np.float32)\n"
        "    for _ in range(10): r = f(a)\n"
        "    np.testing.assert_allclose(r[0], np.exp(a.astype(np.float64)).sum(axis=0), rtol=1e-5)\n"
        "    sys.stdout.write(hashlib.sha256(r[0].tobytes() + r[1].tobytes()).hexdigest() + '\\n')\n"
        "from graphc.backends.c import pool\n"
        "s = pool.stats()\n"
        "sys.stdout.write(str(s is not None and s['jobs'] > 0) + '\\n')\n")
    _assert_same_bits_in_every_mode(code, last_line_differs=True)


def _assert_same_bits_in_every_mode(code: str, last_line_differs: bool = False) -> None:
    serial = _run_child(code, OMP_NUM_THREADS="1", GRAPHC_ADAPTIVE_THREADS="0")
    pooled = _run_child(code, OMP_NUM_THREADS="2", GRAPHC_ADAPTIVE_THREADS="0")
    fallback = _run_child(code, OMP_NUM_THREADS="2", GRAPHC_ADAPTIVE_THREADS="0", GRAPHC_POOL="0")
    if last_line_differs:  # whether jobs went through the pool: only with two threads and the pool
        assert [serial.split()[-1], pooled.split()[-1], fallback.split()[-1]] == ["False", "True", "False"]
        serial, pooled, fallback = (out.rsplit("\n", 2)[0] for out in (serial, pooled, fallback))
    assert pooled == serial
    assert fallback == serial


def test_without_the_pool_gemms_are_correct_and_no_pool_is_loaded():
    out = _run_child(
        "import numpy as np, graphc as gc\n"
        "from graphc.backends.c import pool\n"
        "x, w = gc.placeholder('x', (None, None)), gc.placeholder('w', (None, None))\n"
        "f = gc.function([x, w], x @ w, backend='c')\n"
        "rng = np.random.default_rng(2)\n"
        "a, b = rng.random((300, 300), dtype=np.float32), rng.random((300, 200), dtype=np.float32)\n"
        "np.testing.assert_allclose(f(a, b), a.astype(np.float64) @ b, rtol=1e-4)\n"
        "print(pool.load_pool(), pool.stats())\n",
        GRAPHC_POOL="0", OMP_NUM_THREADS="2")
    assert out.split() == ["None", "None"]


def test_concurrent_callers_from_python_threads_get_correct_results():
    # cffi releases the GIL: several threads call gemms at once; one holds the pool, the others
    # run alone, and nobody waits on a job that is not theirs
    fs = [_matmul(), _matmul(tb=True)]
    cases = [(n, k, m, tb, seed) for seed, (n, k, m) in enumerate(SIZES[:2]) for tb in (False, True)]
    data = {c: _operands(*c) for c in cases}
    want = {c: fs[c[3]](*data[c]) for c in cases}
    errors: list[str] = []

    def caller(i: int) -> None:
        try:
            for r in range(60):
                c = cases[(i + r) % len(cases)]
                got = fs[c[3]](*data[c])
                if not np.array_equal(got, want[c]):
                    errors.append(f"thread {i}, case {c}: differs")
        except Exception as e:  # report, do not hang the join
            errors.append(repr(e))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    assert errors == []


@pytest.mark.parametrize("busy_thread", [False, True])
def test_a_forked_child_makes_its_own_workers_and_uses_them(busy_thread):
    # the parent's workers do not come along; with another thread inside a job at the fork the
    # pool would also stay busy in the child (that thread is not there) unless pthread_atfork
    # resets it: the child would then run every job alone
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    out = _run_child(
        "import os, threading, numpy as np, graphc as gc\n"
        "from graphc.backends.c import pool\n"
        "x, w = gc.placeholder('x', (None, None)), gc.placeholder('w', (None, None))\n"
        "f = gc.function([x, w], x @ w, backend='c')\n"
        "g = gc.function([x, w], x @ w + 1.0, backend='c')  # f's own lock may be held at the fork\n"
        "a, b = np.ones((256, 512), np.float32), np.ones((512, 512), np.float32)\n"
        "for _ in range(50): f(a, b)\n"
        "assert pool.stats()['workers'] == 1\n"
        "stop = threading.Event()\n"
        "def busy():\n"
        "    while not stop.is_set(): f(a, b)\n"
        f"t = threading.Thread(target=busy) if {busy_thread} else None\n"
        "if t: t.start()\n"
        "codes = []\n"
        "for _ in range(5):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        ok, jobs = pool.stats()['workers'] == 0, pool.stats()['jobs']\n"
        "        ok = ok and all(float(g(a, b)[0, 0]) == 513.0 for _ in range(20))\n"
        "        ok = ok and pool.stats()['jobs'] == jobs + 20 and pool.stats()['workers'] == 1\n"
        "        os._exit(0 if ok else 1)\n"
        "    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
        "stop.set()\n"
        "if t: t.join()\n"
        "print(codes)\n",
        OMP_NUM_THREADS="2", GRAPHC_ADAPTIVE_THREADS="0")
    assert out.strip() == "[0, 0, 0, 0, 0]"


def test_many_jobs_of_every_chunk_count_stay_correct():
    # few-chunk and many-chunk jobs back to back: a worker late for one job must not claim a chunk
    # of the next with the old job's descriptor
    f, g = _matmul(), _matmul(tb=True)
    rng = np.random.default_rng(9)
    shapes = [(16, 784, 512), (9, 700, 400), (130, 257, 97), (1000, 64, 48), (40, 2000, 60)]
    ops = [(s, rng.random((s[0], s[1]), dtype=np.float32) - 0.5, rng.random((s[1], s[2]), dtype=np.float32) - 0.5)
           for s in shapes]
    want = [a.astype(np.float64) @ b for _, a, b in ops]
    first = [f(a, b) for _, a, b in ops]
    for w, r, (_, a, _b) in zip(want, first, ops):
        np.testing.assert_allclose(r, w, rtol=1e-4, atol=1e-4 * np.sqrt(a.shape[1]))
    for i in range(400):
        j = i % len(ops)
        _, a, b = ops[j]
        assert np.array_equal(f(a, b), first[j]), (i, shapes[j])
        if i % 7 == 0:  # the transposed-B path (packed panels, per-slot buffers) in between
            np.testing.assert_allclose(g(a, np.ascontiguousarray(b.T)), want[j], rtol=1e-4,
                                       atol=1e-4 * np.sqrt(a.shape[1]))
