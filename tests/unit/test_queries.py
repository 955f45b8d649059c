"""The named-query parser, and every .sql file of the package."""

import re
from importlib import resources

import pytest

from aegis.storage.queries import all_queries, migrations, parse_queries


def test_blocks_become_named_queries_without_comments_or_trailing_semicolon() -> None:
    text = """
-- a file header comment
-- name: first
-- Says what it does.
SELECT 1
  FROM t; -- a trailing comment stays, it is on a SQL line

-- name: second
-- Another.
-- A second comment line is dropped too.
INSERT INTO t (a) VALUES (%(a)s);
"""
    assert parse_queries(text) == {
        "first": "SELECT 1\n  FROM t; -- a trailing comment stays, it is on a SQL line",
        "second": "INSERT INTO t (a) VALUES (%(a)s)",
    }


@pytest.mark.parametrize(("text", "problem"), [
    ("-- name: a\n-- only a comment\n", "query 'a' is empty"),
    ("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n", "query 'a' is defined twice"),
    ("SELECT 1;\n-- name: a\nSELECT 2;\n", "SQL before the first '-- name:' line"),
])
def test_malformed_files_are_refused_naming_the_file(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"broken.sql: {problem}")):
        parse_queries(text, "broken.sql")


def test_a_name_line_needs_a_snake_case_name() -> None:
    # "-- name: Bad-Name" is just a comment, so its SQL comes before any name
    with pytest.raises(ValueError, match="before the first"):
        parse_queries("-- name: Bad-Name\nSELECT 1;\n")


def test_every_sql_file_loads_and_every_query_has_a_description() -> None:
    queries = all_queries()
    files = [e for e in resources.files("aegis.storage.sql").iterdir() if e.name.endswith(".sql")]
    assert files
    for entry in files:
        text = entry.read_text(encoding="utf-8")
        names = re.findall(r"^--\s*name:\s*(\S+)\s*$", text, flags=re.M)
        assert names, entry.name
        for name in names:
            assert name in queries
            after = text.split(f"-- name: {name}\n", 1)[1]
            assert after.startswith("-- "), f"{entry.name}: {name} has no description line"
    for name, sql in queries.items():
        assert sql.strip(), name
        assert "{" not in sql.replace("'{}'", ""), f"{name} looks like a format string"


def test_the_foundation_queries_are_there() -> None:
    assert {"ping", "insert_event", "query_events", "set_state", "get_state",
            "applied_migrations", "record_migration"} <= set(all_queries())


def test_migrations_are_numbered_in_order_without_gaps() -> None:
    names = [name for name, _ in migrations()]
    assert names[:3] == ["0001_foundation", "0002_scheduler", "0003_outbox"]
    numbers = [int(name[:4]) for name in names]
    assert numbers == list(range(1, len(numbers) + 1))
    assert all(sql.strip() for _, sql in migrations())
