"""Settings: environment variables first, then the optional TOML file named by AEGIS_CONFIG.

Every option is declared once in ``OPTIONS``; the loader, the masking ``repr`` and the
configuration reference in docs/ are all driven by that table.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aegis.core import parsing
from aegis.core.durations import parse_time_of_day
from aegis.core.errors import ConfigError

JOB_ENV_PREFIX = "AEGIS_JOB__"
_JOB_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class LogFormat(StrEnum):
    AUTO = "auto"  # JSON lines, unless stderr is a terminal
    JSON = "json"
    CONSOLE = "console"
    LOGFMT = "logfmt"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class DockerScope(StrEnum):
    ALL = "all"  # every container with a health check
    LABELED = "labeled"  # only containers labelled aegis.enable=true


class RemediationMode(StrEnum):
    ON = "on"  # restart and escalate
    OBSERVE = "observe"  # strikes and alerts, never a restart
    OFF = "off"  # no supervision at all


class AlertStyle(StrEnum):
    THREAD = "thread"  # one Discord message per incident, edited as it moves
    POSTS = "posts"  # a post per escalation and per recovery


class AlertFrom(StrEnum):
    ESCALATION = "escalation"  # an incident alerts from its escalation
    RESTART = "restart"  # ... or from its first restart


@dataclass(frozen=True)
class JobOverride:
    """Per-job settings from ``[jobs.ID]`` or ``AEGIS_JOB__ID__KEY``; None keeps the default."""

    enabled: bool | None = None
    every_s: float | None = None
    at: str | None = None
    cron: str | None = None
    misfire_grace_s: float | None = None
    timeout_s: float | None = None


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    postgres_host: str | None = None
    postgres_port: int = 5432
    postgres_user: str = "postgres"
    postgres_password: str | None = None
    postgres_db: str = "aegis"
    home: Path = Path("~/.aegis")
    journal_dir: Path = Path("~/memory/journal")
    host: str = "localhost"
    log_format: LogFormat = LogFormat.AUTO
    log_level: LogLevel = LogLevel.INFO
    job_modules: tuple[str, ...] = ()
    workers: int = 4
    heartbeat_interval_s: float = 10.0
    shutdown_grace_s: float = 20.0
    heartbeat_url: str | None = None
    http_addr: str | None = "127.0.0.1:9465"
    docker_scope: DockerScope = DockerScope.ALL
    remediation: RemediationMode = RemediationMode.ON
    strike_interval_s: float = 60.0
    max_restarts_per_hour: int = 3
    restart_backoff_s: float = 10.0
    restart_backoff_max_s: float = 300.0
    stable_period_s: float | None = None
    protected_containers: tuple[str, ...] = ()
    start_period_s: float = 0.0
    default_stop_timeout_s: float = 10.0
    autoheal_compat: bool = True
    autoheal_label: str = "autoheal"
    alert_style: AlertStyle = AlertStyle.THREAD
    alert_from: AlertFrom = AlertFrom.ESCALATION
    discord_webhook_url: str | None = None
    discord_journal_webhook_url: str | None = None
    notify_urls: tuple[str, ...] = ()
    journal_notify_urls: tuple[str, ...] = ()
    outbox_max_age_s: float = 86400.0
    event_retention_s: float = 30 * 86400.0
    job_runs_retention_s: float = 90 * 86400.0
    outbox_retention_s: float = 14 * 86400.0
    container_retention_s: float = 30 * 86400.0
    config_file: Path | None = None
    job_overrides: Mapping[str, JobOverride] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        """True when no database is configured and aegis runs its own PostgreSQL."""
        return self.database_url is None and self.postgres_host is None

    @property
    def dsn(self) -> str | None:
        """The configured DSN, or None for the embedded server."""
        if self.database_url:
            return self.database_url
        if self.postgres_host is None:
            return None
        auth = quote(self.postgres_user, safe="")
        if self.postgres_password:
            auth += ":" + quote(self.postgres_password, safe="")
        return (
            f"postgresql://{auth}@{self.postgres_host}:{self.postgres_port}/"
            f"{quote(self.postgres_db, safe='')}"
        )

    @property
    def effective_stable_period_s(self) -> float:
        return self.stable_period_s or 2 * self.strike_interval_s

    def __repr__(self) -> str:
        secret = {o.field for o in OPTIONS if o.secret}
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in secret and value:
                value = "***"
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"


@dataclass(frozen=True)
class Option:
    field: str
    env: str | None
    toml: str | None
    parse: Callable[[Any], Any]
    doc: str
    secret: bool = False
    # docker-autoheal's variable read in its place under AEGIS_AUTOHEAL_COMPAT=on
    autoheal: str | None = None


OPTIONS: tuple[Option, ...] = (
    Option("database_url", "AEGIS_DATABASE_URL", "database.url", parsing.database_url,
           "PostgreSQL DSN. Unset (and POSTGRES_HOST unset): the embedded server.",
           secret=True),
    Option("postgres_host", "POSTGRES_HOST", "database.host", parsing.nonempty,
           "PostgreSQL host, when AEGIS_DATABASE_URL is not set."),
    Option("postgres_port", "POSTGRES_PORT", "database.port", parsing.int_range(1, 65535),
           "PostgreSQL port."),
    Option("postgres_user", "POSTGRES_USER", "database.user", parsing.nonempty, "PostgreSQL user."),
    Option("postgres_password", "POSTGRES_PASSWORD", "database.password", parsing.text,
           "PostgreSQL password.", secret=True),
    Option("postgres_db", "POSTGRES_DB", "database.name", parsing.nonempty, "PostgreSQL database."),
    Option("home", "AEGIS_HOME", "home", parsing.folder,
           "State folder: embedded database, pid file, heartbeat file, event spool."),
    Option("journal_dir", "AEGIS_JOURNAL_DIR", "journal_dir", parsing.folder,
           "Folder the evening digest is written to, as YYYY-MM-DD.md."),
    Option("host", "AEGIS_HOST", "host", parsing.host_name,
           "This host's name in events, runs and heartbeats (default: the hostname)."),
    Option("log_format", "AEGIS_LOG_FORMAT", "log.format",
           parsing.member(LogFormat),
           "auto: JSON lines unless stderr is a terminal; json; console; logfmt."),
    Option("log_level", "AEGIS_LOG_LEVEL", "log.level",
           parsing.member(LogLevel), "Lowest level logged."),
    Option("job_modules", "AEGIS_JOB_MODULES", "job_modules", parsing.items(parsing.module_path),
           "Extra job modules to load, comma-separated import paths."),
    Option("workers", "AEGIS_WORKERS", "daemon.workers", parsing.int_range(1, 64),
           "Worker threads that run jobs."),
    Option("heartbeat_interval_s", "AEGIS_HEARTBEAT_INTERVAL", "daemon.heartbeat_interval",
           parsing.duration(0.1), "How often the loop records its heartbeat."),
    Option("shutdown_grace_s", "AEGIS_SHUTDOWN_GRACE", "daemon.shutdown_grace", parsing.duration(),
           "How long running jobs and container restarts may finish after SIGTERM; "
           "keep it under Docker's stop timeout."),
    Option("heartbeat_url", "AEGIS_HEARTBEAT_URL", "daemon.heartbeat_url", parsing.http_url,
           "Optional dead-man's-switch URL pinged from the loop on every heartbeat.",
           secret=True),
    Option("http_addr", "AEGIS_HTTP_ADDR", "http.addr", parsing.http_addr,
           "HOST:PORT of /healthz and /metrics, or 'off'."),
    Option("docker_scope", "AEGIS_DOCKER_SCOPE", "docker.scope", parsing.member(DockerScope),
           "all: every container with a health check; labeled: only aegis.enable=true.",
           autoheal="AUTOHEAL_CONTAINER_LABEL"),
    Option("remediation", "AEGIS_REMEDIATION", "docker.remediation",
           parsing.member(RemediationMode),
           "on: restart and escalate; observe: strikes and alerts only; off: no supervision."),
    Option("strike_interval_s", "AEGIS_STRIKE_INTERVAL", "docker.strike_interval",
           parsing.duration(1.0), "Time between strikes.", autoheal="AUTOHEAL_INTERVAL"),
    Option("max_restarts_per_hour", "AEGIS_MAX_RESTARTS", "docker.max_restarts",
           parsing.int_range(0, 100), "Restart budget per container per hour."),
    Option("restart_backoff_s", "AEGIS_RESTART_BACKOFF", "docker.restart_backoff",
           parsing.duration(0.0), "First back-off between restarts; doubles each restart."),
    Option("restart_backoff_max_s", "AEGIS_RESTART_BACKOFF_MAX", "docker.restart_backoff_max",
           parsing.duration(0.0), "Longest back-off between restarts."),
    Option("stable_period_s", "AEGIS_STABLE_PERIOD", "docker.stable_period", parsing.duration(0.0),
           "Healthy this long resets strikes (default: two strike intervals)."),
    Option("protected_containers", "AEGIS_PROTECTED_CONTAINERS", "docker.protected",
           parsing.items(parsing.nonempty),
           "Container names never restarted, besides aegis.protect=true."),
    Option("start_period_s", "AEGIS_START_PERIOD", "docker.start_period", parsing.duration(),
           "After the daemon starts, containers are left alone this long.",
           autoheal="AUTOHEAL_START_PERIOD"),
    Option("default_stop_timeout_s", "AEGIS_DEFAULT_STOP_TIMEOUT", "docker.default_stop_timeout",
           parsing.duration(), "Stop timeout of a restart when no label or container sets one.",
           autoheal="AUTOHEAL_DEFAULT_STOP_TIMEOUT"),
    Option("autoheal_compat", "AEGIS_AUTOHEAL_COMPAT", "docker.autoheal_compat", parsing.boolean,
           "Read docker-autoheal's labels and variables (docs/migrating-from-autoheal.md)."),
    Option("autoheal_label", "AUTOHEAL_CONTAINER_LABEL", "docker.autoheal_label",
           parsing.label_key, "docker-autoheal's label (true: aegis.enable=true), or all."),
    Option("alert_style", "AEGIS_ALERT_STYLE", "notify.alert_style", parsing.member(AlertStyle),
           "thread: one Discord message per incident, edited as it moves; posts: a post "
           "per escalation and recovery."),
    Option("alert_from", "AEGIS_ALERT_FROM", "notify.alert_from", parsing.member(AlertFrom),
           "escalation: an incident alerts when it escalates; restart: at its first restart."),
    Option("discord_webhook_url", "DISCORD_WEBHOOK_URL", "notify.discord_webhook_url",
           parsing.http_url, "Discord webhook of the alerts channel.", secret=True,
           autoheal="WEBHOOK_URL"),
    Option("discord_journal_webhook_url", "DISCORD_JOURNAL_WEBHOOK_URL",
           "notify.discord_journal_webhook_url", parsing.http_url,
           "Discord webhook of the journal channel.", secret=True),
    Option("notify_urls", "AEGIS_NOTIFY_URLS", "notify.urls", parsing.items(parsing.notify_url),
           "Apprise URLs of the alerts channel, comma-separated.", secret=True,
           autoheal="APPRISE_URL"),
    Option("journal_notify_urls", "AEGIS_JOURNAL_NOTIFY_URLS", "notify.journal_urls",
           parsing.items(parsing.notify_url),
           "Apprise URLs of the journal channel, comma-separated.", secret=True),
    Option("outbox_max_age_s", "AEGIS_OUTBOX_MAX_AGE", "notify.max_age", parsing.duration(1.0),
           "A message undelivered this long is given up, with a critical event."),
    Option("event_retention_s", "AEGIS_EVENT_RETENTION", "retention.events", parsing.days,
           "Low-importance events older than this are deleted (a bare number is days)."),
    Option("job_runs_retention_s", "AEGIS_JOB_RUNS_RETENTION", "retention.job_runs", parsing.days,
           "Finished job runs older than this are deleted."),
    Option("outbox_retention_s", "AEGIS_OUTBOX_RETENTION", "retention.outbox", parsing.days,
           "Finished outbox messages (delivered, failed, undeliverable) older than this "
           "are deleted; pending ones never are."),
    Option("container_retention_s", "AEGIS_CONTAINER_RETENTION", "retention.containers",
           parsing.days, "The strike state of a container removed from Docker this long ago is "
           "deleted (its events stay)."),
)

OPTIONS_BY_FIELD = {option.field: option for option in OPTIONS}

_JOB_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "enabled": ("enabled", parsing.boolean),
    "every": ("every_s", parsing.duration(1.0)),
    "at": ("at", lambda raw: parse_time_of_day(parsing.text(raw)).strftime("%H:%M:%S")),
    "cron": ("cron", lambda raw: parsing.cron_expression(parsing.text(raw))),
    "misfire_grace": ("misfire_grace_s", parsing.duration()),
    "timeout": ("timeout_s", parsing.duration(0.1)),
}

_TRIGGER_KEYS = ("every", "at", "cron")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings; raise ConfigError naming the variable or key on any bad value."""
    env = os.environ if env is None else env
    _check_utf8(env)
    config_file, document = parsing.config_file(env)
    values: dict[str, Any] = {
        "host": socket.gethostname().split(".")[0] or "localhost",
        "home": Path("~/.aegis").expanduser(),
        "journal_dir": Path("~/memory/journal").expanduser(),
    }
    known_toml = {o.toml for o in OPTIONS if o.toml}
    sections = {key.partition(".")[0] for key in known_toml} | {"jobs"}
    for key in document:  # catches empty unknown tables too
        if key not in sections:
            raise ConfigError(f"{config_file}: {key}", parsing.unknown_key(key, sections))
    toml_values = parsing.flatten(document, config_file)
    for key in toml_values:
        if key not in known_toml and not key.startswith("jobs."):
            raise ConfigError(f"{config_file}: {key}", parsing.unknown_key(key, known_toml))
    raw_values = {o.field: found for o in OPTIONS
                  if (found := _raw(o, env, toml_values, config_file)) is not None}
    compat = raw_values.get("autoheal_compat")
    if compat is None or _parsed(OPTIONS_BY_FIELD["autoheal_compat"], *compat):
        # docker-autoheal's variables, each where aegis's own is not set
        aliases = parsing.autoheal_variables(env)
        raw_values = {**{o.field: aliases[o.autoheal] for o in OPTIONS
                         if o.autoheal in aliases}, **raw_values}
    for option in OPTIONS:
        if option.field in raw_values:
            values[option.field] = _parsed(option, *raw_values[option.field])
    values["job_overrides"] = _job_overrides(env, document.get("jobs", {}), config_file)
    values["config_file"] = config_file
    return Settings(**values)


def _raw(option: Option, env: Mapping[str, str], toml_values: Mapping[str, Any],
         config_file: Path | None) -> tuple[str, Any] | None:
    """Where ``option`` is set (the variable, else the file's key) and its raw value."""
    name = option.env or ""
    if name and env.get(name, "").strip():
        return name, env[name]
    if option.toml is not None and option.toml in toml_values:
        return f"{config_file}: {option.toml}", toml_values[option.toml]
    return None


def _parsed(option: Option, name: str, raw: Any) -> Any:
    try:
        return option.parse(raw)
    except ValueError as exc:
        raise ConfigError(name, str(exc)) from None


def _check_utf8(env: Mapping[str, str]) -> None:
    """Refuse a variable of aegis's whose value is not UTF-8: Python hands such bytes on
    as surrogates, which no log line, database row or webhook could carry."""
    ours = {o.env for o in OPTIONS if o.env} | {o.autoheal for o in OPTIONS if o.autoheal} \
        | {"AEGIS_CONFIG"}
    for name, value in sorted(env.items()):
        if name in ours or name.startswith(JOB_ENV_PREFIX):
            problem = utf8_problem(value)
            if problem:
                raise ConfigError(name, f"is not valid UTF-8 ({problem})")


def utf8_problem(text: str) -> str | None:
    """Where ``text`` (from the environment or the command line, where Python keeps bytes
    that are not UTF-8 as surrogates) is not UTF-8, or None when it is."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        code, at = ord(text[exc.start]), len(text[:exc.start].encode("utf-8"))
    what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
    return f"{what} at position {at}"


def _job_overrides(
    env: Mapping[str, str], table: Mapping[str, Any], config_file: Path | None
) -> dict[str, JobOverride]:
    raw: dict[str, dict[str, tuple[str, Any]]] = {}
    for job_id, keys in table.items():
        where = f"{config_file}: jobs.{job_id}"
        if not _JOB_ID.match(job_id):
            raise ConfigError(where, "is not a job id (lower-case letters, digits, '_')")
        if not isinstance(keys, dict):
            raise ConfigError(where, "must be a table")
        for key, value in keys.items():
            raw.setdefault(job_id, {})[key] = (f"{where}.{key}", value)
    env_triggers: set[str] = set()
    for name, value in sorted(env.items()):
        if not name.startswith(JOB_ENV_PREFIX) or not value.strip():
            continue
        job_part, sep, key = name[len(JOB_ENV_PREFIX):].partition("__")
        if not sep or not _JOB_ID.match(job_part.lower()):
            raise ConfigError(name, f"use {JOB_ENV_PREFIX}<JOB_ID>__<KEY>, e.g. "
                              f"{JOB_ENV_PREFIX}MORNING_STATUS__AT")
        job_id, key = job_part.lower(), key.lower()
        keys = raw.setdefault(job_id, {})
        if key in _TRIGGER_KEYS and job_id not in env_triggers:
            env_triggers.add(job_id)  # the environment's trigger replaces the file's
            for trigger_key in _TRIGGER_KEYS:
                keys.pop(trigger_key, None)
        keys[key] = (name, value)
    overrides = {}
    for job_id, keys in raw.items():
        parsed: dict[str, Any] = {}
        for key, (name, value) in keys.items():
            if key not in _JOB_KEYS:
                raise ConfigError(name, f"unknown job key (known: {', '.join(_JOB_KEYS)})")
            attribute, parse = _JOB_KEYS[key]
            try:
                parsed[attribute] = parse(value)
            except ValueError as exc:
                raise ConfigError(name, str(exc)) from None
        triggers = [k for k in _TRIGGER_KEYS if k in keys]
        if len(triggers) > 1:
            raise ConfigError(keys[triggers[-1]][0], "set at most one of every, at, cron "
                              f"(found {' and '.join(triggers)})")
        overrides[job_id] = JobOverride(**parsed)
    return overrides
