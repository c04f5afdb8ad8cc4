"""Child processes: each of PyTorch, torch.compile, JAX and PyTensor (default mode and C VM) is
timed in a process of its own (their thread pools would contend with graphc's and NumPy's on a
small machine), and the compile-time workload runs graphc in fresh processes (cold and warm cache)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback

from . import frameworks
from .frameworks import LABELS, PYTENSOR_MODES, child_python, openblas_library, pytensor_flags
from .harness import MODES, Mode, error_text, run_side, summarize
from .registry import get_workload

CHILD_CODE = "import sys; from graphc.bench.children import child_main; sys.exit(child_main(sys.argv[1]))"
CHILD_TAG = "GRAPHC-BENCH "


def child_main(spec_json: str) -> int:
    """Entry point of a child process: time one framework on the given workloads, printing one
    tagged JSON line per workload as soon as it is done (a timeout keeps the finished ones)."""
    spec = json.loads(spec_json)
    mode = MODES[spec["mode"]]
    fw = spec["framework"]
    if fw == "jax":
        import warnings

        warnings.filterwarnings("ignore", message=".*[Dd]onat.*")
    versions = _versions(fw)
    info = _pytensor_info() if fw in PYTENSOR_MODES else {}
    for name in spec["names"]:
        frameworks.PYTENSOR_THUNKS.clear()
        try:
            res = run_side(get_workload(name), [fw], mode)
        except Exception as e:
            res = {"times": {}, "failed": {fw: error_text(e)}, "build_s": {}}
            traceback.print_exc()
        if frameworks.PYTENSOR_THUNKS:  # the twin's compiled function(s): what the C VM really ran
            res["thunks"] = {fw: frameworks.PYTENSOR_THUNKS[-1]}
        print(CHILD_TAG + json.dumps({"name": name, **res, "versions": versions, "info": info}), flush=True)
    return 0


def _pytensor_info() -> dict:
    """The PyTensor configuration this child really runs with (its flags, as PyTensor parsed
    them) and, where it links an OpenBLAS, that library's own build string."""
    import ctypes

    import pytensor
    from pytensor.compile.mode import get_default_mode

    cfg = pytensor.config
    out = {"blas__ldflags": cfg.blas__ldflags, "floatX": cfg.floatX,
           "default_linker": type(get_default_mode().linker).__name__}
    dirs = [f[2:] for f in cfg.blas__ldflags.split() if f.startswith("-L")]
    for d in dirs:
        try:
            lib = ctypes.CDLL(os.path.join(d, "libopenblas.so"))
            lib.openblas_get_config.restype = ctypes.c_char_p
            out["openblas"] = lib.openblas_get_config().decode()
            out["openblas_path"] = os.path.realpath(os.path.join(d, "libopenblas.so"))
            break
        except (OSError, AttributeError):
            continue
    return out


def _versions(fw: str) -> dict:
    """The versions this child runs (it may be the twins interpreter, not the parent's)."""
    import platform
    from importlib import metadata

    dists = {"jax": ("jax", "jaxlib"), "pytensor": ("pytensor",), "pytensor_cvm": ("pytensor",)}.get(fw, ("torch",))
    out = {"python": platform.python_version()}
    for d in dists:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = None
    return out


def child_env(fw: str, environ: dict[str, str], library: str | None) -> tuple[dict[str, str], str | None]:
    """The environment of `fw`'s child, from `environ`, and for the PyTensor C VM how its BLAS
    was chosen (`library`: the OpenBLAS that `openblas_library` found, or None). Only the
    PyTensor children get PYTENSOR_FLAGS, and only the C VM's links a BLAS.

    >>> env, blas = child_env("pytensor_cvm", {}, "/usr/lib/libopenblas.so")
    >>> env["PYTENSOR_FLAGS"], blas
    ('floatX=float32,blas__ldflags=-L/usr/lib -lopenblas', 'OpenBLAS /usr/lib/libopenblas.so')
    """
    env = dict(environ)
    if fw not in PYTENSOR_MODES:
        return env, None
    env["PYTENSOR_FLAGS"], blas = pytensor_flags(fw, environ.get("PYTENSOR_FLAGS", ""), library)
    return env, blas


def run_child(fw: str, names: list[str], mode: Mode, log=print) -> dict[str, dict]:
    """Time framework `fw` on `names` in a child process; {name: run_side result}. Workloads the
    child did not finish (timeout, crash) get a failure naming the cause. For the PyTensor C VM
    each result also says which BLAS it was given (``blas``)."""
    env, blas = child_env(fw, dict(os.environ), openblas_library() if fw == "pytensor_cvm" else None)
    tmp = None
    if fw == "torch_compile":
        env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no compile-worker pool spinning beside the timings
        tmp = tempfile.mkdtemp(prefix="graphc-bench-inductor-")
        env["TORCHINDUCTOR_CACHE_DIR"] = tmp  # a cold compile, comparable with graphc's cold one
    spec = json.dumps({"framework": fw, "names": names, "mode": mode.name})
    # PyTensor compiles every scan (and its gradient) with g++ the first time: ~100 s each here
    # with a cold ~/.pytensor cache, a few seconds once cached
    timeout = mode.child_timeout + (600 if fw in PYTENSOR_MODES else 0)
    proc = subprocess.Popen([child_python(fw), "-c", CHILD_CODE, spec], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    why = None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        if proc.returncode:
            why = f"child process exited with {proc.returncode}: {stderr.strip().splitlines()[-1:] or ''}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        why = f"timeout: the {LABELS[fw]} child ran past {timeout:.0f} s"
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    results = {}
    for line in (stdout or "").splitlines():
        if line.startswith(CHILD_TAG):
            r = json.loads(line[len(CHILD_TAG):])
            results[r.pop("name")] = r
    for name in names:
        if name not in results:
            results[name] = {"times": {}, "failed": {fw: why or "the child process gave no result"}, "build_s": {}}
        if blas is not None:
            results[name]["blas"] = blas
    return results


COMPILE_CHILD = """
import json, time
from graphc.bench.mlp import MLP_ADAM, graphc_mlp_step
from graphc.backends.c import build
f, _, s = graphc_mlp_step(MLP_ADAM._sizes({size!r}))
print("GRAPHC-BENCH " + json.dumps({{"compile_s": s, "stats": build.STATS}}))
"""


def run_compile(mode: Mode) -> dict:
    """Cold and warm compile time of the MLP Adam step, each in a new process: cold with a fresh
    GRAPHC_CACHE_DIR (passes + codegen + gcc), warm right after in the same directory (cache hit)."""
    cold, warm = [], []
    out: dict = {"times": {}, "failed": {}, "build_s": {}}
    try:
        for _ in range(mode.compile_runs):
            cache = tempfile.mkdtemp(prefix="graphc-bench-cache-")
            try:
                env = dict(os.environ, GRAPHC_CACHE_DIR=cache)
                for want_compiles, sink in ((1, cold), (0, warm)):
                    r = subprocess.run([sys.executable, "-c", COMPILE_CHILD.format(size=mode.size)], env=env,
                                       capture_output=True, text=True, timeout=300)
                    if r.returncode:
                        raise RuntimeError(f"compile child failed: {r.stderr.strip()[-400:]}")
                    line = [ln for ln in r.stdout.splitlines() if ln.startswith(CHILD_TAG)][-1]
                    res = json.loads(line[len(CHILD_TAG):])
                    if res["stats"]["compiles"] != want_compiles:
                        raise AssertionError(f"expected {want_compiles} gcc compile(s), the child made "
                                             f"{res['stats']['compiles']} ({res['stats']})")
                    sink.append(res["compile_s"])
            finally:
                shutil.rmtree(cache, ignore_errors=True)
    except Exception as e:
        out["failed"]["graphc"] = error_text(e)
        return out
    out["times"] = {"cold": summarize(cold), "warm": summarize(warm)}
    return out
