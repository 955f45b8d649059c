"""The PostgreSQL connector: the one module that imports psycopg.

Everything else calls named queries (aegis/storage/sql/*.sql) through a ``Queries`` handle
(the pool, one transaction, or a dedicated session) and gets plain dict rows back; psycopg
errors are wrapped into DatabaseUnavailable or StoreError. The queries of
aegis/storage/sql/database.sql (liveness, advisory locks, migrations) are called here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from aegis.core.errors import DatabaseUnavailable, StoreError
from aegis.core.logs import get_logger
from aegis.core.redact import redact
from aegis.storage.queries import migrations, query_text

Row = dict[str, Any]


class Queries(Protocol):
    """Something that runs named queries: the pool, one transaction, or a session."""

    def fetch_all(self, query: str, /, **params: Any) -> list[Row]: ...

    def fetch_one(self, query: str, /, **params: Any) -> Row | None: ...

    def execute(self, query: str, /, **params: Any) -> int: ...

# pg_advisory_lock keys; fixed so every process of every version agrees on them.
MIGRATION_LOCK_KEY = 0x4AE615_01
DAEMON_LOCK_KEY = 0x4AE615_02

# How long calls fail at once after the database was found unreachable.
FAIL_FAST_S = 2.0
# How long a LISTEN loop waits before connecting again after losing its session.
LISTEN_RETRY_S = 5.0

logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Json:
    """Marks a parameter to be sent as jsonb (dicts are sent as jsonb without it)."""

    value: Any


def _adapt(params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: Jsonb(value.value) if isinstance(value, Json)
            else Jsonb(value) if isinstance(value, dict) else value
            for key, value in params.items()}


def _wrap(exc: Exception, dsn: str) -> StoreError:
    message = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                     [dsn])
    if isinstance(exc, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        return DatabaseUnavailable(message)
    return StoreError(message, getattr(exc, "sqlstate", None))


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET TIME ZONE 'UTC'")


class Connection:
    """Runs named queries on one connection (a transaction or a dedicated session)."""

    def __init__(self, conn: psycopg.Connection[Row], dsn: str) -> None:
        self._conn = conn
        self._dsn = dsn

    def fetch_all(self, query: str, /, **params: Any) -> list[Row]:
        try:
            cursor = self._conn.execute(query_text(query), _adapt(params))
            return cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            raise _wrap(exc, self._dsn) from exc

    def fetch_one(self, query: str, /, **params: Any) -> Row | None:
        rows = self.fetch_all(query, **params)
        return rows[0] if rows else None

    def execute(self, query: str, /, **params: Any) -> int:
        try:
            return self._conn.execute(query_text(query), _adapt(params)).rowcount
        except psycopg.Error as exc:
            raise _wrap(exc, self._dsn) from exc


class Database:
    """A connection pool plus the named-query API aegis speaks."""

    def __init__(self, dsn: str, *, max_size: int = 4, timeout_s: float = 5.0,
                 name: str = "aegis") -> None:
        self.dsn = dsn
        self.timeout_s = timeout_s
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            open=False,
            name=name,
            timeout=timeout_s,
            reconnect_timeout=max(timeout_s, 5.0),
            configure=_configure,
            check=ConnectionPool.check_connection,
            kwargs={"autocommit": True, "row_factory": dict_row,
                    "connect_timeout": max(1, int(timeout_s)), "application_name": name},
        )
        self._opened = False
        self._lock = threading.Lock()
        self._down_until = 0.0  # 0: not known to be down
        self._down_reason = ""
        self._probe = threading.Lock()

    def open(self) -> None:
        with self._lock:
            if not self._opened:
                self._pool.open(wait=False)
                self._opened = True

    def close(self) -> None:
        with self._lock:
            if self._opened:
                self._pool.close(timeout=2.0)
                self._opened = False

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Row]]:
        # After a failed connection, fail fast instead of making every caller (the loop,
        # each job, each event) wait out the pool timeout: for a moment, and then while
        # one caller at a time finds out whether the database is back.
        probing = False
        if self._down_until:
            if time.monotonic() < self._down_until or not self._probe.acquire(blocking=False):
                raise DatabaseUnavailable(self._down_reason)
            probing = True
        self.open()
        try:
            with self._pool.connection(timeout=self.timeout_s) as conn:
                self._down_until = 0.0
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            error = _wrap(exc, self.dsn)
            if isinstance(error, DatabaseUnavailable):
                self._down_reason = str(error)
                self._down_until = time.monotonic() + FAIL_FAST_S
            raise error from exc
        finally:
            if probing:
                self._probe.release()

    def fetch_all(self, query: str, /, **params: Any) -> list[Row]:
        with self._connection() as conn:
            return Connection(conn, self.dsn).fetch_all(query, **params)

    def fetch_one(self, query: str, /, **params: Any) -> Row | None:
        rows = self.fetch_all(query, **params)
        return rows[0] if rows else None

    def execute(self, query: str, /, **params: Any) -> int:
        with self._connection() as conn:
            return Connection(conn, self.dsn).execute(query, **params)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Named queries in one transaction: committed on exit, rolled back on error."""
        with self._connection() as conn:
            try:
                with conn.transaction():
                    yield Connection(conn, self.dsn)
            except psycopg.Error as exc:
                raise _wrap(exc, self.dsn) from exc

    def probe(self) -> None:
        """``SELECT 1``: raises DatabaseUnavailable or StoreError when it fails."""
        self.fetch_one("ping")

    def ping(self) -> bool:
        """True when the database answers ``SELECT 1``."""
        try:
            self.probe()
            return True
        except StoreError:
            return False

    def server_info(self) -> Row:
        """The server's version, the database's name and the server's clock (db_clock)."""
        row = self.fetch_one("doctor_database")
        assert row is not None  # a SELECT without FROM returns one row
        return row

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A dedicated connection outside the pool (advisory locks, LISTEN)."""
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row,
                                   connect_timeout=max(1, int(self.timeout_s)))
        except psycopg.Error as exc:
            raise _wrap(exc, self.dsn) from exc
        try:
            _configure(conn)
            yield Session(conn, self.dsn)
        finally:
            conn.close()

    def wake_on_notify(self, channel: str, wake: threading.Event, stop: threading.Event,
                       retry_s: float = LISTEN_RETRY_S) -> None:
        """Set ``wake`` on every NOTIFY on ``channel`` (and on each reconnection, for what
        was sent while not listening) until ``stop``; survives the database going away."""
        log = get_logger(channel=channel)
        while not stop.is_set():
            try:
                with self.session() as session:
                    session.listen(channel)
                    wake.set()
                    while not stop.is_set():
                        if session.wait_notification(timeout_s=1.0) is not None:
                            wake.set()
            except DatabaseUnavailable as exc:
                log.debug("listener_disconnected", error=str(exc))
            except StoreError as exc:
                log.warning("listener_failed", error=str(exc))
            stop.wait(retry_s)

    def migrate(self) -> list[str]:
        """Apply pending migrations under an advisory lock; return the names applied."""
        applied: list[str] = []
        with self.session() as session:
            session.execute("advisory_lock", key=MIGRATION_LOCK_KEY)
            try:
                session.execute("create_schema_migrations")
                done = {row["name"] for row in session.fetch_all("applied_migrations")}
                for name, script in migrations():
                    if name in done:
                        continue
                    session.run_script(script, record_as=name)
                    applied.append(name)
            finally:
                session.execute("advisory_unlock", key=MIGRATION_LOCK_KEY)
        return applied

    def pending_migrations(self) -> list[str]:
        try:
            done = {row["name"] for row in self.fetch_all("applied_migrations")}
        except StoreError as exc:
            if exc.sqlstate == "42P01":  # undefined_table: never migrated
                done = set()
            else:
                raise
        return [name for name, _ in migrations() if name not in done]


class Session(Connection):
    """A dedicated connection: advisory locks, LISTEN/NOTIFY, migration scripts."""

    def run_script(self, script: str, *, record_as: str) -> None:
        try:
            with self._conn.transaction():
                self._conn.execute(script.encode())
                self._conn.execute(query_text("record_migration"), {"name": record_as})
        except psycopg.Error as exc:
            raise _wrap(exc, self._dsn) from exc

    def listen(self, channel: str) -> None:
        try:
            self._conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(channel)))
        except psycopg.Error as exc:
            raise _wrap(exc, self._dsn) from exc

    def wait_notification(self, timeout_s: float) -> str | None:
        """Block up to ``timeout_s`` for one NOTIFY; return its payload, or None."""
        try:
            for notify in self._conn.notifies(timeout=timeout_s, stop_after=1):
                return notify.payload
        except psycopg.Error as exc:
            raise _wrap(exc, self._dsn) from exc
        return None

    def alive(self) -> bool:
        try:
            self._conn.execute(b"SELECT 1")
            return True
        except psycopg.Error:
            return False
