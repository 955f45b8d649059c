"""The line for a pooled connection, on the real server: once the pool is at its size,
callers wait their turn in order, a thread served first (the watcher's loop) ahead of
them, and one who waits the pool's timeout gets the database's unavailability."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from aegis.core.errors import DatabaseUnavailable
from aegis.storage.db import Database
from tests.support.waiting import wait_for


def held(db: Database) -> tuple[threading.Event, threading.Thread]:
    """The one connection of ``db`` held by a thread until the event is set."""
    release = threading.Event()

    def hold() -> None:
        with db.transaction() as tx:
            tx.execute("ping")
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    wait_for(lambda: db._lent == 1, 5)
    return release, holder


def in_line(db: Database, work: Callable[[], None]) -> threading.Thread:
    """``work`` on a thread of its own, once it waits in ``db``'s line."""
    waiting = len(db._waiting)
    thread = threading.Thread(target=work)
    thread.start()
    wait_for(lambda: len(db._waiting) == waiting + 1, 5)
    return thread


def test_a_thread_served_first_goes_ahead_of_those_waiting(database_url: str) -> None:
    db = Database(database_url, max_size=1, name="line")
    served: list[str] = []
    try:
        release, holder = held(db)

        def call(who: str) -> None:
            db.probe()
            served.append(who)

        def first() -> None:
            with db.served_first():
                call("served first")

        threads = [in_line(db, lambda: call("waiting")),
                   in_line(db, lambda: call("waiting too")),
                   in_line(db, first)]
        release.set()
        for thread in [holder, *threads]:
            thread.join(10)
        assert served == ["served first", "waiting", "waiting too"]
    finally:
        db.close()


def test_a_caller_who_waits_the_pool_timeout_is_told_the_database_is_unavailable(
        database_url: str) -> None:
    db = Database(database_url, max_size=1, timeout_s=0.5, name="line-timeout")
    try:
        release, holder = held(db)
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            db.probe()
        assert 0.4 < time.monotonic() - started < 3
        assert len(db._waiting) == 0  # it left the line
        release.set()
        holder.join(10)
    finally:
        db.close()
