"""The Python API: one object that opens what aegis needs and the faces operators script.

    import aegis
    with aegis.connect() as app:
        app.memory.record("deploy_finished", "web rolled out", importance="medium")
        app.state.set("last_deploy", "2026-11-22")

This is the top of aegis: it builds the parts the layers below take (settings, every
layer's checked, the database, the event store with its spool replays) and the registry
of jobs and services. The CLI is built on these same calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from aegis.core import config
from aegis.core.clock import utcnow
from aegis.core.config import DatabasePooler, Settings
from aegis.core.durations import parse_since
from aegis.core.errors import UsageError
from aegis.notify.offline import DirectPager, run_database_watch
from aegis.notify.sender import deliver_pending, run_sender
from aegis.scheduling.control import SchedulerControl
from aegis.scheduling.job_settings import job_overrides
from aegis.scheduling.registry import Registry, load_jobs
from aegis.scheduling.repository import replay_run_finish, replay_run_record
from aegis.storage import embedded
from aegis.storage.db import Database
from aegis.storage.dboutage import SPOOL_KIND as DATABASE_OUTAGE
from aegis.storage.dboutage import replay_outage
from aegis.storage.events import Event
from aegis.storage.spool import Spool
from aegis.storage.store import Replay, Store
from aegis.supervision.escalation import page_pending, run_pager
from aegis.supervision.persist import replay_routed
from aegis.supervision.protocol.windows import configured_windows
from aegis.web import http

DEFAULT_EVENT_WINDOW = "24h"


def spool_replays(settings: Settings) -> Mapping[str, Replay]:
    """How each kind of spooled record other than events and state is written back (a
    container's decision routed to its host's storm by ``settings``, the database's own
    outage with its message resolved)."""
    return {"job_run": replay_run_record, "job_run_finish": replay_run_finish,
            "container_decision": replay_routed(settings), DATABASE_OUTAGE: replay_outage()}


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
              limit: int = 100, container: str | None = None) -> list[Event]:
        """Events since ``since`` (a datetime, ``24h``/``7d``, or ISO-8601), newest first;
        ``importance`` keeps events at that level or above, ``container`` those about
        that container."""
        if isinstance(since, str):
            try:
                since = parse_since(since, utcnow())
            except ValueError as exc:
                raise UsageError(f"since: {exc}") from None
        if limit < 1:
            raise UsageError("limit must be at least 1")
        types = [event_type] if isinstance(event_type, str) else event_type
        return self._store.query_events(since=since, event_types=types,
                                        min_importance=importance, container=container,
                                        limit=limit)


class State:
    """Key/value state (JSON values), shared by every daemon on the database."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, key: str, default: Any = None) -> Any:
        return self._store.get_state(key, default)

    def set(self, key: str, value: Any) -> None:
        self._store.set_state(key, value)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``env`` (the process's environment by default) and the file it names
    (``aegis.core.config.load_settings``), with the per-job settings parsed too, so a bad
    ``[jobs.ID]`` key, ``AEGIS_JOB__ID__KEY`` variable or ``[[maintenance]]`` table is
    refused here, before anything starts (ConfigError naming it)."""
    settings = config.load_settings(env)
    job_overrides(settings)
    configured_windows(settings.maintenance_tables, settings.config_file)
    return settings


def load_registry(settings: Settings) -> Registry:
    """Every job module's jobs (see ``load_jobs``) and every service: theirs and aegis's."""
    registry = load_jobs(settings)
    add_core_services(registry)
    return registry


def add_core_services(registry: Registry) -> None:
    """aegis's own long-running loops: the HTTP endpoint (returns at once when
    AEGIS_HTTP_ADDR=off), the escalation pager (returns at once when AEGIS_ESCALATE_AFTER
    is unset), the outbox sender and the database watch (a message when the database is
    unreachable); ``aegis run --once`` asks the pager and the sender to queue and deliver
    what is due instead."""
    registry.add_service("http", http.serve)
    registry.add_service("database_watch", run_database_watch)
    registry.add_service("escalation_pager", run_pager, once=page_pending)
    registry.add_service("outbox_sender", run_sender, once=deliver_pending)


class Aegis:
    """What ``connect()`` returns; closes what it opened when used as a context manager.
    It is the ``Runtime`` (aegis/storage/runtime.py) handed to jobs and services."""

    def __init__(self, settings: Settings, db: Database,
                 registry: Registry | None = None) -> None:
        self.settings = settings
        self.db = db
        # an escalation decided while the database is unreachable is sent at once
        self.store = Store(db, Spool(settings.home / "spool.jsonl"), settings.host,
                           replays=spool_replays(settings), pager=DirectPager(settings))
        self.memory = Memory(self.store)
        self.state = State(self.store)
        self.scheduler = SchedulerControl(self, lambda: self.registry)
        self._registry = registry

    @property
    def registry(self) -> Registry:
        """The jobs of this process: jobs/, AEGIS_JOB_MODULES, the ``aegis.jobs`` entry
        points, with configuration overrides, plus any added with ``scheduler.add_job``;
        and the services beside them."""
        if self._registry is None:
            self._registry = load_registry(self.settings)
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


def listen_url(settings: Settings, dsn: str) -> str | None:
    """Where aegis LISTENs for wake-ups: AEGIS_LISTEN_DATABASE_URL, else the database URL
    itself unless it goes through a pooler in transaction mode (None: poll)."""
    if settings.listen_database_url:
        return settings.listen_database_url
    return None if settings.database_pooler == DatabasePooler.TRANSACTION else dsn


def connect(settings: Settings | None = None, *, migrate: bool = True,
            keep_embedded: bool = False, pool_size: int = 3,
            registry: Registry | None = None) -> Aegis:
    """Open aegis: settings from the environment by default, the embedded database when
    none is configured. With ``migrate``, pending migrations are applied first. A
    ``registry`` (see ``load_registry``) replaces the one loaded on first use."""
    settings = settings or load_settings()
    dsn = database_url(settings, keep_embedded=keep_embedded)
    db = Database(dsn, max_size=pool_size, name=settings.host,
                  listen_dsn=listen_url(settings, dsn), poll_s=settings.listen_poll_s)
    try:
        if migrate:
            db.migrate()
    except BaseException:
        db.close()
        raise
    return Aegis(settings, db, registry)
