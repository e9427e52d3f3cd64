"""Layering rules, checked from the source (docs/contributing.md):

- no module under passes/ imports from backends/ (passes use the semantics core, snncc/sim/);
- the import graph of snncc, its passes and backends has no cycle, counting the imports
  inside functions too (a lazy import only hides a cycle);
- no literal set, tuple or list of two or more IR op names outside snncc/ops.py: code
  asks the op table for a group or a flag, so a new op cannot be left out of a copy;
- every pass is ``run(graph, ctx)`` and no pass touches ``graph.meta["notes"]``: notes and
  calibration data travel in the PassContext (snncc/pass_context.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

from snncc.ops import TABLE

ROOT = Path(__file__).resolve().parents[1]
# source folder -> package name it installs as (pyproject.toml package-dir)
PACKAGES = {"snncc": "snncc", "passes": "snncc.passes", "backends": "snncc.backends"}


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, pkg in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([pkg, *parts])] = path
    return mods


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Modules of ours that ``path`` imports, anywhere in the file."""
    out = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            # the longest known module this name refers to ("from snncc import ops" -> snncc.ops)
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def import_graph() -> nx.DiGraph:
    mods = _modules()
    g = nx.DiGraph()
    for mod, path in mods.items():
        g.add_node(mod)
        for dep in _imports(path, mod, set(mods)):
            # importing snncc.x.y runs the package __init__s too; those are not edges of ours
            if not mod.startswith(dep + "."):
                g.add_edge(mod, dep)
    return g


def test_passes_do_not_import_backends():
    g = import_graph()
    bad = sorted((a, b) for a, b in g.edges if a.startswith("snncc.passes") and b.startswith("snncc.backends"))
    assert bad == [], f"passes import backends: {bad}"


def test_no_import_cycle():
    g = import_graph()
    cycles = sorted(sorted(c) for c in nx.simple_cycles(g))
    assert cycles == [], f"import cycles: {cycles}"


def _op_groups(path: Path) -> list[str]:
    """Literal sets/tuples/lists in ``path`` that hold two or more IR op names."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Set, ast.Tuple, ast.List)):
            names = [e.value for e in node.elts
                     if isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value in TABLE]
            if len(names) >= 2:
                hits.append(f"{path.name}:{node.lineno}: {names}")
    return hits


def op_name_literals() -> list[str]:
    return [hit for mod, path in _modules().items() if mod != "snncc.ops" for hit in _op_groups(path)]


def test_no_op_name_groups_outside_the_table():
    assert op_name_literals() == []


def _meta_notes(path: Path) -> list[str]:
    """Places in ``path`` that index ``<x>.meta["notes"]`` or call ``<x>.meta.<f>("notes", ...)``."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            target, key = node.value, node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            target, key = node.func.value, node.args[0]
        else:
            continue
        if isinstance(target, ast.Attribute) and target.attr == "meta" and isinstance(key, ast.Constant) \
                and key.value == "notes":
            hits.append(f"{path.name}:{node.lineno}")
    return hits


def test_passes_take_a_context_and_leave_notes_in_it():
    import inspect

    from snncc.passes import PASSES

    for name, run in PASSES.items():
        assert list(inspect.signature(run).parameters) == ["graph", "ctx"], name
    assert [hit for mod, path in _modules().items() if mod.startswith("snncc.passes") for hit in _meta_notes(path)] \
        == []


def test_the_checks_can_fail(tmp_path):
    """The scanners see what they look for (so the tests above can fail)."""
    src = tmp_path / "m.py"
    src.write_text('MOVES = ("flatten", "reshape")\ndef f():\n    from snncc.backends import c\n')
    assert _op_groups(src) == ["m.py:1: ['flatten', 'reshape']"]
    notes = tmp_path / "n.py"
    notes.write_text('g.meta["notes"] = []\ng.meta.setdefault("notes", []).append("x")\n')
    assert _meta_notes(notes) == ["n.py:1", "n.py:2"]
    assert _imports(src, "snncc.passes.m", {"snncc.backends", "snncc.backends.c"}) == {"snncc.backends",
                                                                                     "snncc.backends.c"}
    g = nx.DiGraph([("snncc.cli", "snncc.cli_sweep"), ("snncc.cli_sweep", "snncc.cli")])
    assert list(nx.simple_cycles(g))  # the cycle test's detector sees a two-module cycle
