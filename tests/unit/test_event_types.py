"""Event types are one closed set, ``EventType``: every type aegis writes or matches is a
member, spelt out nowhere else. Checked wherever one can appear: the SQL files, the
status page's templates, the job modules, the Python of aegis/ and docs/sql.md."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import jinja2

from aegis.storage.events import EventType

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = {member.value for member in EventType}
# The families of event type names; a word of one of these shapes is an event type.
FAMILIES = ("container", "daemon", "job", "task", "peer", "docker", "notification",
            "notifications", "spool", "db", "memory", "morning", "evening")
_TYPE_WORD = re.compile(rf"\b(?:{'|'.join(FAMILIES)})_[a-z_]*[a-z]\b")
_SQL_MATCH = re.compile(r"event_type\s*(?:=|<>|!=|IN\s*\()\s*((?:'[a-z_]+'\s*,?\s*)+)",
                        re.IGNORECASE)
_RECORDING_CALLS = {"record_event", "new_event", "make_event"}


def sql_literals(text: str) -> set[str]:
    """The literals an ``event_type`` is compared with in SQL text."""
    return {literal for match in _SQL_MATCH.finditer(text)
            for literal in re.findall(r"'([a-z_]+)'", match.group(1))}


def template_literals(text: str) -> set[str]:
    """Event-type-shaped words in a template's text: its expressions' string literals and
    the HTML around them (a placeholder, say), not the names of its macros or variables."""
    words = set()
    for _, kind, value in jinja2.Environment().lex(text):
        if kind in ("string", "data"):
            words |= set(_TYPE_WORD.findall(value))
    return words


def python_offences(path: Path, root: Path = ROOT) -> Iterator[str]:
    """Event types written as text in Python: a recording call's type that is not an
    ``EventType`` member, or an ``event_type`` compared with a string."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    where = path.relative_to(root)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0] if node.args else None
            if name in _RECORDING_CALLS and isinstance(first, ast.Constant):
                yield f"{where}:{node.lineno}: {name}({first.value!r}, ...)"
        elif isinstance(node, ast.Compare) and _names_event_type(node.left):
            texts = [c for c in ast.walk(ast.Module(body=[ast.Expr(x) for x in node.comparators],
                                                    type_ignores=[]))
                     if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            yield from (f"{where}:{node.lineno}: event_type compared with {c.value!r}"
                        for c in texts)


def _names_event_type(node: ast.expr) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr == "event_type"
    return (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
            and node.slice.value == "event_type")


def test_the_sql_compares_event_types_with_members_only() -> None:
    found = {path.name: sql_literals(path.read_text())
             for path in sorted((ROOT / "aegis" / "storage" / "sql").rglob("*.sql"))}
    assert found["events.sql"], "the test reads no literal at all: has the SQL changed shape?"
    assert {name: sorted(words - MEMBERS) for name, words in found.items()
            if words - MEMBERS} == {}


def test_the_templates_name_no_event_type_but_members() -> None:
    found = {path.name: template_literals(path.read_text())
             for path in sorted((ROOT / "aegis" / "web" / "templates").glob("*.html"))}
    assert {name: sorted(words - MEMBERS) for name, words in found.items()
            if words - MEMBERS} == {}


def test_python_writes_and_matches_event_types_through_the_enum() -> None:
    paths = [*sorted((ROOT / "aegis").rglob("*.py")), *sorted((ROOT / "jobs").glob("*.py"))]
    assert [offence for path in paths for offence in python_offences(path)] == []


def test_docs_sql_lists_every_member_and_no_other_type() -> None:
    text = (ROOT / "docs" / "sql.md").read_text()
    table = text.split("| `event_type` | importance | recorded when |", 1)[1].split("\n\n", 1)[0]
    listed = {word for line in table.splitlines()[2:]
              for word in re.findall(r"`([a-z_]+)`", line.split("|")[1])}
    assert listed == MEMBERS
    assert sql_literals(text) - MEMBERS == set()


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    assert sql_literals("WHERE e.event_type IN ('container_restarted', 'container_gone')\n"
                        "AND event_type = 'job_lost'") == {
        "container_restarted", "container_gone", "job_lost"}
    assert template_literals('{{ x.get("container_restarted") }} <input placeholder='
                             '"container_escalated,..."> {{ container_link(a) }}') == {
        "container_restarted", "container_escalated"}
    module = tmp_path / "probe.py"
    module.write_text('store.record_event("container_gone", "x")\n'
                      'store.record_event(EventType.CONTAINER_RESTARTED, "x")\n'
                      'ok = event.event_type == "container_restarted"\n'
                      'ok = row["event_type"] in ("a", "b")\n')
    assert sorted(python_offences(module, tmp_path)) == [
        "probe.py:1: record_event('container_gone', ...)",
        "probe.py:3: event_type compared with 'container_restarted'",
        "probe.py:4: event_type compared with 'a'", "probe.py:4: event_type compared with 'b'"]
