"""The structure of aegis/, checked: the import graph has no cycle and every import goes
down the layers of docs/architecture.md; each SQL file's queries are called by its owner
alone; pyproject.toml installs every package. How long a module is, is its job's business:
ruff caps what makes code hard to read instead (branches, returns, arguments, statements;
see pyproject.toml)."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from aegis.storage.queries import all_queries

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "aegis"
SQL = PACKAGE / "storage" / "sql"
# Lowest first. A module may import its own package and the packages of lower layers;
# packages of one layer do not import each other. The layers are explained in
# docs/architecture.md.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("aegis.version", "aegis.core"),
    ("aegis.storage",),
    ("aegis.notify", "aegis.scheduling"),
    ("aegis.supervision",),
    ("aegis.reports",),
    ("aegis.web",),
    ("aegis",),  # the package face, aegis.api and the aegis.doctor package
    ("aegis.cli",),
    ("aegis.__main__",),
)

Graph = Mapping[str, set[str]]


# --- the import graph ---


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(path, package.parent): path for path in sorted(package.rglob("*.py"))}


def imported_names(tree: ast.AST, module: str, is_package: bool,
                   known: set[str]) -> Iterable[str]:
    """Every module name ``tree`` imports: at the top, inside functions, under
    TYPE_CHECKING, and as ``importlib.import_module("...")`` string literals.
    ``from x import y`` imports the module x.y when there is one, else x (for its name
    y); the parent packages Python runs on the way are not counted."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package of ``module``
                parts = module.split(".")[: len(module.split(".")) - node.level
                                           + (1 if is_package else 0)]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                yield child if child in known else base
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            yield node.args[0].value


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the modules of the package it imports."""
    found = modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        targets = set(imported_names(tree, name, path.name == "__init__.py", set(found)))
        graph[name] = {t for t in targets if t in found and t != name}
    return graph


def find_cycle(graph: Graph) -> list[str] | None:
    """One import loop as [a, b, ..., a], or None when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state:
                loop = visit(target)
                if loop:
                    return loop
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            loop = visit(start)
            if loop:
                return loop
    return None


def layer_of(module: str) -> tuple[int, str]:
    """(layer, package) of a module: the longest package of LAYERS it is in."""
    best: tuple[int, str] | None = None
    for rank, packages in enumerate(LAYERS):
        for package in packages:
            if (module == package or module.startswith(package + ".")) and (
                    best is None or len(package) > len(best[1])):
                best = (rank, package)
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best


def layer_violations(graph: Graph) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        rank, package = layer_of(module)
        for target in sorted(targets):
            target_rank, target_package = layer_of(target)
            if target_rank > rank or (target_rank == rank and target_package != package):
                problems.append(f"{module} imports {target} ({package} may not import "
                                f"{target_package})")
    return problems


def test_aegis_has_no_import_cycle() -> None:
    loop = find_cycle(import_graph())
    assert loop is None, "import cycle: " + " -> ".join(loop or [])


def test_every_import_goes_down_the_layers() -> None:
    assert layer_violations(import_graph()) == []


def test_a_cycle_is_found_and_named() -> None:
    graph = {"aegis.a": {"aegis.b"}, "aegis.b": {"aegis.c"}, "aegis.c": {"aegis.a"},
             "aegis.d": {"aegis.a"}}
    assert find_cycle(graph) == ["aegis.a", "aegis.b", "aegis.c", "aegis.a"]
    assert find_cycle({"aegis.a": {"aegis.b"}, "aegis.b": set()}) is None


def test_the_graph_sees_local_type_checking_and_string_imports(tmp_path: Path) -> None:
    package = tmp_path / "aegis"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("")
    (package / "top.py").write_text("import aegis.low.a\n")
    (package / "low" / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from aegis.low.b import Thing\n")
    (package / "low" / "b.py").write_text(
        "import importlib\n"
        "def load():\n    return importlib.import_module('aegis.low.c')\n")
    (package / "low" / "c.py").write_text(
        "def late():\n    from aegis import top\n    return top\n")
    graph = import_graph(package)
    assert graph["aegis.low.a"] == {"aegis.low.b"}
    assert graph["aegis.low.b"] == {"aegis.low.c"}
    assert graph["aegis.low.c"] == {"aegis.top"}
    assert find_cycle(graph) == ["aegis.low.a", "aegis.low.b", "aegis.low.c", "aegis.top",
                                 "aegis.low.a"]


def test_an_import_up_the_layers_or_across_one_is_named() -> None:
    assert layer_violations({"aegis.core.clock": {"aegis.api"},
                             "aegis.notify.sender": {"aegis.scheduling.tasks"},
                             "aegis.web.http": {"aegis.core.clock", "aegis.web.metrics"}}) == [
        "aegis.core.clock imports aegis.api (aegis.core may not import aegis)",
        "aegis.notify.sender imports aegis.scheduling.tasks "
        "(aegis.notify may not import aegis.scheduling)"]


def test_the_version_needs_no_package_face() -> None:
    graph = import_graph()
    assert "aegis" not in set().union(*graph.values()), \
        "a module imports the package face (from aegis import __version__?)"


# --- one owner per table ---


def owners() -> dict[str, Path]:
    """Each SQL file and the module its first lines name as its owner."""
    found = {}
    for path in sorted(SQL.glob("*.sql")):
        match = re.search(r"Owned by\s+(?:--\s*)?(aegis/[\w/]+\.py)", path.read_text())
        assert match, f"{path.name} does not name its owner ('Owned by aegis/....py')"
        found[path.name] = ROOT / match.group(1)
    return found


QUERY_CALLS = {"fetch_all", "fetch_one", "execute", "query_text"}


def queries_called(path: Path) -> set[str]:
    """The query names ``path`` hands to fetch_all, fetch_one, execute or query_text."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0]
        if name in QUERY_CALLS and isinstance(first, ast.Constant) \
                and isinstance(first.value, str):
            found.add(first.value)
    return found


def test_each_query_is_called_by_its_files_owner_alone() -> None:
    callers = {path: queries_called(path)
               for path in [*sorted(PACKAGE.rglob("*.py")), *sorted((ROOT / "jobs").glob("*.py"))]}
    problems = []
    for file_name, owner in owners().items():
        names = re.findall(r"^--\s*name:\s*(\w+)", (SQL / file_name).read_text(), re.M)
        for name in names:
            using = sorted(str(p.relative_to(ROOT)) for p, s in callers.items() if name in s)
            if using != [str(owner.relative_to(ROOT))]:
                problems.append(f"{file_name}: {name} is used by {using or 'nothing'}, "
                                f"owner {owner.relative_to(ROOT)}")
    assert problems == []


def test_every_query_is_in_a_file_with_an_owner() -> None:
    named = set()
    for file_name in owners():
        named |= set(re.findall(r"^--\s*name:\s*(\w+)", (SQL / file_name).read_text(), re.M))
    assert named == set(all_queries())


def test_an_unknown_query_name_is_a_store_error() -> None:
    from aegis.core.errors import StoreError
    from aegis.storage.queries import query_text

    with pytest.raises(StoreError, match="no query named 'no_such_query'"):
        query_text("no_such_query")


# --- packaging ---


def test_pyproject_installs_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    present = {module_name(init.parent / "__init__.py") or "aegis"
               for init in PACKAGE.rglob("__init__.py")}
    assert present <= listed
    assert config["tool"]["setuptools"]["package-dir"] == {"aegis_jobs": "jobs"}
