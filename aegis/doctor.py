"""``aegis doctor``: what is wrong with this installation, and the one-line fix for each.

Every check returns ok, warn or fail; none raises. The checks are read-only: the journal
probe writes and removes one temporary file, and the Docker check asks to restart a
container that cannot exist (to learn whether a proxy forbids restarts); nothing else is
asked or changed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aegis import api, hostlint
from aegis.core.clock import utcnow
from aegis.core.config import DatabasePooler, RemediationMode, Settings
from aegis.core.errors import AegisError
from aegis.core.jsonable import to_json
from aegis.core.processes import pid_alive
from aegis.core.redact import redact, redact_urls
from aegis.scheduling.heartbeat import DaemonStatus, file_status, read_heartbeat, read_pid
from aegis.storage.outbox import Channel, Outbox, OutboxStatus
from aegis.supervision.docker import (
    Seen,
    docker_client,
    docker_endpoint,
    docker_errors,
    events_refused,
    forbidden,
    seen_from_inspect,
)


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


OK, WARN, FAIL = Status.OK, Status.WARN, Status.FAIL
SKEW_WARN_S = 2.0
SKEW_FAIL_S = 30.0
PENDING_WARN_S = 600.0
DOCKER_TIMEOUT_S = 5


@dataclass(frozen=True)
class Check:
    check: str
    status: Status
    detail: str
    hint: str = ""

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


def run_checks(settings: Settings, clock: Callable[[], datetime] = utcnow) -> list[Check]:
    """Every check, in a fixed order."""
    results: list[Check] = []
    app: api.Aegis | None = None
    try:
        app = api.connect(settings, migrate=False, pool_size=1)
    except AegisError as exc:
        results.append(_database_unreachable(settings, str(exc)))
    try:
        if app is not None:
            results.extend(_database_checks(app, settings, clock))
        else:
            results.append(Check("migrations", WARN, "not checked: the database is unreachable",
                                 "fix the database check first"))
            results.append(Check("clock", WARN, "not checked: the database is unreachable",
                                 "fix the database check first"))
        results.append(check_docker(settings))
        results.extend(check_host(settings))
        for channel in Channel:
            results.append(check_channel(settings, channel, app, clock()))
        results.append(check_journal_dir(settings.journal_dir))
        results.append(check_daemon(settings, clock()))
    finally:
        if app is not None:
            app.close()
    return results


def has_failures(checks: list[Check]) -> bool:
    return any(check.status == FAIL for check in checks)


# --- database, migrations, clock ---


def _where(settings: Settings) -> str:
    if settings.embedded:
        return f"embedded, under {settings.home / 'pgdata'}"
    if settings.postgres_host and not settings.database_url:
        return f"{settings.postgres_host}:{settings.postgres_port}"
    host = urlsplit(settings.database_url or "").hostname
    return host or "AEGIS_DATABASE_URL"


def _database_unreachable(settings: Settings, error: str) -> Check:
    secrets = [s for s in (settings.database_url, settings.postgres_password) if s]
    hint = ("check that AEGIS_HOME is writable and run `aegis db url`" if settings.embedded
            else "check AEGIS_DATABASE_URL or POSTGRES_HOST/PORT/USER/PASSWORD/DB, and that "
                 "the server accepts connections from this host (pg_isready)")
    return Check("database", FAIL, f"unreachable ({_where(settings)}): "
                 f"{redact(error, secrets)}", hint)


def _database_checks(app: api.Aegis, settings: Settings,
                     clock: Callable[[], datetime]) -> list[Check]:
    try:
        before = clock()
        row = app.db.server_info()
        after = clock()
        pending = app.db.pending_migrations()
    except AegisError as exc:
        return [_database_unreachable(settings, str(exc)),
                Check("migrations", WARN, "not checked: the database is unreachable",
                      "fix the database check first"),
                Check("clock", WARN, "not checked: the database is unreachable",
                      "fix the database check first")]
    database = Check("database", OK, f"PostgreSQL {row['version']}, database "
                     f"{row['name']} ({_where(settings)}); {wakeups(settings)}")
    if pending:
        migrations = Check("migrations", WARN, f"{len(pending)} pending: {', '.join(pending)}",
                           "run `aegis db migrate` (`aegis run` also applies them at start)")
    else:
        migrations = Check("migrations", OK, "schema is current")
    local_mid = before + (after - before) / 2
    return [database, migrations, clock_check(row["db_clock"], local_mid)]


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
    detail = f"this host is {abs(skew_s):.2f}s {'ahead of' if skew_s >= 0 else 'behind'} " \
             "the database"
    hint = "enable time sync (timedatectl set-ntp true, or chrony) on this host and the " \
           "database host"
    if abs(skew_s) >= SKEW_FAIL_S:
        return Check("clock", FAIL, detail, hint)
    if abs(skew_s) >= SKEW_WARN_S:
        return Check("clock", WARN, detail, hint)
    return Check("clock", OK, detail)


# --- docker ---


# A name no container can have (Docker's names start with a letter or a digit): restarting
# it changes nothing, and the answer tells an endpoint that allows restarts (404, no such
# container) from a proxy that forbids them (403).
RESTART_PROBE = "_aegis-doctor-probe"
PROXY_HINT = ("the Docker endpoint (a socket proxy?) forbids what aegis needs: allow "
              "CONTAINERS, EVENTS, PING, VERSION and ALLOW_RESTARTS (docs/deployment.md)")


def check_docker(settings: Settings) -> Check:
    """Reachable, its API version, a container listing (what supervision needs), and
    whether the endpoint lets aegis follow events and restart containers."""
    missing = WARN if settings.remediation == RemediationMode.OFF else FAIL
    endpoint = docker_endpoint()
    try:
        client = docker_client(DOCKER_TIMEOUT_S)
        try:
            version: dict[str, Any] = client.version()
            containers = client.api.containers(all=True, quiet=True)
            tls = " over TLS" if str(client.api.base_url).startswith("https:") else ""
            refused = refusals(client, restarts=settings.remediation == RemediationMode.ON)
        finally:
            client.close()
    except Exception as exc:  # the SDK raises DockerException, requests and OS errors alike
        message = redact(str(exc))
        if forbidden(exc):
            hint = PROXY_HINT
        elif "ermission denied" in message:
            hint = ("add aegis's user to the socket's group: stat -c %g /var/run/docker.sock, "
                    "then group_add it in compose (DOCKER_GID) or `usermod -aG docker USER`")
        elif "No such file" in message or "FileNotFoundError" in message:
            hint = "start Docker, or point DOCKER_HOST at its socket"
        elif "SSL" in message or "certificate" in message or "HTTPS server" in message:
            hint = ("for an engine with TLS set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to "
                    "a folder holding its ca.pem and a client's cert.pem and key.pem")
        else:
            hint = "check that dockerd runs and DOCKER_HOST points at it"
        return Check("docker", missing, f"unreachable at {endpoint}: {message[:200]}", hint)
    detail = (f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}) "
              f"at {endpoint}{tls}, {len(containers)} containers")
    if refused:
        hint = PROXY_HINT
        if "container restarts" in refused:
            hint += ", or set AEGIS_REMEDIATION=observe to record and escalate only"
        return Check("docker", missing, f"{detail}; forbidden (403): {', '.join(refused)}",
                     hint)
    return Check("docker", OK, detail)


def refusals(client: Any, restarts: bool) -> list[str]:
    """What supervision needs that the endpoint answers 403 Forbidden: the event stream and,
    with ``restarts``, container restarts (asked of a container that cannot exist)."""
    refused = ["the event stream"] if events_refused(client) else []
    if restarts:
        try:
            client.api.restart(RESTART_PROBE, timeout=0)
        except docker_errors() as exc:  # 404 no such container: restarts are allowed
            if forbidden(exc):
                refused.append("container restarts")
    return refused


def check_host(settings: Settings, env: Mapping[str, str] | None = None) -> list[Check]:
    """The host linted (aegis/hostlint.py): every container inspected; without an engine,
    only aegis's own environment (the docker check says why)."""
    seen: list[Seen] = []
    try:
        client = docker_client(DOCKER_TIMEOUT_S)
        try:
            for entry in client.api.containers(all=True):
                with contextlib.suppress(*docker_errors()):  # removed meanwhile
                    seen.append(seen_from_inspect(client.api.inspect_container(entry["Id"])))
        finally:
            client.close()
    except Exception:  # unreachable or refused: the docker check has said so
        findings = [hostlint.autoheal_variables(settings, os.environ if env is None else env)]
    else:
        findings = hostlint.lint(settings, seen, os.environ if env is None else env)
    return [Check(f.check, Status(f.status), f.detail, f.hint) for f in findings]


# --- notification channels ---


def _targets(settings: Settings, channel: str) -> list[str]:
    if channel == Channel.ALERTS:
        discord, urls = settings.discord_webhook_url, settings.notify_urls
    else:
        discord, urls = settings.discord_journal_webhook_url, settings.journal_notify_urls
    targets = [f"discord ({urlsplit(discord).hostname})"] if discord else []
    targets += [f"apprise {url.split('://', 1)[0]}://" for url in urls]
    return targets


def check_channel(settings: Settings, channel: Channel, app: api.Aegis | None,
                  now: datetime) -> Check:
    name = f"channel:{channel}"
    variables = ("DISCORD_WEBHOOK_URL or AEGIS_NOTIFY_URLS" if channel == Channel.ALERTS
                 else "DISCORD_JOURNAL_WEBHOOK_URL or AEGIS_JOURNAL_NOTIFY_URLS")
    targets = _targets(settings, channel)
    if not targets:
        return Check(name, WARN, "not configured: its messages stay in the outbox",
                     f"set {variables}")
    configured = ", ".join(targets)
    if app is None:
        return Check(name, WARN, f"{configured}; outbox not readable (database unreachable)",
                     "fix the database check first")
    try:
        health = Outbox(app.db).channel_health(channel)
    except AegisError as exc:
        return Check(name, WARN, f"{configured}; outbox not readable: {redact(str(exc))}",
                     "fix the database check first")
    last = health.last_delivered_at
    delivered = f"last delivery {last:%Y-%m-%d %H:%M:%S}Z" if last else "nothing delivered yet"
    retry = f"fix it, then run `aegis notify test --channel {channel}`"
    if health.latest_status in (OutboxStatus.FAILED, OutboxStatus.UNDELIVERABLE):
        error = redact_urls(redact(health.latest_error or "no reason recorded"))
        return Check(name, FAIL, f"{configured}; {delivered}; latest message "
                     f"{health.latest_status}: {error[:200]}", retry)
    pending, oldest = health.pending, health.oldest_pending_at
    if pending and oldest is not None and (now - oldest).total_seconds() > PENDING_WARN_S:
        age_min = (now - oldest).total_seconds() / 60
        return Check(name, WARN, f"{configured}; {delivered}; {pending} pending, oldest "
                     f"{age_min:.0f} min", "is the daemon running? " + retry)
    return Check(name, OK, f"{configured}; {delivered}; {pending} pending")


# --- journal folder, daemon ---


def check_journal_dir(path: Path) -> Check:
    hint = f"create it and let aegis's user write to it: mkdir -p {path} && chown USER {path}"
    if path.is_dir():
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".aegis-doctor-"):
                pass
        except OSError as exc:
            return Check("journal", FAIL, f"{path} is not writable: {exc.strerror or exc}",
                         hint)
        return Check("journal", OK, f"{path} is writable")
    if path.exists():
        return Check("journal", FAIL, f"{path} exists and is not a folder",
                     "point AEGIS_JOURNAL_DIR at a folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if os.access(parent, os.W_OK | os.X_OK):
        return Check("journal", OK, f"{path} will be created (under {parent})")
    return Check("journal", FAIL, f"{path} is missing and {parent} is not writable", hint)


def check_daemon(settings: Settings, now: datetime) -> Check:
    heartbeat = read_heartbeat(settings.home)
    pid = read_pid(settings.home) or (heartbeat.pid if heartbeat else None)
    alive = pid is not None and pid_alive(pid)
    status = file_status(heartbeat, now, settings.heartbeat_interval_s, alive=alive)
    if heartbeat is None:
        return Check("daemon", WARN, f"never started with AEGIS_HOME={settings.home}",
                     "start it: `aegis run`, or `docker compose up -d`")
    age_s = (now - heartbeat.last_heartbeat_at).total_seconds()
    detail = f"{status}: pid {heartbeat.pid} on {heartbeat.host}, heartbeat {age_s:.0f}s old"
    if status == DaemonStatus.RUNNING:
        return Check("daemon", OK, detail)
    if status == DaemonStatus.STOPPED:
        return Check("daemon", WARN, detail, "start it: `aegis run`, or `docker compose up -d`")
    return Check("daemon", FAIL, detail, "the loop is stuck or died: read its log, then "
                 "`aegis stop` and `aegis run` (or restart the container)")
