"""The Python API: one object that opens what aegis needs and the faces operators script.

    import aegis
    with aegis.connect() as app:
        app.memory.record("deploy_finished", "web rolled out", importance="medium")
        app.state.set("last_deploy", "2026-11-22")

The CLI is built on these same calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from aegis import (
    containers,  # noqa: F401  (registers the replay of spooled decisions)
    embedded,
)
from aegis.clock import utcnow
from aegis.config import Settings, load_settings
from aegis.control import SchedulerControl
from aegis.db import Database
from aegis.durations import parse_since
from aegis.errors import UsageError
from aegis.registry import Registry, load_jobs
from aegis.spool import Spool
from aegis.store import Event, Store

DEFAULT_EVENT_WINDOW = "24h"


class Memory:
    """The episodic event history."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record(self, event_type: str, summary: str, importance: str = "low",
               details: dict[str, Any] | None = None, source: str = "api") -> Event:
        return self._store.record_event(event_type, summary, importance=importance,
                                        details=details, source=source)

    def query(self, since: datetime | str = DEFAULT_EVENT_WINDOW,
              event_type: str | Sequence[str] | None = None, importance: str | None = None,
              limit: int = 100) -> list[Event]:
        """Events since ``since`` (a datetime, ``24h``/``7d``, or ISO-8601), newest first;
        ``importance`` keeps events at that level or above."""
        if isinstance(since, str):
            try:
                since = parse_since(since, utcnow())
            except ValueError as exc:
                raise UsageError(f"since: {exc}") from None
        if limit < 1:
            raise UsageError("limit must be at least 1")
        types = [event_type] if isinstance(event_type, str) else event_type
        return self._store.query_events(since=since, event_types=types,
                                        min_importance=importance, limit=limit)


class State:
    """Key/value state (JSON values), shared by every daemon on the database."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, key: str, default: Any = None) -> Any:
        return self._store.get_state(key, default)

    def set(self, key: str, value: Any) -> None:
        self._store.set_state(key, value)


class Aegis:
    """What ``connect()`` returns; closes what it opened when used as a context manager."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.store = Store(db, Spool(settings.home / "spool.jsonl"), settings.host)
        self.memory = Memory(self.store)
        self.state = State(self.store)
        self.scheduler = SchedulerControl(self, lambda: self.registry)
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        """The jobs of this process: jobs/, AEGIS_JOB_MODULES, the ``aegis.jobs`` entry
        points, with configuration overrides, plus any added with ``scheduler.add_job``."""
        if self._registry is None:
            self._registry = load_jobs(self.settings)
        return self._registry

    def close(self) -> None:
        self.scheduler.stop()
        self.db.close()

    def __enter__(self) -> Aegis:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def database_url(settings: Settings, *, keep_embedded: bool = False) -> str:
    """The configured DSN, or the embedded server's (started if needed)."""
    return settings.dsn or embedded.start(settings.home, keep_running=keep_embedded)


def connect(settings: Settings | None = None, *, migrate: bool = True,
            keep_embedded: bool = False, pool_size: int = 4) -> Aegis:
    """Open aegis: settings from the environment by default, the embedded database when
    none is configured. With ``migrate``, pending migrations are applied first."""
    settings = settings or load_settings()
    db = Database(database_url(settings, keep_embedded=keep_embedded), max_size=pool_size,
                  name=f"aegis@{settings.host}")
    try:
        if migrate:
            db.migrate()
    except BaseException:
        db.close()
        raise
    return Aegis(settings, db)
