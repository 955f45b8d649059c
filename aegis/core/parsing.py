"""Parsers of one setting value. Each takes the raw value (a string from the environment,
or a value from the TOML file) and returns the parsed one, or raises ValueError saying what
is wrong; the caller names the variable or key. Every layer's settings are parsed with
them: aegis's own options (aegis/core/config.py) and the per-job ones
(aegis/scheduling/job_settings.py)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from croniter import croniter

from aegis.core.clock import zone
from aegis.core.durations import parse_duration_s

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


def host_list(raw: Any) -> str:
    """One host, or a comma list of them (POSTGRES_HOST), none of them empty."""
    value = nonempty(raw)
    if any(not host.strip() for host in value.split(",")):
        raise ValueError(f"{value!r} has an empty host in its comma list")
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


def count_or_off(low: int, high: int) -> Callable[[Any], int]:
    """A whole number from ``low`` to ``high``, or ``off`` (or 0): 0, switched off."""
    parse_count = int_range(low, high)

    def parse(raw: Any) -> int:
        if isinstance(raw, str) and raw.strip().lower() in {"off", "none", "0"}:
            return 0
        if raw == 0 and not isinstance(raw, bool):
            return 0
        return parse_count(raw)

    return parse
