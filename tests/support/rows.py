"""Reading and writing the database as an operator would, with plain SQL: what a test
checks aegis recorded (events, container rows, runs) is read here, never through aegis's
own repositories, so a repository's bug cannot hide itself."""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg
from psycopg.rows import dict_row


def sql_rows(url: str, query: str, *params: Any) -> list[dict[str, Any]]:
    """The rows ``query`` returns, as dicts (a statement with RETURNING for a write)."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def execute(url: str, query: str, *params: Any) -> None:
    """Run one statement that returns nothing."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query, params)


def execute_many(url: str, query: str, rows: list[tuple[Any, ...]]) -> None:
    """Run one statement once for each of ``rows`` (its parameters)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany(query, rows)


def events_of(url: str, container: str) -> list[dict[str, Any]]:
    """The events aegis recorded about ``container``, oldest first: event_type,
    importance (as text), summary and details."""
    return sql_rows(url, "SELECT event_type, importance::text AS importance, summary, details "
                    "FROM episodic_memory WHERE details->>'container' = %s ORDER BY id",
                    container)


def events_of_type(url: str, event_type: str) -> list[dict[str, Any]]:
    """The events of ``event_type``, oldest first: timestamp, summary, details, host and
    importance (as text)."""
    return sql_rows(url, "SELECT timestamp, summary, details, host, "
                    "importance::text AS importance FROM episodic_memory "
                    "WHERE event_type = %s ORDER BY id", event_type)


def runs_of(url: str, job_id: str, status: str | None = None) -> list[dict[str, Any]]:
    """The runs of ``job_id`` (with ``status``, when given), oldest slot first."""
    return sql_rows(url, "SELECT * FROM job_runs WHERE job_id = %s AND (%s::text IS NULL "
                         "OR status = %s) ORDER BY scheduled_for, id", job_id, status, status)


def types_of(url: str, container: str) -> list[str]:
    """The types of the events about ``container``, oldest first."""
    return [event["event_type"] for event in events_of(url, container)]


def event_counts(url: str) -> Counter[str]:
    """How many events of each type ``episodic_memory`` holds."""
    return Counter(r["event_type"]
                   for r in sql_rows(url, "SELECT event_type FROM episodic_memory"))


def count(url: str, event_type: str, container: str | None = None) -> int:
    """How many events of ``event_type`` there are (about ``container``, when given)."""
    found = sql_rows(url, "SELECT count(*) AS n FROM episodic_memory WHERE event_type = %s "
                     "AND (%s::text IS NULL OR details->>'container' = %s)",
                     event_type, container, container)
    return int(found[0]["n"])


def row_of(url: str, name: str) -> dict[str, Any]:
    """The one ``containers`` row of ``name``."""
    found = sql_rows(url, "SELECT * FROM containers WHERE name = %s", name)
    assert len(found) == 1
    return found[0]
