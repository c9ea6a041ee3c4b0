"""The shape of ttrl/ (issue 17): no module over MAX_LINES lines, no import cycle between its
packages, and the layers below the daemon never import it.

The import graph is read from the source with ``ast``, every ``import`` statement counted:
those inside functions and those under ``if TYPE_CHECKING:`` too (a type-only import is a
dependency all the same). Its nodes are ttrl's packages (``ttrl.answers``, ``ttrl.db``, ...)
and each top-level module (``ttrl.cli``, ``ttrl.intake``, ...) on its own; imports within one
package are not edges.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]
PACKAGE = SRC / "ttrl"
MAX_LINES = 350

# Layers below the daemon: none of them imports ttrl.daemon.
BELOW_DAEMON = (
    "ttrl.answers",
    "ttrl.config",
    "ttrl.dashboards",
    "ttrl.db",
    "ttrl.engines",
    "ttrl.lm",
    "ttrl.rl",
    "ttrl.toy",
)
FORBIDDEN = {
    **{layer: ("ttrl.daemon",) for layer in BELOW_DAEMON},
    "ttrl.rl": ("ttrl.daemon", "ttrl.engines"),  # the trainer shares ttrl.lm, not the engines
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. ttrl.daemon.service
    target: str  # the imported module, e.g. ttrl.db.queue
    where: str  # ttrl/daemon/service.py:12

    def __str__(self) -> str:
        return f"{self.where} imports {self.target}"


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module of ttrl/; a package is named by its __init__."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def node(module: str) -> str:
    """The graph node of a module: its package below ttrl, or the top-level module itself."""
    return ".".join(module.split(".")[:2])


def exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def imports() -> list[Import]:
    """Every import of a ttrl module by a module of ttrl/, resolved to absolute names."""
    found = []
    for module, path in modules():
        is_package = path.name == "__init__.py"
        for stmt in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(stmt, ast.Import):
                targets = [alias.name for alias in stmt.names]
            elif isinstance(stmt, ast.ImportFrom):
                base = _absolute(module, is_package, stmt.module, stmt.level)
                # `from ttrl import intake` imports the module ttrl.intake, not ttrl
                targets = [
                    f"{base}.{alias.name}" if exists(f"{base}.{alias.name}") else base
                    for alias in stmt.names
                ]
            else:
                continue
            where = f"{path.relative_to(SRC)}:{stmt.lineno}"
            found += [
                Import(module, t, where)
                for t in targets
                if (t == "ttrl" or t.startswith("ttrl.")) and exists(node(t))
            ]
    return found


def _absolute(module: str, is_package: bool, name: str | None, level: int) -> str:
    if not level:
        return name or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def edges() -> dict[tuple[str, str], list[Import]]:
    """Imports between two different nodes, grouped by (importer, imported)."""
    graph: dict[tuple[str, str], list[Import]] = {}
    for imp in imports():
        a, b = node(imp.module), node(imp.target)
        if a != b:
            graph.setdefault((a, b), []).append(imp)
    return graph


def cycles(pairs: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), sorted."""
    succ: dict[str, list[str]] = {}
    for a, b in sorted(pairs):
        succ.setdefault(a, []).append(b)
        succ.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_module_is_over_the_line_limit() -> None:
    long = [
        f"{path.relative_to(SRC)}: {n} lines"
        for _, path in modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]
    assert not long, f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(long)


def test_no_import_cycle_between_packages() -> None:
    graph = edges()
    problems = []
    for component in cycles(set(graph)):
        problems.append("cycle between " + ", ".join(component) + ":")
        inside = sorted(e for e in graph if e[0] in component and e[1] in component)
        for a, b in inside:
            problems.append(f"  {a} -> {b}: " + "; ".join(map(str, graph[a, b][:3])))
    assert not problems, "import cycles between ttrl's packages:\n" + "\n".join(problems)


def test_the_layers_below_the_daemon_do_not_import_it() -> None:
    graph = edges()
    bad = [
        f"{a} must not import {b}: {imp}"
        for (a, b), found in sorted(graph.items())
        if b in FORBIDDEN.get(a, ())
        for imp in found
    ]
    assert not bad, "forbidden imports:\n" + "\n".join(bad)


def test_the_graph_sees_imports_inside_functions_and_relative_ones() -> None:
    """The reader itself: a lazy import in a function body and a relative import count."""
    graph = edges()
    assert ("ttrl.cli", "ttrl.daemon") in graph  # `ttrl serve` imports the daemon lazily
    assert _absolute("ttrl.db.queue", False, "models", 1) == "ttrl.db.models"
    assert _absolute("ttrl.db", True, "models", 1) == "ttrl.db.models"
    assert _absolute("ttrl.db.queue", False, None, 2) == "ttrl"
    assert cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]
