"""The database, its migrations, and this host's clock against the database's. The
database check names the server the connection reached (with several hosts in the URL,
the one that answered) and fails on a standby: aegis must write."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

from aegis import api
from aegis.core.config import DatabasePooler, Settings, host_list
from aegis.core.errors import AegisError
from aegis.core.redact import redact
from aegis.doctor.checks import FAIL, OK, WARN, Check, not_checked
from aegis.storage.db import ServerInfo
from aegis.storage.schema import SchemaStatus

SKEW_WARN_S = 2.0
SKEW_FAIL_S = 30.0


def _where(settings: Settings) -> str:
    if settings.embedded:
        return f"embedded, under {settings.home / 'pgdata'}"
    if settings.postgres_host and not settings.database_url:
        return host_list(settings.postgres_host, settings.postgres_port)
    host = urlsplit(settings.database_url or "").netloc.rpartition("@")[2]
    return host or "AEGIS_DATABASE_URL"


def database_unreachable(settings: Settings, error: str) -> Check:
    secrets = [s for s in (settings.database_url, settings.postgres_password) if s]
    hint = ("check that AEGIS_HOME is writable and run `aegis db url`" if settings.embedded
            else "check AEGIS_DATABASE_URL or POSTGRES_HOST/PORT/USER/PASSWORD/DB, and that "
                 "the server accepts connections from this host (pg_isready)")
    return Check("database", FAIL, f"unreachable ({_where(settings)}): "
                 f"{redact(error, secrets)}", hint)


def database_checks(app: api.Aegis, settings: Settings,
                     clock: Callable[[], datetime]) -> list[Check]:
    try:
        before = clock()
        server = app.db.server_info()
        after = clock()
        schema = app.db.schema_status()
    except AegisError as exc:
        return [database_unreachable(settings, str(exc)), not_checked("migrations"),
                not_checked("clock")]
    database = server_check(server, settings)
    local_mid = before + (after - before) / 2
    return [database, migrations_check(schema), clock_check(server.db_clock, local_mid)]


def migrations_check(schema: SchemaStatus) -> Check:
    """Whether this aegis may run on the schema, and what it would apply."""
    newer = ", ".join(m.name for m in schema.newer)
    if not schema.compatible:
        return Check("migrations", FAIL, str(schema.refusal()),
                     "upgrade aegis on this host to the release the other hosts run")
    if schema.pending:
        return Check("migrations", WARN, f"{len(schema.pending)} pending: "
                     f"{', '.join(schema.pending)}",
                     "run `aegis db migrate` (`aegis run` also applies them at start)")
    if schema.newer:
        return Check("migrations", WARN, f"migrations of a newer aegis applied ({newer}), "
                     f"which allow aegis {schema.requires} and later: this is aegis "
                     f"{schema.running}", "upgrade aegis on this host when you can")
    return Check("migrations", OK, "schema is current")


def server_check(server: ServerInfo, settings: Settings) -> Check:
    """The server answering: its version, which of the configured hosts it is, and
    whether it is the primary."""
    where = f"({_where(settings)})" if settings.embedded else \
        f"on {server.address} of {_where(settings)}"
    detail = f"PostgreSQL {server.version}, database {server.name} {where}"
    if not server.primary:
        return Check("database", FAIL, f"{detail}, a standby (read-only)",
                     "aegis writes: point it at the primary, or list every host with "
                     "target_session_attrs=read-write (the default with several hosts)")
    return Check("database", OK, f"{detail}, the primary; {wakeups(settings)}")


def wakeups(settings: Settings) -> str:
    """How the daemon learns of new tasks and messages, as the settings make it."""
    if settings.listen_database_url:
        return "wake-ups: LISTEN on AEGIS_LISTEN_DATABASE_URL"
    if settings.database_pooler == DatabasePooler.TRANSACTION:
        return (f"wake-ups: polling every {settings.listen_poll_s:g}s (through a pooler in "
                "transaction mode; set AEGIS_LISTEN_DATABASE_URL to LISTEN directly)")
    return "wake-ups: LISTEN"


def clock_check(database_now: datetime, local_now: datetime) -> Check:
    """Skew between this host's clock and the database's: heartbeats and claims rely on it."""
    skew_s = (local_now - database_now).total_seconds()
    detail = (f"this host is {abs(skew_s):.2f}s {'ahead of' if skew_s >= 0 else 'behind'} "
              "the database")
    hint = ("enable time sync (timedatectl set-ntp true, or chrony) on this host and the "
            "database host")
    if abs(skew_s) >= SKEW_FAIL_S:
        return Check("clock", FAIL, detail, hint)
    if abs(skew_s) >= SKEW_WARN_S:
        return Check("clock", WARN, detail, hint)
    return Check("clock", OK, detail)
