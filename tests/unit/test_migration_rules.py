"""The schema compatibility rule of rolling upgrades (docs/upgrading.md), enforced on the
migration files: each declares the oldest aegis it stays compatible with, none declares a
newer aegis than this one, and within a major version a migration only adds (new tables,
nullable columns or columns with a default, indexes), so the daemons of the previous minor
version keep working on the new schema. Also the pure rule a daemon decides with
(aegis/storage/schema.py)."""

from __future__ import annotations

import re

import pytest

from aegis.storage.queries import migrations
from aegis.storage.schema import (
    AppliedMigration,
    Minor,
    declared_compatibility,
    recorded_compatibility,
    schema_status,
)
from aegis.version import __version__

RUNNING = Minor.parse(__version__)
# The migrations of aegis 0.1, written before the rule; the scan starts after them.
LAST_OF_0_1 = "0010"

# What a daemon of the previous minor version cannot run against: each pattern, matched
# on one statement (comments dropped, whitespace folded, upper case), with its reason.
FORBIDDEN = (
    (re.compile(r"^DROP\b|\bDROP (?:COLUMN|CONSTRAINT|DEFAULT|NOT NULL)\b"),
     "drops what an older daemon reads or writes"),
    (re.compile(r"\bRENAME\b"), "renames what an older daemon names"),
    (re.compile(r"\bALTER COLUMN \S+ (?:SET DATA )?TYPE\b"), "changes a column's type"),
    (re.compile(r"\bSET NOT NULL\b"), "makes a column an older daemon leaves out required"),
    (re.compile(r"\bADD CONSTRAINT\b|\bADD (?:CHECK|UNIQUE|FOREIGN KEY|PRIMARY KEY)\b"),
     "adds a constraint an older daemon's writes may break"),
    (re.compile(r"^(?:TRUNCATE|DELETE)\b"), "deletes rows an older daemon relies on"),
    (re.compile(r"^ALTER TYPE \S+ ADD VALUE\b"),
     "adds an enum value an older daemon cannot read back"),
)


def statements(script: str) -> list[str]:
    """The statements of a migration: comments dropped, whitespace folded, upper case."""
    text = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
    return [" ".join(part.split()).upper() for part in text.split(";") if part.strip()]


def problems(script: str) -> list[str]:
    """Why a daemon of the previous minor version could not run on a schema this script
    changed: one line per offending statement."""
    found = []
    created = set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)",
                             " ".join(statements(script))))
    for statement in statements(script):
        found += [f"{reason}: {statement}" for pattern, reason in FORBIDDEN
                  if pattern.search(statement)]
        unique = re.match(r"^CREATE UNIQUE INDEX .*? ON (?:ONLY )?(\w+)", statement)
        if unique and unique.group(1) not in created:
            found.append(f"adds a unique index to a table older daemons write: {statement}")
        for column in re.split(r"\bADD COLUMN\b", statement)[1:]:
            if "NOT NULL" in column and "DEFAULT" not in column:
                found.append(f"adds a required column without a default: {statement}")
    return found


def breaking(declared: Minor) -> bool:
    """A migration of a major release that breaks the rule declares that release (all
    hosts are upgraded at once)."""
    return declared.major > 0 and declared == Minor(RUNNING.major, 0)


@pytest.mark.parametrize(("name", "script"), migrations(), ids=[n for n, _ in migrations()])
def test_each_migration_declares_once_the_oldest_aegis_it_stays_compatible_with(
        name: str, script: str) -> None:
    lines = re.findall(r"^--\s*compatible-with:.*$", script, re.MULTILINE)
    assert len(lines) == 1, (
        f"{name}.sql: add one line '-- compatible-with: MAJOR.MINOR' (the oldest aegis that "
        f"runs on a schema holding it; {RUNNING.major}.{1 if RUNNING.major == 0 else 0} "
        "for a migration that only adds, see docs/upgrading.md)")
    declared = declared_compatibility(script)
    assert declared is not None
    assert declared <= RUNNING, (
        f"{name}.sql declares aegis {declared}, newer than this aegis {__version__}")


@pytest.mark.parametrize(("name", "script"),
                         [(n, s) for n, s in migrations() if n[:4] > LAST_OF_0_1],
                         ids=[n for n, _ in migrations() if n[:4] > LAST_OF_0_1])
def test_each_migration_after_0_1_only_adds(name: str, script: str) -> None:
    declared = declared_compatibility(script)
    if declared is not None and breaking(declared):
        pytest.skip(f"{name} belongs to the major release {declared}")
    assert problems(script) == [], (
        f"{name}.sql breaks the compatibility rule of docs/upgrading.md (a minor version "
        "only adds: new tables, nullable columns or columns with a default, indexes)")


@pytest.mark.parametrize(("script", "reason"), [
    ("DROP TABLE storms;", "drops"),
    ("ALTER TABLE jobs DROP COLUMN source;", "drops"),
    ("DROP INDEX storms_open_idx;", "drops"),
    ("ALTER TABLE jobs RENAME COLUMN source TO origin;", "renames"),
    ("ALTER TABLE jobs RENAME TO jobs_old;", "renames"),
    ("ALTER TABLE jobs ALTER COLUMN source TYPE integer USING 0;", "type"),
    ("ALTER TABLE jobs ALTER COLUMN source SET DATA TYPE varchar(9);", "type"),
    ("ALTER TABLE jobs ALTER COLUMN source SET NOT NULL;", "required"),
    ("ALTER TABLE jobs ADD COLUMN weight integer NOT NULL;", "required column"),
    ("ALTER TABLE jobs\n    ADD COLUMN weight integer -- how heavy\n    NOT NULL;",
     "required column"),
    ("ALTER TABLE jobs ADD CONSTRAINT positive CHECK (weight > 0);", "constraint"),
    ("CREATE UNIQUE INDEX jobs_source_idx ON jobs (source);", "unique index"),
    ("DELETE FROM outbox WHERE status = 'sent';", "deletes"),
    ("TRUNCATE storms;", "deletes"),
    ("ALTER TYPE importance ADD VALUE 'urgent';", "enum value"),
])
def test_the_scan_names_what_breaks_an_older_daemon(script: str, reason: str) -> None:
    found = problems(script)
    assert len(found) == 1, found
    assert reason in found[0]


@pytest.mark.parametrize("script", [
    "CREATE TABLE pages (id bigserial PRIMARY KEY, host text NOT NULL, n integer NOT NULL);",
    "CREATE TABLE pages (host text NOT NULL);\nCREATE UNIQUE INDEX pages_idx ON pages (host);",
    "ALTER TABLE jobs ADD COLUMN source text;",
    "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS weight integer NOT NULL DEFAULT 1;",
    "CREATE INDEX CONCURRENTLY jobs_source_idx ON jobs (source) WHERE source IS NOT NULL;",
    "-- DROP TABLE storms; was considered and kept\nALTER TABLE jobs ADD COLUMN source text;",
    "UPDATE jobs SET source = 'module' WHERE source IS NULL;",
])
def test_the_scan_lets_additions_pass(script: str) -> None:
    assert problems(script) == []


# --- the rule a daemon decides with ---

KNOWN = (("0001_foundation", "-- compatible-with: 0.1\nCREATE TABLE a ();"),
         ("0002_more", "-- compatible-with: 0.1\nCREATE TABLE b ();"))


def applied(*rows: tuple[str, str | None]) -> list[AppliedMigration]:
    return [AppliedMigration(name, compatible) for name, compatible in rows]


@pytest.mark.parametrize(("rows", "running", "pending", "newer", "requires", "compatible"), [
    # nothing applied: everything pending
    ((), "0.2.0", ("0001_foundation", "0002_more"), (), None, True),
    # aegis 0.1's rows, recorded without a compatibility
    ((("0001_foundation", None),), "0.2.0", ("0002_more",), (), None, True),
    # up to date
    ((("0001_foundation", "0.1"), ("0002_more", "0.1")), "0.2.0", (), (), None, True),
    # a newer aegis's migration that only adds: this one runs on
    ((("0001_foundation", "0.1"), ("0002_more", "0.1"), ("0003_next", "0.1")), "0.2.0",
     (), ("0003_next",), Minor(0, 1), True),
    # one that needs this very minor version: still fine
    ((("0001_foundation", "0.1"), ("0002_more", "0.1"), ("0003_next", "0.2")), "0.2.7",
     (), ("0003_next",), Minor(0, 2), True),
    # one that needs a newer minor version, beside one that does not
    ((("0001_foundation", "0.1"), ("0002_more", "0.1"), ("0003_next", "0.1"),
      ("0004_break", "0.3")), "0.2.0", (), ("0003_next", "0004_break"), Minor(0, 3), False),
    # a new major version
    ((("0001_foundation", "0.1"), ("0003_next", "1.0")), "0.9.0", ("0002_more",),
     ("0003_next",), Minor(1, 0), False),
    # an unknown migration that declares nothing allows no older aegis
    ((("0001_foundation", "0.1"), ("0002_more", "0.1"), ("0003_next", None)), "0.2.0",
     (), ("0003_next",), Minor(0, 3), False),
])
# one argument per column of the table above
def test_schema_status(rows: tuple[tuple[str, str | None], ...], running: str,  # noqa: PLR0913
                       pending: tuple[str, ...], newer: tuple[str, ...],
                       requires: Minor | None, compatible: bool) -> None:
    status = schema_status(applied(*rows), KNOWN, running)
    assert status.pending == pending
    assert tuple(m.name for m in status.newer) == newer
    assert status.requires == requires
    assert status.compatible is compatible


def test_the_refusal_names_both_versions_the_migrations_and_what_to_do() -> None:
    status = schema_status(applied(("0001_foundation", "0.1"), ("0002_more", "0.1"),
                                   ("0003_next", "0.3")), KNOWN, "0.2.0")
    assert str(status.refusal()) == (
        "the database's schema needs aegis 0.3 or later (migrations 0003_next); this is "
        "aegis 0.2.0: upgrade aegis on this host (a schema is never migrated back)")


def test_versions_compare_by_major_then_minor_and_drop_the_patch() -> None:
    assert Minor.parse("0.2.5") == Minor(0, 2)
    assert Minor(0, 9) < Minor(0, 10) < Minor(1, 0)
    assert str(Minor.parse(" 1.12 ")) == "1.12"
    for bad in ("", "1", "v0.2", "0.x", "0.2.1.4"):
        with pytest.raises(ValueError, match="is not a version"):
            Minor.parse(bad)


def test_a_file_that_declares_nothing_is_recorded_as_needing_the_aegis_applying_it() -> None:
    assert declared_compatibility("CREATE TABLE a ();") is None
    assert recorded_compatibility("CREATE TABLE a ();", "0.4.1") == "0.4"
    assert recorded_compatibility("-- compatible-with: 0.1\nCREATE TABLE a ();",
                                  "0.4.1") == "0.1"
