"""Settings: environment variables first, then the optional TOML file named by AEGIS_CONFIG.

Every option is declared once in ``OPTIONS``; the loader, the masking ``repr`` and the
configuration reference in docs/ are all driven by that table. The per-job settings
(``[jobs.ID]`` tables, ``AEGIS_JOB__ID__KEY`` variables) are scheduling's to parse: they are
handed on as found (``Settings.job_tables``, ``Settings.job_variables``) and parsed by
aegis/scheduling/job_settings.py; so are the ``[[maintenance]]`` tables
(``Settings.maintenance_tables``, parsed by aegis/supervision/protocol/windows.py).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aegis.core import autoheal, parsing, toml_file
from aegis.core.clock import zone
from aegis.core.errors import ConfigError

# The per-job variables: AEGIS_JOB__<JOB_ID>__<KEY>.
JOB_ENV_PREFIX = "AEGIS_JOB__"


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


class DatabasePooler(StrEnum):
    NONE = "none"  # the database URL reaches PostgreSQL itself
    TRANSACTION = "transaction"  # through a pooler in transaction mode (PgBouncer)


class DigestScope(StrEnum):
    HOST = "host"  # every daemon writes the digest of its own host
    FLEET = "fleet"  # one daemon writes one digest of every host sharing the database


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
class Settings:
    database_url: str | None = None
    postgres_host: str | None = None
    postgres_port: int = 5432
    postgres_user: str = "postgres"
    postgres_password: str | None = None
    postgres_db: str = "aegis"
    database_pooler: DatabasePooler = DatabasePooler.NONE
    listen_database_url: str | None = None
    listen_poll_s: float = 2.0
    home: Path = Path("~/.aegis")
    journal_dir: Path = Path("~/memory/journal")
    digest_scope: DigestScope = DigestScope.HOST
    host: str = "localhost"
    timezone: str = "UTC"
    log_format: LogFormat = LogFormat.AUTO
    log_level: LogLevel = LogLevel.INFO
    job_modules: tuple[str, ...] = ()
    workers: int = 4
    heartbeat_interval_s: float = 10.0
    shutdown_grace_s: float = 20.0
    heartbeat_url: str | None = None
    peer_timeout_s: float = 180.0
    http_addr: str | None = "127.0.0.1:9465"
    http_token: str | None = None
    metrics_public: bool = False
    docker_scope: DockerScope = DockerScope.ALL
    remediation: RemediationMode = RemediationMode.ON
    strike_interval_s: float = 60.0
    max_restarts_per_hour: int = 3
    restart_backoff_s: float = 10.0
    restart_backoff_max_s: float = 300.0
    max_parallel_restarts: int = 128
    stable_period_s: float | None = None
    protected_containers: tuple[str, ...] = ()
    start_period_s: float = 0.0
    default_stop_timeout_s: float = 10.0
    autoheal_compat: bool = True
    autoheal_label: str = "autoheal"
    label_jobs: bool = True
    label_jobs_run: bool = False
    label_jobs_sweep_s: float = 60.0
    alert_style: AlertStyle = AlertStyle.THREAD
    alert_from: AlertFrom = AlertFrom.ESCALATION
    storm_threshold: int = 5
    storm_window_s: float = 60.0
    discord_webhook_url: str | None = None
    discord_journal_webhook_url: str | None = None
    notify_urls: tuple[str, ...] = ()
    journal_notify_urls: tuple[str, ...] = ()
    # 0: no escalation route (AEGIS_ESCALATE_AFTER unset); repeat 0: sent once.
    escalate_after_s: float = 0.0
    escalation_urls: tuple[str, ...] = ()
    escalation_repeat_s: float = 0.0
    # 0: no message for a database outage.
    db_outage_alert_after_s: float = 120.0
    outbox_max_age_s: float = 86400.0
    event_retention_s: float = 30 * 86400.0
    job_runs_retention_s: float = 90 * 86400.0
    outbox_retention_s: float = 14 * 86400.0
    container_retention_s: float = 30 * 86400.0
    config_file: Path | None = None
    # The per-job settings as found, unparsed: the file's [jobs.ID] tables and the
    # AEGIS_JOB__ID__KEY variables set (aegis/scheduling/job_settings.py parses them).
    job_tables: Mapping[str, Any] = field(default_factory=dict)
    job_variables: Mapping[str, str] = field(default_factory=dict)
    # The file's [[maintenance]] tables as found, unparsed (parsed by
    # aegis/supervision/protocol/windows.py).
    maintenance_tables: tuple[Any, ...] = ()

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
            f"postgresql://{auth}@{host_list(self.postgres_host, self.postgres_port)}/"
            f"{quote(self.postgres_db, safe='')}"
        )

    @property
    def zone(self) -> ZoneInfo:
        """The zone of AEGIS_TIMEZONE: the daily jobs, calendar triggers and journal days."""
        return zone(self.timezone)

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


def host_list(hosts: str, port: int) -> str:
    """POSTGRES_HOST as a URL's hosts: each of the comma list with its own port, else
    POSTGRES_PORT (``a,b:5433`` -> ``a:5432,b:5433``); an IPv6 address in brackets."""
    return ",".join(_with_port(host.strip(), port) for host in hosts.split(","))


def _with_port(host: str, port: int) -> str:
    if host.startswith("["):  # [v6] or [v6]:port
        return host if "]:" in host else f"{host}:{port}"
    if host.count(":") > 1:  # a bare IPv6 address
        return f"[{host}]:{port}"
    return host if ":" in host else f"{host}:{port}"


OPTIONS: tuple[Option, ...] = (
    Option("database_url", "AEGIS_DATABASE_URL", "database.url", parsing.database_url,
           "PostgreSQL DSN. Unset (and POSTGRES_HOST unset): the embedded server.",
           secret=True),
    Option("postgres_host", "POSTGRES_HOST", "database.host", parsing.host_list,
           "PostgreSQL host, when AEGIS_DATABASE_URL is not set; a comma list of hosts "
           "(each may name its port, host:port) for a primary and its standbys: aegis "
           "connects to whichever accepts writes."),
    Option("postgres_port", "POSTGRES_PORT", "database.port", parsing.int_range(1, 65535),
           "PostgreSQL port."),
    Option("postgres_user", "POSTGRES_USER", "database.user", parsing.nonempty, "PostgreSQL user."),
    Option("postgres_password", "POSTGRES_PASSWORD", "database.password", parsing.text,
           "PostgreSQL password.", secret=True),
    Option("postgres_db", "POSTGRES_DB", "database.name", parsing.nonempty, "PostgreSQL database."),
    Option("database_pooler", "AEGIS_DATABASE_POOLER", "database.pooler",
           parsing.member(DatabasePooler),
           "none: the URL reaches PostgreSQL; transaction: through a pooler in transaction "
           "mode (PgBouncer), where LISTEN cannot pass (see AEGIS_LISTEN_DATABASE_URL)."),
    Option("listen_database_url", "AEGIS_LISTEN_DATABASE_URL", "database.listen_url",
           parsing.database_url,
           "A direct PostgreSQL DSN to LISTEN on for wake-ups when the database URL goes "
           "through a pooler in transaction mode; unset there, aegis polls instead.",
           secret=True),
    Option("listen_poll_s", "AEGIS_LISTEN_POLL_INTERVAL", "database.listen_poll_interval",
           parsing.duration(0.2),
           "How often aegis looks for new tasks and messages when it cannot LISTEN."),
    Option("home", "AEGIS_HOME", "home", parsing.folder,
           "State folder: embedded database, pid file, heartbeat file, event spool."),
    Option("journal_dir", "AEGIS_JOURNAL_DIR", "journal_dir", parsing.folder,
           "Folder the evening digest is written to, as YYYY-MM-DD.md."),
    Option("digest_scope", "AEGIS_DIGEST_SCOPE", "digest_scope", parsing.member(DigestScope),
           "host: each host's daemon writes the digest of its own host; fleet: one digest "
           "of every host sharing the database, written once."),
    Option("host", "AEGIS_HOST", "host", parsing.host_name,
           "This host's name in events, runs and heartbeats (default: the hostname)."),
    Option("timezone", "AEGIS_TIMEZONE", "timezone", parsing.timezone,
           "IANA time zone of daily, weekly and cron triggers (unless a job sets its own) "
           "and of the journal's days, e.g. Europe/Berlin."),
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
    Option("peer_timeout_s", "AEGIS_PEER_TIMEOUT", "daemon.peer_timeout", parsing.duration(1.0),
           "A host whose daemon has not heartbeated for this long, with no clean stop, is "
           "silent: the other hosts record peer_silent and alert once. Keep it well above "
           "the heartbeat interval."),
    Option("http_addr", "AEGIS_HTTP_ADDR", "http.addr", parsing.http_addr,
           "HOST:PORT of the status page, /healthz and /metrics, or 'off'."),
    Option("http_token", "AEGIS_HTTP_TOKEN", "http.token", parsing.token,
           "Token the status page and /metrics require, as a bearer header or entered once "
           "in the page's form; required when AEGIS_HTTP_ADDR listens beyond loopback. "
           "Make one with: openssl rand -hex 32.", secret=True),
    Option("metrics_public", "AEGIS_METRICS_PUBLIC", "http.metrics_public", parsing.boolean,
           "true: /metrics answers without the token (the pages still need it)."),
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
    Option("max_parallel_restarts", "AEGIS_MAX_PARALLEL_RESTARTS",
           "docker.max_parallel_restarts", parsing.int_range(1, 256),
           "Container restarts made at the same time; more wait for one to end."),
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
    Option("label_jobs", "AEGIS_LABEL_JOBS", "docker.label_jobs", parsing.boolean,
           "Run the jobs containers declare in their labels (aegis.job.*, Ofelia's "
           "ofelia.job-exec.*; docs/label-jobs.md)."),
    Option("label_jobs_run", "AEGIS_LABEL_JOBS_RUN", "docker.label_jobs_run", parsing.boolean,
           "Also run Ofelia's ofelia.job-run.* jobs (a new container from any image, with any "
           "volume: whoever can set a label can mount the host)."),
    Option("label_jobs_sweep_s", "AEGIS_LABEL_JOBS_SWEEP", "docker.label_jobs_sweep",
           parsing.duration(1.0), "How often every container's job labels are read again, "
           "besides the event stream."),
    Option("alert_style", "AEGIS_ALERT_STYLE", "notify.alert_style", parsing.member(AlertStyle),
           "thread: one Discord message per incident, edited as it moves; posts: a post "
           "per escalation and recovery."),
    Option("alert_from", "AEGIS_ALERT_FROM", "notify.alert_from", parsing.member(AlertFrom),
           "escalation: an incident alerts when it escalates; restart: at its first restart."),
    Option("storm_threshold", "AEGIS_STORM_THRESHOLD", "notify.storm_threshold",
           parsing.count_or_off(2, 10_000),
           "This many containers of one host opening incidents within AEGIS_STORM_WINDOW "
           "are one storm: one living message for the host instead of one per container "
           "(0 or off: never)."),
    Option("storm_window_s", "AEGIS_STORM_WINDOW", "notify.storm_window", parsing.duration(1.0),
           "How close together the incidents of a storm open."),
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
    Option("escalate_after_s", "AEGIS_ESCALATE_AFTER", "notify.escalate_after",
           parsing.duration_or_off(1.0),
           "An escalated incident neither acknowledged nor resolved this long after its "
           "escalation is sent once to AEGIS_ESCALATION_URLS (e.g. 15m); unset: off."),
    Option("escalation_urls", "AEGIS_ESCALATION_URLS", "notify.escalation_urls",
           parsing.items(parsing.notify_url),
           "The escalation route, comma-separated: a Discord webhook URL (as "
           "DISCORD_WEBHOOK_URL) or an Apprise URL (a phone, an on-call channel).",
           secret=True),
    Option("escalation_repeat_s", "AEGIS_ESCALATION_REPEAT", "notify.escalation_repeat",
           parsing.duration_or_off(1.0),
           "Send it again this often while the incident stays open and unacknowledged; "
           "unset: once."),
    Option("db_outage_alert_after_s", "AEGIS_DB_OUTAGE_ALERT_AFTER",
           "notify.db_outage_alert_after", parsing.duration_or_off(1.0),
           "The database unreachable this long: one message 'aegis on HOST cannot reach its "
           "database since ...', sent straight to the alerts channel and resolved when it "
           "is back; off: none."),
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


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings; raise ConfigError naming the variable or key on any bad value. The
    per-job settings are read, not parsed: ``aegis.api.load_settings`` parses them too."""
    env = os.environ if env is None else env
    _check_utf8(env)
    config_file, document = toml_file.read(env)
    values: dict[str, Any] = {
        "host": socket.gethostname().split(".")[0] or "localhost",
        "home": Path("~/.aegis").expanduser(),
        "journal_dir": Path("~/memory/journal").expanduser(),
    }
    known_toml = {o.toml for o in OPTIONS if o.toml}
    sections = {key.partition(".")[0] for key in known_toml} | {"jobs",
                                                                toml_file.MAINTENANCE}
    for key in document:  # catches empty unknown tables too
        if key not in sections:
            raise ConfigError(f"{config_file}: {key}", toml_file.unknown_key(key, sections))
    toml_values = toml_file.flatten(document, config_file)
    for key in toml_values:
        if key not in known_toml and not key.startswith("jobs."):
            raise ConfigError(f"{config_file}: {key}", toml_file.unknown_key(key, known_toml))
    raw_values = {o.field: found for o in OPTIONS
                  if (found := _raw(o, env, toml_values, config_file)) is not None}
    compat = raw_values.get("autoheal_compat")
    if compat is None or _parsed(OPTIONS_BY_FIELD["autoheal_compat"], *compat):
        # docker-autoheal's variables, each where aegis's own is not set
        aliases = autoheal.variables(env)
        raw_values = {**{o.field: aliases[o.autoheal] for o in OPTIONS
                         if o.autoheal in aliases}, **raw_values}
    for option in OPTIONS:
        if option.field in raw_values:
            values[option.field] = _parsed(option, *raw_values[option.field])
    values["job_tables"] = document.get("jobs", {})
    values["job_variables"] = {name: value for name, value in env.items()
                               if name.startswith(JOB_ENV_PREFIX) and value.strip()}
    values["maintenance_tables"] = toml_file.maintenance_tables(document, config_file)
    values["config_file"] = config_file
    settings = Settings(**values)
    _check_http(settings)
    _check_escalation(settings)
    return settings


def _check_http(settings: Settings) -> None:
    """An endpoint reachable from other machines serves the status page and /metrics to
    whoever holds the token, so it must have one."""
    addr = settings.http_addr
    if addr is not None and settings.http_token is None and not parsing.is_loopback_addr(addr):
        raise ConfigError("AEGIS_HTTP_TOKEN", f"must be set when AEGIS_HTTP_ADDR ({addr}) "
                          "listens beyond loopback (make one with: openssl rand -hex 32)")


def _check_escalation(settings: Settings) -> None:
    """The escalation route needs both its delay and its destinations; a repeat needs the
    delay."""
    if settings.escalate_after_s and not settings.escalation_urls:
        raise ConfigError("AEGIS_ESCALATION_URLS", "must be set when AEGIS_ESCALATE_AFTER is "
                          "(where an unacknowledged escalation is sent)")
    if settings.escalation_urls and not settings.escalate_after_s:
        raise ConfigError("AEGIS_ESCALATE_AFTER", "must be set when AEGIS_ESCALATION_URLS is "
                          "(how long an escalation waits for an acknowledgement, e.g. 15m)")
    if settings.escalation_repeat_s and not settings.escalate_after_s:
        raise ConfigError("AEGIS_ESCALATE_AFTER", "must be set when AEGIS_ESCALATION_REPEAT "
                          "is (how long an escalation waits for an acknowledgement, e.g. 15m)")


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
