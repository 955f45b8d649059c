"""Named SQL queries and numbered migrations, loaded from the .sql files in aegis/sql.

A query file is a sequence of blocks::

    -- name: insert_event
    -- One line saying what it does.
    INSERT INTO ...;
"""

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$")
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def parse_queries(text: str, source: str = "<sql>") -> dict[str, str]:
    """Split ``text`` into ``{name: sql}``; comment lines inside a block are dropped."""
    queries: dict[str, str] = {}
    name: str | None = None
    body: list[str] = []

    def close() -> None:
        if name is None:
            return
        sql = "\n".join(body).strip().rstrip(";").strip()
        if not sql:
            raise ValueError(f"{source}: query {name!r} is empty")
        queries[name] = sql

    for line in text.splitlines():
        match = _NAME.match(line.strip())
        if match:
            close()
            name, body = match.group(1), []
            if name in queries:
                raise ValueError(f"{source}: query {name!r} is defined twice")
        elif name is not None and not line.strip().startswith("--"):
            body.append(line)
        elif name is None and line.strip() and not line.strip().startswith("--"):
            raise ValueError(f"{source}: SQL before the first '-- name:' line")
    close()
    return queries


@cache
def all_queries() -> dict[str, str]:
    """Every named query of every aegis/sql/*.sql file."""
    queries: dict[str, str] = {}
    for entry in sorted(resources.files("aegis.sql").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, sql in parse_queries(entry.read_text(encoding="utf-8"), entry.name).items():
            if name in queries:
                raise ValueError(f"{entry.name}: query {name!r} is defined in another file")
            queries[name] = sql
    return queries


@cache
def migrations() -> tuple[tuple[str, str], ...]:
    """``(name, sql)`` of every migration, in order."""
    found = []
    for entry in resources.files("aegis.sql.migrations").iterdir():
        if _MIGRATION.match(entry.name):
            found.append((entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [name[:4] for name, _ in found]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"two migrations share a number: {numbers}")
    return tuple(found)
