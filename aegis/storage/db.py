"""The PostgreSQL connector: with aegis/storage/listener.py, the only modules that import
psycopg.

Everything else calls named queries (aegis/storage/sql/*.sql) through a ``Queries`` handle
(the pool, or one transaction) and gets plain dict rows back; psycopg errors are wrapped
into DatabaseUnavailable or StoreError. The queries of aegis/storage/sql/database.sql
(liveness, migrations) are called here.

A URL that names several hosts (``host=a,b`` or ``postgresql://a:5432,b:5432/db``) is
tried host by host, and unless it says otherwise only a server that accepts writes is
taken (``target_session_attrs=read-write``): after a failover the connections find the
promoted standby. A pooled connection left on a server that has become read-only (a
demoted primary) is closed on its first refused write, so the pool opens the next one
where the primary now is (see docs/high-availability.md).

Nothing relies on a session outliving a transaction, so aegis works through a pooler in
transaction mode (PgBouncer): no session-level advisory lock or ``SET``, no server-side
prepared statement; times come back in UTC whatever the server's time zone; and a daemon
holds at most its pool (``max_size``) and one listening connection.
"""

from __future__ import annotations

import logging
import select
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
from psycopg import errors as pgerrors
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from aegis.core.errors import DatabaseUnavailable, StoreError
from aegis.core.redact import redact
from aegis.storage.listener import Listener
from aegis.storage.queries import migrations, query_text
from aegis.storage.schema import (
    AppliedMigration,
    SchemaStatus,
    recorded_compatibility,
    schema_status,
)
from aegis.version import __version__

Row = dict[str, Any]


class Queries(Protocol):
    """Something that runs named queries: the pool, one transaction, or a session."""

    def fetch_all(self, query: str, /, **params: Any) -> list[Row]: ...

    def fetch_one(self, query: str, /, **params: Any) -> Row | None: ...

    def execute(self, query: str, /, **params: Any) -> int: ...

# The advisory lock key migrations are applied under; fixed so every process of every
# version agrees on it.
MIGRATION_LOCK_KEY = 0x4AE615_01
# How long a pooled connection above the pool's minimum may stay idle before it is closed.
MAX_IDLE_S = 10.0
# How long a caller waits for a connection in use to come back before the pool opens
# another: the overlaps of an idle daemon's routine (a job's query beside the loop's) last
# milliseconds and open nothing, while the pool still grows under lasting load.
GROW_AFTER_S = 0.1

# How long calls fail at once after the database was found unreachable.
FAIL_FAST_S = 2.0
# A pooled connection given back this recently is lent again without asking the server
# first (a round trip of an idle host's wake-ups, ~1 ms, twice per strike): unless the
# server has closed it meanwhile, which its socket shows (readable). One idle longer is
# asked with an empty query, as one the network may have dropped without a word.
CHECK_AFTER_IDLE_S = 5.0

logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


@dataclass(frozen=True)
class ServerInfo:
    version: str
    name: str  # the database's
    db_clock: datetime  # the server's clock when it answered
    address: str  # the server this connection reached: host:port (or socket folder:port)
    primary: bool  # False: a standby in recovery, read-only


def writable_conninfo(dsn: str) -> str:
    """``dsn`` with ``target_session_attrs=read-write`` when it names several hosts and
    sets no ``target_session_attrs`` itself; otherwise ``dsn`` unchanged."""
    params = conninfo_to_dict(dsn)
    hosts = str(params.get("host") or params.get("hostaddr") or "").split(",")
    if len(hosts) < 2 or "target_session_attrs" in params:
        return dsn
    return make_conninfo(dsn, target_session_attrs="read-write")


def _read_only(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a write refused by a read-only server."""
    return any(isinstance(error, pgerrors.ReadOnlySqlTransaction)
               for error in (exc, exc.__cause__))


@dataclass(frozen=True)
class Json:
    """Marks a parameter to be sent as jsonb (dicts are sent as jsonb without it)."""

    value: Any


def _adapt(params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: Jsonb(value.value) if isinstance(value, Json)
            else Jsonb(value) if isinstance(value, dict) else value
            for key, value in params.items()}


def _summary(exc: Exception) -> str:
    """The first line of ``exc``; for a URL of several hosts, each host's failure."""
    lines = str(exc).strip().splitlines()
    attempts = [line.removeprefix("- ") for line in lines if line.startswith("- host: ")]
    if len(attempts) > 1:
        return "; ".join(attempts)
    return lines[0] if lines else type(exc).__name__


def _wrap(exc: Exception, dsn: str) -> StoreError:
    message = redact(_summary(exc), [dsn])
    if isinstance(exc, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError
                  | pgerrors.ReadOnlySqlTransaction):
        # a server that refuses writes (a standby, a demoted primary) is, for aegis, a
        # primary out of reach: what it was asked to write is spooled and retried
        return DatabaseUnavailable(message)
    return StoreError(message, getattr(exc, "sqlstate", None))


class _UtcTimestamptzLoader(Loader):
    """timestamptz as an aware datetime in UTC, whatever the session's time zone: aegis
    sets none, since a ``SET`` would not follow a pooler's server connections."""

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        inner = psycopg.adapters.get_loader(oid, psycopg.pq.Format.TEXT)
        assert inner is not None
        self._inner = inner(oid, context)

    def load(self, data: Any) -> Any:
        return self._inner.load(data).astimezone(UTC)


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_loader("timestamptz", _UtcTimestamptzLoader)


# when each pooled connection was last given back (the pool's reset hook notes it)
_returned_at: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = \
    weakref.WeakKeyDictionary()


def _note_returned(conn: psycopg.Connection[Any]) -> None:
    _returned_at[conn] = time.monotonic()


def _check(conn: psycopg.Connection[Any]) -> None:
    """The pool's check of a connection it is about to lend (raises when it is broken,
    and the pool lends another): asks the server only when the connection was idle over
    CHECK_AFTER_IDLE_S or the server has spoken on it unasked (a pooled connection
    listens to nothing, so that is its closing: a shutdown, a terminated backend, a
    failover)."""
    idle_s = time.monotonic() - _returned_at.get(conn, float("-inf"))
    if idle_s < CHECK_AFTER_IDLE_S and not _readable(conn):
        return
    ConnectionPool.check_connection(conn)


def _readable(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server sent anything (or closed the socket) on an idle connection."""
    try:
        ready, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):  # closed already
        return True
    return bool(ready)


class Connection:
    """Runs named queries on one connection (inside a transaction)."""

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

    def run_script(self, script: str, *, record_as: str, compatible_with: str) -> None:
        """A migration's statements, recorded as applied with the compatibility it
        declares."""
        try:
            self._conn.execute(script.encode())
            self._conn.execute(query_text("record_migration"),
                               {"name": record_as, "compatible_with": compatible_with})
        except psycopg.Error as exc:
            raise _wrap(exc, self._dsn) from exc


class Database:
    """A connection pool plus the named-query API aegis speaks, and the listener that
    turns NOTIFYs into wake-ups.

    ``name`` (a host's name) names the connections to the server: ``aegis:NAME:pool``
    and ``aegis:NAME:listen`` in ``pg_stat_activity.application_name``. ``listen_dsn``:
    where to LISTEN (default: ``dsn``); ``None`` with ``poll_s`` polls instead, for a
    ``dsn`` through a pooler in transaction mode, where LISTEN cannot pass."""

    # the pool's options, by keyword, each with its default
    def __init__(self, dsn: str, *, max_size: int = 3,  # noqa: PLR0913
                 timeout_s: float = 5.0, name: str = "aegis", listen_dsn: str | None = "",
                 poll_s: float = 2.0) -> None:
        self.dsn = dsn
        self.timeout_s = timeout_s
        self.max_size = max_size
        self._pool = ConnectionPool(
            writable_conninfo(dsn),
            min_size=1,
            max_size=1,  # raised by _lease, one connection at a time, up to max_size
            open=False,
            name=name,
            timeout=timeout_s,
            reconnect_timeout=max(timeout_s, 5.0),
            max_idle=MAX_IDLE_S,
            configure=_configure,
            check=_check,
            reset=_note_returned,
            kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None,
                    "connect_timeout": max(1, int(timeout_s)),
                    "application_name": f"aegis:{name}:pool"},
        )
        listen_to = dsn if listen_dsn == "" else listen_dsn
        self.listener = Listener(None if listen_to is None else writable_conninfo(listen_to),
                                 poll_s=poll_s,
                                 application_name=f"aegis:{name}:listen",
                                 configure=_configure,
                                 connect_timeout_s=max(1, int(timeout_s)))
        self._opened = False
        self._lock = threading.Lock()
        self._lending = threading.Lock()
        self._lent = 0  # callers given a turn by _lease: holding or awaiting a connection
        self._waiting: deque[threading.Event] = deque()  # callers in line for a turn
        self._first: set[int] = set()  # threads served ahead of the line (served_first)
        self._down_until = 0.0  # 0: not known to be down
        self._down_reason = ""
        self._probe = threading.Lock()

    def open(self) -> None:
        with self._lock:
            if not self._opened:
                self._pool.open(wait=False)
                self._opened = True

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            if self._opened:
                self._pool.close(timeout=2.0)
                self._opened = False

    def subscribe(self, channel: str, wake: threading.Event) -> None:
        """Set ``wake`` on every NOTIFY on ``channel`` (see aegis/storage/listener.py)."""
        self.listener.subscribe(channel, wake)

    def unsubscribe(self, channel: str, wake: threading.Event) -> None:
        self.listener.unsubscribe(channel, wake)

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
            with self._lease(), self._pool.connection(timeout=self.timeout_s) as conn:
                self._down_until = 0.0
                try:
                    yield conn
                except Exception as exc:
                    if _read_only(exc):
                        conn.close()  # the pool discards it and connects anew
                    raise
        except (psycopg.Error, PoolTimeout) as exc:
            error = _wrap(exc, self.dsn)
            if isinstance(error, DatabaseUnavailable):
                self._down_reason = str(error)
                self._down_until = time.monotonic() + FAIL_FAST_S
            raise error from exc
        finally:
            if probing:
                self._probe.release()

    @contextmanager
    def served_first(self) -> Iterator[None]:
        """For the block, this thread's calls wait for a connection ahead of every other
        caller in line: the watcher's loop, so a strike 1 is not queued behind a burst's
        strike 2 saves and restart records (they may wait the time of one call)."""
        ident = threading.get_ident()
        with self._lending:
            self._first.add(ident)
        try:
            yield
        finally:
            with self._lending:
                self._first.discard(ident)

    @contextmanager
    def _lease(self) -> Iterator[None]:
        """A turn at the pool, which grows only when a caller has waited GROW_AFTER_S.

        psycopg's pool opens a connection the moment a caller finds none ready (even the
        first, still connecting) and keeps it MAX_IDLE_S or more: the routine overlaps of
        an idle daemon would keep it over its budget of one pooled connection. So the pool
        may only grow as far as this gate allows. A caller who finds every connection
        lent waits in line, and each one given back goes to the longest waiting (a caller
        ``served_first`` goes to the head of the line); one who waited GROW_AFTER_S in
        vain lets the pool open one more, up to max_size, and one who waited the pool's
        timeout gives up (PoolTimeout). Once the pool has closed what it no longer uses,
        the allowance follows it down."""
        turn = None
        with self._lending:
            if self._lent == 0 and self._pool.max_size > (opened := self._open()):
                self._pool.resize(1, opened)  # the pool closed what it no longer used
            if self._lent >= self._pool.max_size or self._waiting:
                turn = threading.Event()
                if threading.get_ident() in self._first:
                    self._waiting.appendleft(turn)
                else:
                    self._waiting.append(turn)
            else:
                self._lent += 1
        if turn is not None:
            self._wait_turn(turn)
        try:
            yield
        finally:
            with self._lending:
                if self._waiting:
                    self._waiting.popleft().set()  # the turn passes on: as many lent
                else:
                    self._lent -= 1

    def _wait_turn(self, turn: threading.Event) -> None:
        """Wait in line for ``turn``: handed on by a caller done with its connection, or
        taken after GROW_AFTER_S with one more connection while the pool may grow;
        PoolTimeout after the pool's timeout."""
        if turn.wait(GROW_AFTER_S):
            return
        with self._lending:
            if turn.is_set():  # handed a turn just now
                return
            if self._pool.max_size < self.max_size:
                self._waiting.remove(turn)
                self._lent += 1
                self._pool.resize(1, self._pool.max_size + 1)
                return
        if turn.wait(max(0.0, self.timeout_s - GROW_AFTER_S)):
            return
        with self._lending:
            if turn.is_set():
                return
            self._waiting.remove(turn)
        raise PoolTimeout(f"no connection free within {self.timeout_s:g} s")

    def _open(self) -> int:
        """The connections the pool has open or is opening (at least one: its minimum)."""
        return max(1, self._pool.get_stats().get("pool_size", 0))

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

    def server_info(self) -> ServerInfo:
        """The server's version, the database's name, the server's clock, and which server
        of the URL's this is and whether it is the primary."""
        with self._connection() as conn:
            row = Connection(conn, self.dsn).fetch_one("doctor_database")
            address = f"{conn.info.host}:{conn.info.port}"
        assert row is not None  # a SELECT without FROM returns one row
        return ServerInfo(version=row["version"], name=row["name"], db_clock=row["db_clock"],
                          address=address, primary=not row["in_recovery"])

    def migrate(self) -> list[str]:
        """Apply pending migrations, all in one transaction under a transaction-level
        advisory lock (two processes migrating at once: one applies, the other then finds
        nothing left); return the names applied. SchemaTooNew, with nothing applied, when
        a newer aegis migrated the schema beyond what this one may run on."""
        applied: list[str] = []
        with self.transaction() as tx:
            tx.execute("migration_lock", key=MIGRATION_LOCK_KEY)
            tx.execute("create_schema_migrations")
            tx.execute("add_migration_compatibility")
            status = _status(tx.fetch_all("applied_migrations"))
            if not status.compatible:
                raise status.refusal()
            declared = {name: recorded_compatibility(script, __version__)
                        for name, script in migrations()}
            for name, script in migrations():
                if name in status.pending:
                    tx.run_script(script, record_as=name, compatible_with=declared[name])
                    applied.append(name)
            tx.execute("backfill_migration_compatibility", names=list(declared),
                       compatible_with=list(declared.values()))
        return applied

    def schema_status(self) -> SchemaStatus:
        """What ``migrate`` would apply, and whether this aegis may run on the schema,
        without changing anything."""
        try:
            rows = self.fetch_all("applied_migrations")
        except StoreError as exc:
            if exc.sqlstate != "42P01":  # undefined_table: never migrated
                raise
            rows = []
        return _status(rows)

    def pending_migrations(self) -> list[str]:
        return list(self.schema_status().pending)


def _status(rows: list[Row]) -> SchemaStatus:
    return schema_status([AppliedMigration(row["name"], row["compatible_with"]) for row in rows],
                         migrations(), __version__)
