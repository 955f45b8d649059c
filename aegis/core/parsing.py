"""Parsers of setting values. Each takes the raw value (a string from the environment, or
a value from the TOML file) and returns the parsed one, or raises ValueError saying what is
wrong; the caller names the variable or key. Then where raw values come from besides
aegis's own variables: the TOML file, docker-autoheal's variables read as aegis's own, and
the per-job settings (``[jobs.ID]`` tables of the file and ``AEGIS_JOB__ID__KEY``
variables); each mistake there is named (variable or key) as a ConfigError."""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from croniter import croniter

from aegis.core.clock import zone
from aegis.core.durations import parse_duration_s, parse_time_of_day
from aegis.core.errors import ConfigError

_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
# RFC 6750's token characters: what `openssl rand -hex` and `base64` print, and what an
# Authorization header carries without quoting.
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")
MIN_TOKEN_CHARS = 16
E = TypeVar("E", bound=StrEnum)


def text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {raw!r}")
    return raw.strip()


def nonempty(raw: Any) -> str:
    value = text(raw)
    if not value:
        raise ValueError("must not be empty")
    return value


def int_range(low: int, high: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError(f"expected a whole number, got {raw!r}")
        if isinstance(raw, int):
            value = raw
        else:
            digits = text(raw)
            if not re.fullmatch(r"-?\d+", digits):
                raise ValueError(f"{digits!r} is not a whole number")
            value = int(digits)
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range ({low}-{high})")
        return value

    return parse


def duration(minimum_s: float = 0.0) -> Callable[[Any], float]:
    def parse(raw: Any) -> float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            seconds = float(raw)
        else:
            seconds = parse_duration_s(text(raw))
        if seconds < minimum_s:
            raise ValueError(f"must be at least {minimum_s:g}s")
        return seconds

    return parse


def days(raw: Any) -> float:
    """A retention: a duration (``30d``) or a bare number of days."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = f"{raw}d"
    elif isinstance(raw, str) and re.fullmatch(r"\s*\d+\s*", raw):
        raw = f"{raw.strip()}d"
    return duration(minimum_s=3600.0)(raw)


def member(values: type[E]) -> Callable[[Any], E]:
    """One of the values of a closed set, in any case."""
    def parse(raw: Any) -> E:
        value = text(raw).lower()
        try:
            return values(value)
        except ValueError:
            raise ValueError(f"{value!r} is not one of {', '.join(values)}") from None

    return parse


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    value = text(raw).lower()
    if value in {"true", "yes", "1", "on"}:
        return True
    if value in {"false", "no", "0", "off"}:
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false)")


def items(item: Callable[[Any], str]) -> Callable[[Any], tuple[str, ...]]:
    def parse(raw: Any) -> tuple[str, ...]:
        found = raw if isinstance(raw, list) else text(raw).replace("\n", ",").split(",")
        return tuple(item(i) for i in found if not (isinstance(i, str) and not i.strip()))

    return parse


def http_url(raw: Any) -> str:
    value = text(raw)
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("is not an http(s) URL")
    return value


def notify_url(raw: Any) -> str:
    value = text(raw)
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$", value):
        raise ValueError("is not a notification URL (scheme://...)")
    return value


def database_url(raw: Any) -> str:
    value = text(raw)
    if not (re.match(r"^postgres(ql)?://", value) or "=" in value):
        raise ValueError("is not a PostgreSQL URL (postgresql://user:password@host:port/db)")
    return value


def path(raw: Any) -> Path:
    return Path(nonempty(raw)).expanduser()


def folder(raw: Any) -> Path:
    found = path(raw)
    if found.exists() and not found.is_dir():
        raise ValueError(f"{found} exists and is not a folder")
    return found


def host_name(raw: Any) -> str:
    value = text(raw)
    if not _HOST_NAME.match(value):
        raise ValueError(f"{value!r} is not a host name (letters, digits, '.', '_', '-')")
    return value


def module_path(raw: Any) -> str:
    value = text(raw)
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", value):
        raise ValueError(f"{value!r} is not an importable module path")
    return value


def http_addr(raw: Any) -> str | None:
    value = text(raw)
    if value.lower() in {"", "off", "none"}:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not HOST:PORT (or 'off')")
    int_range(0, 65535)(port)
    return value


def is_loopback_addr(addr: str) -> bool:
    """Whether HOST:PORT listens on the loopback interface only (127.0.0.0/8, ::1,
    localhost). Any other host, a name included (it may resolve to anything), and an
    empty host or 0.0.0.0 / :: (every interface) reach beyond this machine."""
    host = addr.rpartition(":")[0].strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token(raw: Any) -> str:
    """A bearer token: at least 16 characters of letters, digits and ``-._~+/``."""
    value = text(raw)
    if len(value) < MIN_TOKEN_CHARS:
        raise ValueError(f"is shorter than {MIN_TOKEN_CHARS} characters "
                         "(make one with: openssl rand -hex 32)")
    if not _TOKEN.match(value):
        raise ValueError("may hold only letters, digits and -._~+/ (make one with: "
                         "openssl rand -hex 32)")
    return value


def cron_expression(raw: Any) -> str:
    expression = text(raw)
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ValueError(f"{expression!r} is not a 5-field cron expression")
    return expression


def label_key(raw: Any) -> str:
    """A Docker label key (letters, digits, '.', '-', '_', '/'), or ``all``."""
    value = text(raw)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}", value):
        raise ValueError(f"{value!r} is not a label key")
    return value


def timezone(raw: Any) -> str:
    """An IANA time zone name, as ``zoneinfo`` knows it (``UTC`` in any case)."""
    return zone(nonempty(raw)).key


def duration_or_off(minimum_s: float = 0.0) -> Callable[[Any], float]:
    """A duration, or ``off`` (0: the check is switched off)."""
    parse_duration = duration(minimum_s)

    def parse(raw: Any) -> float:
        if isinstance(raw, str) and raw.strip().lower() in {"off", "none", "0"}:
            return 0.0
        return parse_duration(raw)

    return parse


# --- the TOML file ---


def config_file(env: Mapping[str, str]) -> tuple[Path | None, dict[str, Any]]:
    """The file AEGIS_CONFIG names, read as TOML (None and {} when it names none)."""
    name = env.get("AEGIS_CONFIG", "").strip()
    if not name:
        return None, {}
    path = Path(name).expanduser()
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError("AEGIS_CONFIG", f"cannot read {path}: {reason}") from None
    try:
        return path, tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("AEGIS_CONFIG", f"{path} is not valid TOML: {exc}") from None


def flatten(document: Mapping[str, Any], config_file: Path | None) -> dict[str, Any]:
    """``{"docker": {"scope": "all"}}`` -> ``{"docker.scope": "all"}``; ``jobs`` stays nested."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if key == "jobs":
            if not isinstance(value, dict):
                raise ConfigError(f"{config_file}: jobs", "must be a table of [jobs.ID] tables")
            flat.update({f"jobs.{k}": v for k, v in value.items()})
        elif isinstance(value, dict):
            for sub_key, sub_value in value.items():
                flat[f"{key}.{sub_key}"] = sub_value
        else:
            flat[key] = value
    return flat


def unknown_key(key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"unknown key (did you mean {close[0]}?)" if close else "unknown key"


# --- docker-autoheal's variables ---

DISCORD_WEBHOOK = re.compile(
    r"^https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/\d+/[\w-]+/?$")
SLACK_WEBHOOK = re.compile(r"^https://hooks\.slack\.com/services/[\w/]+$")
APPRISE_API = re.compile(r"^(https?)://([^/?#]+)/notify/([\w.-]+)/?$")


def autoheal_variables(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """docker-autoheal's variables that have a clear meaning in aegis, as ``{its variable:
    (the variable to name in errors, the raw value of aegis's setting)}``. The caller
    uses each only where aegis's own setting is not set. See
    docs/migrating-from-autoheal.md for each mapping, and the variables that have none."""
    found: dict[str, tuple[str, str]] = {}
    for name in ("AUTOHEAL_INTERVAL", "AUTOHEAL_START_PERIOD", "AUTOHEAL_DEFAULT_STOP_TIMEOUT"):
        if env.get(name, "").strip():
            found[name] = (name, env[name])  # seconds, as aegis's durations take them too
    label = env.get("AUTOHEAL_CONTAINER_LABEL", "").strip()
    if label:  # the label (or all) says which containers autoheal watches: the scope
        found["AUTOHEAL_CONTAINER_LABEL"] = ("AUTOHEAL_CONTAINER_LABEL",
                                             "all" if label == "all" else "labeled")
    webhook = env.get("WEBHOOK_URL", "").strip()
    urls = []
    if DISCORD_WEBHOOK.match(webhook):
        found["WEBHOOK_URL"] = ("WEBHOOK_URL", webhook)
    elif SLACK_WEBHOOK.match(webhook):
        urls.append(("WEBHOOK_URL", webhook))  # Apprise posts to Slack's own URL
    apprise_api = APPRISE_API.match(env.get("APPRISE_URL", "").strip())
    if apprise_api:  # an Apprise API server's notify endpoint, as an Apprise URL
        scheme = "apprises" if apprise_api.group(1) == "https" else "apprise"
        urls.append(("APPRISE_URL", f"{scheme}://{apprise_api.group(2)}/{apprise_api.group(3)}"))
    if urls:
        found["APPRISE_URL"] = (" and ".join(n for n, _ in urls), ",".join(u for _, u in urls))
    return found


# --- per-job settings ---

JOB_ENV_PREFIX = "AEGIS_JOB__"
_JOB_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class MisfirePolicy(StrEnum):
    RUN_ONCE = "run_once"  # the latest missed slot runs once, within the grace
    SKIP = "skip"  # nothing missed while no daemon ran is run later
    RUN_ALL = "run_all"  # every missed slot within the grace runs, up to a bound


@dataclass(frozen=True)
class JobOverride:
    """Per-job settings from ``[jobs.ID]`` or ``AEGIS_JOB__ID__KEY``; None keeps the default."""

    enabled: bool | None = None
    every_s: float | None = None
    at: str | None = None
    cron: str | None = None
    misfire_grace_s: float | None = None
    timeout_s: float | None = None
    timezone: str | None = None
    misfire: MisfirePolicy | None = None
    max_runtime_s: float | None = None  # 0: no max_runtime
    expect_every_s: float | None = None  # 0: not watched


_JOB_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "enabled": ("enabled", boolean),
    "every": ("every_s", duration(1.0)),
    "at": ("at", lambda raw: parse_time_of_day(text(raw)).strftime("%H:%M:%S")),
    "cron": ("cron", lambda raw: cron_expression(text(raw))),
    "misfire_grace": ("misfire_grace_s", duration()),
    "timeout": ("timeout_s", duration(0.1)),
    "timezone": ("timezone", timezone),
    "misfire": ("misfire", member(MisfirePolicy)),
    "max_runtime": ("max_runtime_s", duration_or_off(0.1)),
    "expect_every": ("expect_every_s", duration_or_off(1.0)),
}

_TRIGGER_KEYS = ("every", "at", "cron")


def job_overrides(
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
