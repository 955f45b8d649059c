"""Strict parsing of a container's ``aegis.*`` labels.

A value that does not parse is reported (the caller records it once) and treated as if
the label were not set, so a typo never turns supervision on or off by accident.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "aegis."
ENABLE = "aegis.enable"
PROTECT = "aegis.protect"
MAINTENANCE = "aegis.maintenance"
STRIKE_INTERVAL = "aegis.strike-interval"
MAX_RESTARTS = "aegis.max-restarts"
STOP_TIMEOUT = "aegis.stop-timeout"
KNOWN = (ENABLE, PROTECT, MAINTENANCE, STRIKE_INTERVAL, MAX_RESTARTS, STOP_TIMEOUT)

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}
_DURATION = re.compile(r"^(\d+)(s|m|h)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600}
MIN_STRIKE_INTERVAL_S = 1
MAX_RESTARTS_LIMIT = 100
MAX_DURATION_S = 7 * 86400
# How alike an unknown aegis.* key must be to a known one to be reported as a misspelling:
# catches aegis.enabel or aegis.stop_timeout, leaves other tools' keys such as aegis.name.
MISSPELT_CUTOFF = 0.85
MAX_KEPT_VALUE_CHARS = 500


@dataclass(frozen=True)
class ContainerLabels:
    """The parsed ``aegis.*`` labels; None means unset (or set to a value that was bad)."""

    enable: bool | None = None
    protect: bool | None = None
    maintenance: bool | None = None
    strike_interval_s: float | None = None
    max_restarts: int | None = None
    stop_timeout_s: float | None = None
    problems: tuple[str, ...] = ()


def parse_bool(text: str) -> bool:
    """true/false/yes/no/1/0 in any case; anything else raises ValueError."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("is not a boolean (true/false/yes/no/1/0)")


def parse_duration(text: str) -> float:
    """``30s``, ``5m`` or ``1h`` as seconds; anything else raises ValueError."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ValueError("is not a duration (30s, 5m, 1h)")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds > MAX_DURATION_S:
        raise ValueError("is longer than 7 days")
    return float(seconds)


def _parse_count(text: str) -> int:
    value = text.strip()
    if not value.isdigit() or int(value) > MAX_RESTARTS_LIMIT:
        raise ValueError(f"is not a whole number from 0 to {MAX_RESTARTS_LIMIT}")
    return int(value)


def _parse_interval(text: str) -> float:
    seconds = parse_duration(text)
    if seconds < MIN_STRIKE_INTERVAL_S:
        raise ValueError("must be at least 1s")
    return seconds


_PARSERS = {
    ENABLE: ("enable", parse_bool),
    PROTECT: ("protect", parse_bool),
    MAINTENANCE: ("maintenance", parse_bool),
    STRIKE_INTERVAL: ("strike_interval_s", _parse_interval),
    MAX_RESTARTS: ("max_restarts", _parse_count),
    STOP_TIMEOUT: ("stop_timeout_s", parse_duration),
}


def parse_labels(labels: Mapping[str, str] | None) -> ContainerLabels:
    """The ``aegis.*`` labels of a container.

    An unknown ``aegis.*`` key is left alone (other tools use the prefix too), unless it
    is a near miss of a known one: that is reported, since it does nothing.
    """
    values: dict[str, object] = {}
    problems = [f"{key} is unknown (did you mean {known}?)"
                for key in sorted(labels or {}) if (known := misspelt(key))]
    for key, (attribute, parse) in _PARSERS.items():
        raw = (labels or {}).get(key)
        if raw is None:
            continue
        try:
            values[attribute] = parse(raw)
        except ValueError as exc:
            problems.append(f"{key}={_shown(raw)} {exc}")
    return ContainerLabels(problems=tuple(problems), **values)  # type: ignore[arg-type]


def misspelt(key: str) -> str | None:
    """The known label an unknown ``aegis.*`` key was most likely meant to be, if any."""
    if not key.startswith(PREFIX) or key in KNOWN:
        return None
    close = difflib.get_close_matches(key.lower(), KNOWN, n=1, cutoff=MISSPELT_CUTOFF)
    return close[0] if close else None


def own_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """The ``aegis.*`` labels of a container, as set (values cut to a sane length): what
    the ``containers`` table keeps and the status page shows. Other labels stay out: they
    may carry another tool's secrets."""
    return {key: value if len(value) <= MAX_KEPT_VALUE_CHARS
            else value[:MAX_KEPT_VALUE_CHARS - 1] + "…"
            for key, value in sorted((labels or {}).items()) if key.startswith(PREFIX)}


def has_aegis_label(labels: Mapping[str, str] | None) -> bool:
    return any(key in KNOWN for key in labels or {})


def _shown(raw: str) -> str:
    """A label value quoted and cut short, safe in one log line."""
    text = raw if len(raw) <= 40 else raw[:39] + "…"
    return repr(text)
