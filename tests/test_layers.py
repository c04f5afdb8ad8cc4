"""The architecture's two import rules (../shared/DESIGN.md): layers point down only (the
import-linter contract in pyproject.toml, run here and by `make test`), and no private name crosses
a package (import-linter cannot express it, so this test walks the AST of graphc/)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "graphc"

# Private names still crossing a package, each with the work that removes it. Nothing else may
# (empty since the C-family templates and index helpers moved to graphc/backends/cfamily/).
ALLOWED: set[tuple[str, str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).parent.parts)


def _resolve(node: ast.ImportFrom, path: Path) -> str:
    if not node.level:
        return node.module or ""
    base = list(path.relative_to(ROOT).parent.parts)
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _package_of_module(mod: str) -> str:
    """The package a module belongs to: itself if it is a package, else its parent."""
    p = ROOT.joinpath(*mod.split("."))
    return mod if p.is_dir() else mod.rpartition(".")[0]


def private_crossings(paths) -> list[tuple[str, str, str, int]]:
    """(importer, module, private name, line) for every private name, or private module, that a
    module of graphc takes from another package: `from a.b import _x`, `from a._b import x`,
    and `mod._x` where `mod` was imported from graphc."""
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        me, my_pkg = _module_name(path), _package_of(path)
        bound: dict[str, str] = {}  # local name -> graphc module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = _resolve(node, path)
                if not mod.startswith("graphc"):
                    continue
                for alias in node.names:
                    full = f"{mod}.{alias.name}"
                    if ROOT.joinpath(*full.split(".")).with_suffix(".py").exists() or \
                            ROOT.joinpath(*full.split(".")).is_dir():
                        bound[alias.asname or alias.name] = full  # a module, e.g. `from .. import runtime`
                        target, name = full, None
                    else:
                        target, name = mod, alias.name
                    if _package_of_module(target) == my_pkg:
                        continue
                    bad = [p for p in target.split(".") if _private(p)] + ([name] if name and _private(name) else [])
                    for b in bad:
                        found.append((me, target, b, node.lineno))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("graphc"):
                        bound[alias.asname or alias.name.split(".")[0]] = alias.asname and alias.name or "graphc"
                        if _package_of_module(alias.name) != my_pkg:
                            found += [(me, alias.name, p, node.lineno) for p in alias.name.split(".") if _private(p)]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound \
                    and _private(node.attr) and _package_of_module(bound[node.value.id]) != my_pkg:
                found.append((me, bound[node.value.id], node.attr, node.lineno))
    return found


def _sources():
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_private_name_crosses_a_package():
    bad = [f"{me} (line {line}) takes {name} from {mod}" for me, mod, name, line in private_crossings(_sources())
           if (me, mod, name) not in ALLOWED]
    assert not bad, "private names imported across packages (make them public, or move the code):\n" + "\n".join(bad)


def test_allowed_crossings_still_exist():
    """An exception that no longer happens is removed from ALLOWED, so that it cannot come back."""
    seen = {(me, mod, name) for me, mod, name, _ in private_crossings(_sources())}
    assert ALLOWED <= seen, f"stale entries in ALLOWED: {sorted(ALLOWED - seen)}"


def test_the_private_name_check_catches_each_form(tmp_path, monkeypatch):
    """The walker is not vacuous: a fake package with each forbidden form is caught, and
    the same forms inside one package are not."""
    root = tmp_path
    pkg = root / "graphc"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    for f in ("__init__.py", "a/__init__.py", "b/__init__.py", "a/_impl.py"):
        (pkg / f).write_text("")
    (pkg / "a" / "mod.py").write_text("_secret = 1\n")
    (pkg / "a" / "same.py").write_text("from .mod import _secret\nfrom . import _impl\n")
    (pkg / "b" / "user.py").write_text(
        "from ..a.mod import _secret\nfrom ..a._impl import thing\nfrom ..a import mod\nx = mod._secret\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", root)
    got = {(me, mod, name) for me, mod, name, _ in private_crossings(sorted(pkg.rglob("*.py")))}
    assert got == {("graphc.b.user", "graphc.a.mod", "_secret"), ("graphc.b.user", "graphc.a._impl", "_impl")}


def test_layers_contract_holds():
    exe = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
    assert exe, "lint-imports not found: install the test extra (pip install '.[test]'), it pins import-linter"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


# -- what the layering changed: behaviour kept, seams that replaced upward imports ----------------


def test_ir_constructors_live_in_core_and_runtime_reexports_them():
    import graphc as gc
    from graphc import core, runtime

    assert gc.placeholder is core.placeholder is runtime.placeholder
    assert gc.shared is core.shared is runtime.shared
    x = core.placeholder("x", (None, 3))
    assert isinstance(x, core.Placeholder) and x.shape == (None, 3)
    assert (x + 1.0).owner.op.name == "add"  # Var's operators, plugged in by graphc.ops


def test_shared_values_tell_storage_observers_about_host_access(monkeypatch):
    """The hook through which a backend keeps a device copy in step (CUDA's mirrors use it)."""
    import graphc as gc
    from graphc.core import graph

    calls = []

    class Observer:
        def pull(self, sv):
            calls.append(("pull", sv.name))
            sv.host_array[...] = 7.0  # a "device" copy that was newer

        def host_changed(self, sv):
            calls.append(("host_changed", sv.name))

    monkeypatch.setattr(graph, "_storage_observers", [])
    w = gc.shared(np.zeros(2, "float32"), name="w")
    graph.add_storage_observer(Observer())
    assert w.get_value().tolist() == [7.0, 7.0] and calls == [("pull", "w")]
    w.set_value(np.ones(2, "float32"))
    assert calls[-1] == ("host_changed", "w")
    calls.clear()
    w.storage  # noqa: B018 - a backend taking the live array may read and write it
    assert calls == [("pull", "w"), ("host_changed", "w")]


def test_one_backend_registry_names_the_choices():
    from graphc.backends import BACKENDS, compile_graph, resolve_backend

    assert set(BACKENDS) >= {"ref", "c", "cuda"}
    for call in (lambda: resolve_backend("tpu"), lambda: compile_graph("tpu", None, 0, [])):
        with pytest.raises(ValueError, match="unknown backend 'tpu'; choose 'ref', 'c' or 'cuda'"):
            call()


def test_passes_read_op_facts_not_names():
    """A new op declares what it is (a view, elementwise, shape-only inputs) and the scheduler
    and simplifier act on it without any list of names being edited."""
    from dataclasses import dataclass

    import graphc as gc
    from graphc.core import Graph, Op, TensorType
    from graphc.lower import data_inputs, schedule

    @dataclass(frozen=True)
    class Ravel(Op):  # a view the passes have never heard of
        is_view = True

        def infer(self, x):
            return (TensorType(x.dtype, (None,)),)

    @dataclass(frozen=True)
    class Scale(Op):  # an elementwise op reading its second input only for its shape
        elementwise = True
        keeps_shape = True
        value_inputs = 1

        def infer(self, x, like):
            return (x,)

    x = gc.placeholder("x", (4, 3))
    flat = Ravel()(gc.exp(x))
    s = schedule(Graph([x], [flat * 2.0]))
    assert id(flat) in s.views and s.views[id(flat)] is flat.owner.inputs[0]
    assert all(not isinstance(n.op, Ravel) for k in s.kernels for n in k.nodes)
    y = Scale()(gc.tanh(x), x)
    assert data_inputs(y.owner) == [y.owner.inputs[0]]
    (k,) = schedule(Graph([x], [gc.exp(y) + 1.0])).kernels  # tanh, scale, exp, add: one fused loop
    assert k.kind == "elementwise" and any(isinstance(n.op, Scale) for n in k.nodes)
    # simplify's size queries see through an op that keeps its input's shape
    from graphc.passes import optimize

    b = gc.placeholder("b", (None, 3))
    g = optimize(Graph([b], [gc.ops.dim(Scale()(b, b), 0)]))
    assert not any(isinstance(n.op, Scale) for n in g.nodes)
