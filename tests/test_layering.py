"""DESIGN.md §7's rooms: no import circle, each room imports only what it may, and no module
but _exporter.py reads an exporter's underscored attributes except the Sink's."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "hh_exporter"
ROOMS = ("cli", "streams", "integrations", "collector", "wire")
SINK = {"_log"}  # the members of hh_exporter._session.Sink
MAY_IMPORT = {"core": {"core", "wire"}, "wire": {"wire", "core:_errors", "core:_encoding"},
              # the metrics' text format and the redaction rules: pure leaves, no exporter
              "collector": {"collector", "wire", "core:_prometheus", "core:redact"},
              "integrations": {"integrations", "core", "wire"},
              "streams": {"streams", "core", "wire"},
              "cli": {"cli", "core", "wire", "streams", "collector"}}


def _name(p: Path) -> str:
    parts = ["hh_exporter", *p.relative_to(PKG).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODS = {_name(p): (p, ast.parse(p.read_text())) for p in sorted(PKG.rglob("*.py"))}


def _imports(name: str, path: Path, tree: ast.Module) -> set[str]:
    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    got: set[str] = set()
    for node in ast.walk(tree):  # top level, under TYPE_CHECKING and inside functions alike
        if isinstance(node, ast.Import):
            got |= {a.name for a in node.names if a.name.startswith("hh_exporter")}
        elif isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = ".".join([*base, *([node.module] if node.module else [])])
            if mod.startswith("hh_exporter"):  # `from . import _schema` is the submodule
                got |= ({f"{mod}.{a.name}" for a in node.names} & MODS.keys()) or {mod}
    return got - {name}


GRAPH = {n: _imports(n, p, t) for n, (p, t) in MODS.items()}


def _room(mod: str) -> str:
    part = mod.split(".")[1] if "." in mod else ""
    return "cli" if part == "__main__" else part if part in ROOMS else "core"


def test_no_import_circle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = [stack.pop()]
            while scc[-1] != v:
                scc.append(stack.pop())
            if len(scc) > 1:
                circles.append(sorted(scc))

    for v in list(GRAPH):
        if v not in index:
            visit(v)
    assert circles == []


def test_rooms_import_only_what_they_may() -> None:
    may = {src: MAY_IMPORT[_room(src)] for src in GRAPH}
    bad = [f"{src} -> {dst}" for src, dsts in GRAPH.items() for dst in sorted(dsts)
           if _room(dst) not in may[src] and f"core:{dst.rpartition('.')[2]}" not in may[src]]
    assert bad == []


def _underscored(tree: ast.Module, classes: set[str] | None = None) -> set[str]:
    """Underscored methods and ``self._x`` attributes of ``classes`` (None: every class)."""
    names = set()
    for cls in (c for c in ast.walk(tree) if isinstance(c, ast.ClassDef)):
        for n in ast.walk(cls) if classes is None or cls.name in classes else ():
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(n.name)
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) \
                    and ast.unparse(n.value) == "self":
                names.add(n.attr)
    return {n for n in names if n.startswith("_") and not n.endswith("__")}


def test_no_module_reads_an_exporters_underscored_attributes() -> None:
    private = (_underscored(MODS["hh_exporter._exporter"][1], {"Exporter"})
               | _underscored(MODS["hh_exporter._sync"][1], {"SyncExporter"})) - SINK
    bad = []
    for mod, (path, tree) in MODS.items():
        if mod == "hh_exporter._exporter":
            continue
        own = _underscored(tree)  # a module may read what its own classes define
        subclasses = {c.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and any(
            ast.unparse(b).rpartition(".")[2] in ("Exporter", "SyncExporter") for b in c.bases)}
        for scope in tree.body:
            sub = isinstance(scope, ast.ClassDef) and scope.name in subclasses
            for n in ast.walk(scope):
                if isinstance(n, ast.Attribute) and n.attr in private:
                    on_self = ast.unparse(n.value) in ("self", "cls")
                    if (on_self and sub) or (not on_self and n.attr not in own):
                        bad.append(f"{path.relative_to(PKG)}:{n.lineno} {ast.unparse(n)}")
    assert bad == []
