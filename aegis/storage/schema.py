"""Which daemons may share a schema: the compatibility rule of rolling upgrades, as pure
functions of the migrations this aegis knows, those the database records, and a version.

Each migration file declares, in a ``-- compatible-with: MAJOR.MINOR`` line, the oldest
aegis that keeps working on a schema holding it. Within a major version a minor's
migrations only add (docs/upgrading.md), so they declare the first minor of their major
and the daemons of the previous release run on beside the new. The declaration is
recorded with the migration's row (``schema_migrations.compatible_with``): a daemon that
finds migrations it does not know (a newer aegis applied them) reads there whether it may
run, and refuses to start when one of them asks for a newer aegis than itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import total_ordering

from aegis.core.errors import SchemaTooNew

_DECLARATION = re.compile(r"^--\s*compatible-with:\s*(\S+)\s*$", re.MULTILINE)
_MINOR = re.compile(r"^(\d+)\.(\d+)(?:\.\d+)?$")


@total_ordering
@dataclass(frozen=True)
class Minor:
    """A major.minor version: what compatibility is declared in (patches never change
    the schema)."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> Minor:
        """``0.2`` or ``0.2.1`` (the patch is dropped); ValueError for anything else."""
        match = _MINOR.match(text.strip())
        if not match:
            raise ValueError(f"{text!r} is not a version (MAJOR.MINOR)")
        return cls(int(match.group(1)), int(match.group(2)))

    def __lt__(self, other: Minor) -> bool:
        return (self.major, self.minor) < (other.major, other.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``schema_migrations``: None for a migration applied by aegis 0.1, which
    recorded no compatibility."""

    name: str
    compatible_with: str | None


@dataclass(frozen=True)
class SchemaStatus:
    """The schema as this aegis sees it: what it would apply, and what a newer aegis
    applied that it does not know."""

    running: str  # this aegis's version
    pending: tuple[str, ...]
    newer: tuple[AppliedMigration, ...]  # applied, unknown to this aegis
    requires: Minor | None  # the oldest aegis the newer migrations allow; None: no limit

    @property
    def compatible(self) -> bool:
        """Whether this aegis may run on the schema (and apply what is pending)."""
        return self.requires is None or self.requires <= Minor.parse(self.running)

    def refusal(self) -> SchemaTooNew:
        """The error a daemon that may not run stops with: both versions, what to do."""
        names = ", ".join(m.name for m in self.newer)
        needs = f"aegis {self.requires} or later" if self.requires else "a newer aegis"
        return SchemaTooNew(
            f"the database's schema needs {needs} (migrations {names}); this is aegis "
            f"{self.running}: upgrade aegis on this host (a schema is never migrated back)")


def declared_compatibility(script: str) -> Minor | None:
    """The version a migration file declares in its first ``-- compatible-with:`` line;
    None when it declares none (tests/unit/test_migration_rules.py fails on that)."""
    found = _DECLARATION.search(script)
    return Minor.parse(found.group(1)) if found else None


def recorded_compatibility(script: str, running: str) -> str:
    """What a migration's row records: its declaration, or, for a file that declares
    none, the running aegis's own minor version (no older aegis runs on what it does)."""
    return str(declared_compatibility(script) or Minor.parse(running))


def schema_status(applied: Iterable[AppliedMigration], known: Sequence[tuple[str, str]],
                  running: str) -> SchemaStatus:
    """What ``known`` (this aegis's migrations, ``(name, sql)`` in order) leaves to apply
    on a schema that recorded ``applied``, and whether aegis ``running`` may run on it. A
    migration this aegis does not know that declares nothing may hold anything: it
    allows no older aegis."""
    rows = {row.name: row for row in applied}
    names = {name for name, _ in known}
    newer = tuple(row for name, row in sorted(rows.items()) if name not in names)
    requires = None
    for row in newer:
        needs = (Minor.parse(row.compatible_with) if row.compatible_with
                 else _beyond(Minor.parse(running)))
        requires = needs if requires is None else max(requires, needs)
    return SchemaStatus(running=running,
                        pending=tuple(name for name, _ in known if name not in rows),
                        newer=newer, requires=requires)


def _beyond(version: Minor) -> Minor:
    return Minor(version.major, version.minor + 1)
