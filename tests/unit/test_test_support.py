"""The tests' own shape, checked: what a test module needs besides its tests comes from
tests/support/ (or a conftest's fixture), never from another test module, and a helper is
written once. The same rules as tests/unit/test_architecture.py has for aegis/, for the
suite (and the rule on imports for the benchmarks, which share its package)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
SUPPORT = TESTS / "support"
# Not helpers: the job modules aegis loads in its tests (their functions are jobs), and the
# images' contents and build code (programs that run in containers).
NOT_HELPERS = (TESTS / "jobmods", TESTS / "images")


def python_files(*folders: Path) -> list[Path]:
    return sorted(path for folder in folders for path in folder.rglob("*.py"))


def dotted(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST) -> list[str]:
    """Every module ``tree`` imports from, at any depth, with the names it takes."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return found


def is_fixture(node: ast.FunctionDef) -> bool:
    return any("fixture" in ast.unparse(decorator) for decorator in node.decorator_list)


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    test_modules = {dotted(path) for path in python_files(TESTS)
                    if path.name.startswith("test_") or path.name == "conftest.py"}
    offending = [f"{dotted(path)} imports {name}"
                 for path in python_files(TESTS, ROOT / "bench")
                 for name in imported(ast.parse(path.read_text(encoding="utf-8")))
                 if name in test_modules]
    assert offending == []


def test_a_helper_is_defined_once_and_a_fixture_once_unless_it_overrides_a_conftests() -> None:
    helpers: dict[str, list[str]] = defaultdict(list)
    fixtures: dict[str, list[Path]] = defaultdict(list)
    for path in python_files(TESTS):
        if any(folder in path.parents for folder in NOT_HELPERS):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, ast.FunctionDef | ast.ClassDef):
                continue
            if node.name.startswith(("test_", "Test", "pytest_")) or node.name == "main":
                continue  # tests, hooks, programs' entry points
            if isinstance(node, ast.FunctionDef) and is_fixture(node):
                fixtures[node.name].append(path)
            else:
                helpers[node.name].append(dotted(path))
    assert {name: where for name, where in helpers.items() if len(where) > 1} == {}

    def overrides(paths: list[Path]) -> bool:
        """One conftest's fixture, overridden only below its folder."""
        conftests = [path for path in paths if path.name == "conftest.py"]
        return len(conftests) >= 1 and all(
            any(conftest.parent in path.parents for conftest in conftests if conftest != path)
            for path in paths if path != min(conftests, key=lambda p: len(p.parts)))
    twice = {name: [str(path.relative_to(ROOT)) for path in paths]
             for name, paths in fixtures.items() if len(paths) > 1 and not overrides(paths)}
    assert twice == {}


def runs_containers(tree: ast.AST) -> bool:
    """Whether ``tree`` calls ``<something>.containers.run(...)`` of the Docker SDK."""
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and node.func.attr == "run" and isinstance(node.func.value, ast.Attribute)
               and node.func.value.attr == "containers" for node in ast.walk(tree))


def test_test_containers_are_made_by_the_support_package_alone() -> None:
    making = [str(path.relative_to(ROOT)) for path in python_files(TESTS)
              if SUPPORT not in path.parents
              and runs_containers(ast.parse(path.read_text(encoding="utf-8")))]
    assert making == []


def test_every_support_module_and_helper_says_what_it_is_for() -> None:
    undocumented = []
    for path in python_files(SUPPORT):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if ast.get_docstring(tree) is None:
            undocumented.append(dotted(path))
        undocumented += [f"{dotted(path)}.{node.name}" for node in tree.body
                         if isinstance(node, ast.FunctionDef | ast.ClassDef)
                         and not node.name.startswith(("_", "pytest_"))
                         and ast.get_docstring(node) is None]
    assert undocumented == []
