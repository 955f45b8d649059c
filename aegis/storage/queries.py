"""Named SQL queries and numbered migrations, loaded from the .sql files in
aegis/storage/sql.

A query file is a sequence of blocks::

    -- name: insert_event
    -- One line saying what it does.
    INSERT INTO ...;

Each file is owned by one module, the only one that calls its queries (the file's first
line names it): database.sql by storage/db.py, events.sql (episodic_memory, state) by
storage/store.py, jobs.sql (jobs, job_runs, daemons, host_leases) by
scheduling/repository.py, tasks.sql by scheduling/tasks.py, containers.sql by
supervision/repository.py, storms.sql by supervision/storms.py, escalations.sql
(escalation_pages) by supervision/escalation.py and outbox.sql by storage/outbox.py.
Within a file, queries named ``digest_*`` and ``status_*`` aggregate one day (UTC
instants, start inclusive, end exclusive) for the evening digest and the
morning status, so no day's rows reach Python (``digest_*`` take ``host``: the one host
whose rows count, AEGIS_DIGEST_SCOPE=host, or NULL for the fleet); ``metrics_*`` are read
at scrape time by /metrics and ``page_*`` by the status page, each bounded by an index, a
time window or a limit; ``cleanup_*`` delete one batch in its own short transaction and
return how many rows went and where the next batch starts (a keyset on the indexed time
column: no batch rescans what the previous ones removed, and starting again at the last
time seen (>=) loses nothing).
"""

import re
from functools import cache
from importlib import resources

from aegis.core.errors import StoreError

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
    """Every named query of every aegis/storage/sql/*.sql file."""
    queries: dict[str, str] = {}
    for entry in sorted(resources.files("aegis.storage.sql").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, sql in parse_queries(entry.read_text(encoding="utf-8"), entry.name).items():
            if name in queries:
                raise ValueError(f"{entry.name}: query {name!r} is defined in another file")
            queries[name] = sql
    return queries


def query_text(name: str) -> str:
    """The SQL of the query ``name``; StoreError when no file defines it."""
    try:
        return all_queries()[name]
    except KeyError:
        raise StoreError(f"no query named {name!r} in aegis/storage/sql") from None


@cache
def migrations() -> tuple[tuple[str, str], ...]:
    """``(name, sql)`` of every migration, in order."""
    found = []
    for entry in resources.files("aegis.storage.sql.migrations").iterdir():
        if _MIGRATION.match(entry.name):
            found.append((entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [name[:4] for name, _ in found]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"two migrations share a number: {numbers}")
    return tuple(found)
