"""Migrations: idempotent, safe from two processes at once, and building the schema that
docs/sql.md documents as the public contract."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from aegis.storage.db import Database
from aegis.storage.queries import migrations
from tests.support.cli import clean_environ, run_cli
from tests.support.rows import sql_rows

SQL_DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
ALL = [name for name, _ in migrations()]

COLUMNS = """
SELECT c.relname AS table_name, a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS type
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""
INDEXES = ("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
           "ORDER BY indexname")


def schema_of(url: str) -> dict[str, list[tuple[str, str]]]:
    """``{table: [(column, type), ...]}`` in column order, as the database has it."""
    tables: dict[str, list[tuple[str, str]]] = {}
    for row in sql_rows(url, COLUMNS):
        column_type = row["type"].replace("timestamp with time zone", "timestamptz")
        tables.setdefault(row["table_name"], []).append((row["column_name"], column_type))
    return tables


def documented_schema() -> dict[str, list[tuple[str, str]]]:
    """The column tables of docs/sql.md: a ``### `name` `` heading, then a markdown table
    whose first two columns are the column name and its type."""
    tables: dict[str, list[tuple[str, str]]] = {}
    current: str | None = None
    for line in SQL_DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^#{2,4} `([a-z_]+)`", line)
        if heading:
            current = heading.group(1)
            continue
        if line.startswith("#"):
            current = None
        row = re.match(r"^\|\s*`([a-z_]+)`\s*\|\s*`([^`]+)`\s*\|", line)
        if current and row:
            tables.setdefault(current, []).append((row.group(1), row.group(2)))
    return tables


def test_migrate_applies_everything_once_then_is_a_no_op(empty_database_url: str) -> None:
    db = Database(empty_database_url)
    try:
        assert db.pending_migrations() == ALL
        assert db.migrate() == ALL
        schema, indexes = schema_of(empty_database_url), sql_rows(empty_database_url, INDEXES)
        assert db.migrate() == []
        assert db.pending_migrations() == []
    finally:
        db.close()
    assert schema_of(empty_database_url) == schema
    assert sql_rows(empty_database_url, INDEXES) == indexes
    recorded = sql_rows(empty_database_url, "SELECT name FROM schema_migrations ORDER BY name")
    assert [r["name"] for r in recorded] == ALL


def test_aegis_db_migrate_twice(empty_database_url: str, tmp_path: Path) -> None:
    env = {"AEGIS_DATABASE_URL": empty_database_url, "AEGIS_HOME": str(tmp_path / "home")}
    first = run_cli("db", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"applied {len(ALL)} migration(s): {', '.join(ALL)}"
    second = run_cli("db", "migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "database is up to date"


def test_a_database_of_the_release_before_takes_the_incidents_migration_over_its_rows(
        empty_database_url: str, template_url: str) -> None:
    """A database migrated up to 0008_host_leases (the release without incidents), with a
    container in an incident and a queued alert: 0009_incidents (and what came after it)
    applies over it, the rows keep what they said and read the new columns' defaults."""
    earlier = [(name, script) for name, script in migrations() if name < "0009"]
    assert [name for name, _ in earlier][-3:] == ["0006_job_calendar", "0007_status_page",
                                                  "0008_host_leases"]
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        for name, script in earlier:
            conn.execute(script.encode())
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
        conn.execute("INSERT INTO containers (host, name, phase, state, strikes, incident, "
                     "labels) VALUES ('h', 'web', 'escalated', 'escalated', 3, 2, "
                     "'{\"aegis.max-restarts\": \"5\"}')")
        conn.execute("INSERT INTO outbox (channel, dedup_key, host, title) "
                     "VALUES ('alerts', 'escalation:h:web:2', 'h', 'web escalated')")
    db = Database(empty_database_url)
    try:
        later = [name for name, _ in migrations() if name >= "0009"]
        assert later[:2] == ["0009_incidents", "0010_heal_ladder"]
        assert db.pending_migrations() == later
        assert db.migrate() == later
    finally:
        db.close()
    [row] = sql_rows(empty_database_url, "SELECT * FROM containers")
    assert (row["phase"], row["incident"], row["labels"]) == (
        "escalated", 2, {"aegis.max-restarts": "5"})
    assert (row["incident_class"], row["incident_log"], row["affected"],
            row["docker_restarts"], row["folded_into"], row["climbed_at"]) == (
        None, [], [], [], None, None)
    [message] = sql_rows(empty_database_url, "SELECT thread, state, edit_only FROM outbox")
    assert message == {"thread": None, "state": None, "edit_only": False}
    assert schema_of(empty_database_url) == schema_of(template_url)


@pytest.mark.parametrize("attempt", range(3))
def test_two_migrations_started_together_both_succeed_and_leave_one_schema(
    attempt: int, empty_database_url: str, template_url: str, tmp_path: Path,
) -> None:
    env = clean_environ({"AEGIS_DATABASE_URL": empty_database_url,
                         "AEGIS_HOME": str(tmp_path / "home")})
    processes = [subprocess.Popen([sys.executable, "-m", "aegis", "db", "migrate"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    stdouts = sorted(out.strip() for out, _ in outputs)
    assert stdouts == [f"applied {len(ALL)} migration(s): {', '.join(ALL)}",
                       "database is up to date"]
    recorded = sql_rows(empty_database_url, "SELECT name FROM schema_migrations ORDER BY name")
    assert [r["name"] for r in recorded] == ALL
    assert schema_of(empty_database_url) == schema_of(template_url)


def test_migrations_build_the_documented_schema(template_url: str) -> None:
    actual = schema_of(template_url)
    documented = documented_schema()
    assert {"state", "episodic_memory", "job_runs", "jobs", "tasks", "daemons",
            "outbox"} <= set(documented)
    for table, columns in documented.items():
        assert table in actual, f"docs/sql.md documents {table}, which no migration creates"
        assert columns == actual[table], (
            f"docs/sql.md's columns of {table} differ from the schema; update docs/sql.md")
    text = SQL_DOC.read_text(encoding="utf-8")
    for table in actual:
        assert f"`{table}`" in text, f"table {table} is not mentioned in docs/sql.md"
