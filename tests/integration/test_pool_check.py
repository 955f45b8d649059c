"""The pool's check of a connection it lends, on the real server: one given back a moment
ago is lent without a round trip, one idle longer is asked first, and one the server
closed meanwhile is never lent (the caller gets a new one, not an error)."""

from __future__ import annotations

import tempfile
import uuid

import psycopg

from aegis.storage.db import Database, _check, _note_returned
from tests.support.rows import sql_rows
from tests.support.waiting import wait_for


def sent_by_check(conn: psycopg.Connection[object]) -> bytes:
    """What the pool's check of ``conn`` sent to the server (libpq's protocol trace)."""
    with tempfile.TemporaryFile() as trace:
        conn.pgconn.trace(trace.fileno())
        try:
            _check(conn)
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        return trace.read()


def test_a_connection_given_back_just_now_is_lent_without_asking_the_server(
        database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert b"Query" in sent_by_check(conn)  # never given back: asked first
        _note_returned(conn)
        assert sent_by_check(conn) == b""


def test_a_connection_the_server_closed_is_never_lent(database_url: str,
                                                     pg_admin_url: str) -> None:
    name = f"check-{uuid.uuid4().hex[:8]}"
    db = Database(database_url, name=name)

    def backends() -> list[int]:
        return [row["pid"] for row in sql_rows(
            pg_admin_url, "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            f"aegis:{name}:pool")]

    try:
        assert db.fetch_one("ping") == {"ok": 1}  # given back: lent again unasked
        [closed] = backends()
        sql_rows(pg_admin_url, "SELECT pg_terminate_backend(%s) AS done", closed)
        # the termination is a signal: the backend closes its end a moment later
        wait_for(lambda: closed not in backends(), 5, what="the backend gone")
        assert db.fetch_one("ping") == {"ok": 1}
        assert closed not in backends()
    finally:
        db.close()
