"""Parsers of setting values. Each takes the raw value (a string from the environment, or
a value from the TOML file) and returns the parsed one, or raises ValueError saying what is
wrong; the caller names the variable or key. Also the reading of the TOML file, and
docker-autoheal's variables read as aegis's own."""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from croniter import croniter

from aegis.core.durations import parse_duration_s
from aegis.core.errors import ConfigError

_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
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

_DISCORD_WEBHOOK = re.compile(
    r"^https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/\d+/[\w-]+/?$")
_SLACK_WEBHOOK = re.compile(r"^https://hooks\.slack\.com/services/[\w/]+$")
_APPRISE_API = re.compile(r"^(https?)://([^/?#]+)/notify/([\w.-]+)/?$")


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
    if _DISCORD_WEBHOOK.match(webhook):
        found["WEBHOOK_URL"] = ("WEBHOOK_URL", webhook)
    elif _SLACK_WEBHOOK.match(webhook):
        urls.append(("WEBHOOK_URL", webhook))  # Apprise posts to Slack's own URL
    apprise_api = _APPRISE_API.match(env.get("APPRISE_URL", "").strip())
    if apprise_api:  # an Apprise API server's notify endpoint, as an Apprise URL
        scheme = "apprises" if apprise_api.group(1) == "https" else "apprise"
        urls.append(("APPRISE_URL", f"{scheme}://{apprise_api.group(2)}/{apprise_api.group(3)}"))
    if urls:
        found["APPRISE_URL"] = (" and ".join(n for n, _ in urls), ",".join(u for _, u in urls))
    return found


def autoheal_unmapped(env: Mapping[str, str]) -> list[str]:
    """docker-autoheal's variables set in ``env`` that aegis does not read (for the log
    and ``aegis doctor``): each with what to do instead."""
    notes = {
        "AUTOHEAL_ONLY_MONITOR_RUNNING": "aegis only ever restarts running containers",
        "DOCKER_SOCK": "set DOCKER_HOST (unix:///var/run/docker.sock, tcp://host:2376)",
        "CURL_TIMEOUT": "aegis waits for the Docker engine on its own terms",
        "WEBHOOK_JSON_KEY": "aegis posts its own message format",
        "POST_RESTART_SCRIPT": "follow aegis's events instead (aegis events, episodic_memory)",
    }
    found = [f"{name}: {note}" for name, note in notes.items() if env.get(name, "").strip()]
    webhook = env.get("WEBHOOK_URL", "").strip()
    if webhook and not (_DISCORD_WEBHOOK.match(webhook) or _SLACK_WEBHOOK.match(webhook)):
        found.append("WEBHOOK_URL: not a Discord or Slack webhook; set DISCORD_WEBHOOK_URL "
                     "or AEGIS_NOTIFY_URLS (an Apprise URL)")
    apprise_url = env.get("APPRISE_URL", "").strip()
    if apprise_url and not _APPRISE_API.match(apprise_url):
        found.append("APPRISE_URL: not an Apprise API notify URL (http://host:8000/notify/KEY); "
                     "set AEGIS_NOTIFY_URLS")
    return found
