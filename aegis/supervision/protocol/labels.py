"""A container's labels and what they mean: strict parsing of the ``aegis.*`` labels (and,
with AEGIS_AUTOHEAL_COMPAT=on, of docker-autoheal's), and from them and the settings which
containers aegis acts on and how (supervised, protected, orchestrated or ignored), why one
may not be restarted, and the strike policy that applies to it. Pure functions.

A value that does not parse is reported (the caller records it once) and treated as if
the label were not set, so a typo never turns supervision on or off by accident.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass

from aegis.core.config import DockerScope, Settings
from aegis.supervision.docker import DEFAULT_STOP_TIMEOUT_S, Sighting
from aegis.supervision.protocol import windows
from aegis.supervision.protocol.strikes import HealMode, Policy, SupervisionMode
from aegis.supervision.protocol.windows import Window

PREFIX = "aegis."
ENABLE = "aegis.enable"
PROTECT = "aegis.protect"
MAINTENANCE = "aegis.maintenance"
STRIKE_INTERVAL = "aegis.strike-interval"
MAX_RESTARTS = "aegis.max-restarts"
STOP_TIMEOUT = "aegis.stop-timeout"
HEAL = "aegis.heal"
RECREATE_AFTER = "aegis.heal.recreate-after"
KNOWN = (ENABLE, PROTECT, MAINTENANCE, STRIKE_INTERVAL, MAX_RESTARTS, STOP_TIMEOUT, HEAL,
         RECREATE_AFTER, *windows.LABELS)

# docker-autoheal's: its opt-in label (renamed by AUTOHEAL_CONTAINER_LABEL) and stop timeout
AUTOHEAL = "autoheal"
AUTOHEAL_STOP_TIMEOUT = "autoheal.stop.timeout"

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
    heal: HealMode | None = None
    recreate_after: int | None = None
    # aegis.maintenance-window (or its .schedule, .duration, .timezone): zone None is
    # AEGIS_TIMEZONE's
    maintenance_window: Window | None = None
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


def _parse_heal(text: str) -> HealMode:
    try:
        return HealMode(text.strip().lower())
    except ValueError:
        raise ValueError("is not restart, recreate or stack") from None


def _parse_recreate_after(text: str) -> int:
    count = _parse_count(text)
    if count < 1:
        raise ValueError(f"is not a whole number from 1 to {MAX_RESTARTS_LIMIT}")
    return count


_PARSERS = {
    ENABLE: ("enable", parse_bool),
    PROTECT: ("protect", parse_bool),
    MAINTENANCE: ("maintenance", parse_bool),
    STRIKE_INTERVAL: ("strike_interval_s", _parse_interval),
    MAX_RESTARTS: ("max_restarts", _parse_count),
    STOP_TIMEOUT: ("stop_timeout_s", parse_duration),
    HEAL: ("heal", _parse_heal),
    RECREATE_AFTER: ("recreate_after", _parse_recreate_after),
}


def _parse_seconds(text: str) -> float:
    """docker-autoheal's stop timeout: whole seconds (``20``), or an aegis duration."""
    value = text.strip()
    return float(_parse_count(value)) if value.isdigit() else parse_duration(value)


def autoheal_label(settings: Settings) -> str | None:
    """The docker-autoheal label aegis reads (None with AEGIS_AUTOHEAL_COMPAT=off). With
    AUTOHEAL_CONTAINER_LABEL=all, ``autoheal`` still opts a container out (false)."""
    if not settings.autoheal_compat:
        return None
    return AUTOHEAL if settings.autoheal_label == "all" else settings.autoheal_label


def parse_labels(labels: Mapping[str, str] | None,
                 autoheal: str | None = None) -> ContainerLabels:
    """The ``aegis.*`` labels of a container, and with ``autoheal`` (the label named by
    ``autoheal_label``) docker-autoheal's: ``<autoheal>=true`` reads as
    ``aegis.enable=true`` and ``autoheal.stop.timeout`` as ``aegis.stop-timeout``, each
    where the aegis label is not set.

    An unknown ``aegis.*`` key is left alone (other tools use the prefix too), unless it
    is a near miss of a known one: that is reported, since it does nothing.
    """
    labels = labels or {}
    values: dict[str, object] = {}
    problems = [f"{key} is unknown (did you mean {known}?)"
                for key in sorted(labels) if (known := misspelt(key))]
    parsers = dict(_PARSERS)
    if autoheal is not None:
        parsers = {autoheal: ("enable", parse_bool),
                   AUTOHEAL_STOP_TIMEOUT: ("stop_timeout_s", _parse_seconds), **parsers}
    for key, (attribute, parse) in parsers.items():
        raw = labels.get(key)
        if raw is None:
            continue
        try:
            values[attribute] = parse(raw)  # an aegis label comes later: it wins
        except ValueError as exc:
            problems.append(f"{key}={_shown(raw)} {exc}")
    values["maintenance_window"], window_problem = windows.label_window(labels)
    if window_problem is not None:
        problems.append(window_problem)
    return ContainerLabels(problems=tuple(problems), **values)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=1024)
def misspelt(key: str) -> str | None:
    """The known label an unknown ``aegis.*`` key was most likely meant to be, if any;
    remembered, since every decision reads a container's labels again."""
    if not key.startswith(PREFIX) or key in KNOWN:
        return None
    close = difflib.get_close_matches(key.lower(), KNOWN, n=1, cutoff=MISSPELT_CUTOFF)
    return close[0] if close else None


def own_labels(labels: Mapping[str, str] | None,
               autoheal: str | None = None) -> dict[str, str]:
    """The ``aegis.*`` labels of a container, and with ``autoheal`` the docker-autoheal
    labels aegis reads, as set (values cut to a sane length): what the ``containers``
    table keeps and the status page shows. Other labels stay out: they may carry another
    tool's secrets."""
    read = {autoheal, AUTOHEAL_STOP_TIMEOUT} if autoheal is not None else set()
    return {key: value if len(value) <= MAX_KEPT_VALUE_CHARS
            else value[:MAX_KEPT_VALUE_CHARS - 1] + "…"
            for key, value in sorted((labels or {}).items())
            if key.startswith(PREFIX) or key in read}


def has_aegis_label(labels: Mapping[str, str] | None, autoheal: str | None = None) -> bool:
    return any(key in KNOWN or (autoheal is not None and key in (autoheal, AUTOHEAL_STOP_TIMEOUT))
               for key in labels or {})


def _shown(raw: str) -> str:
    """A label value quoted and cut short, safe in one log line."""
    text = raw if len(raw) <= 40 else raw[:39] + "…"
    return repr(text)


# --- what aegis does with a container ---


def is_own(seen: Sighting, own_ids: Set[str]) -> bool:
    """Whether ``seen`` is the container this process runs in."""
    return any(seen.id.startswith(own) or own.startswith(seen.id) for own in own_ids)


def is_protected(settings: Settings, seen: Sighting, parsed: ContainerLabels,
                 own_ids: Set[str]) -> bool:
    """Never restarted: labelled so, aegis itself, its database, or named in
    AEGIS_PROTECTED_CONTAINERS (by name or compose service)."""
    if parsed.protect or is_own(seen, own_ids):
        return True
    protected_names = set(settings.protected_containers)
    if settings.postgres_host:
        protected_names.add(settings.postgres_host)
    return seen.name in protected_names or (seen.compose_service or "\0") in protected_names


def supervision_mode(settings: Settings, seen: Sighting, parsed: ContainerLabels,
                     has_healthcheck: bool, own_ids: Set[str]) -> SupervisionMode:
    if parsed.enable is False:
        return SupervisionMode.IGNORED
    if settings.docker_scope == DockerScope.LABELED and parsed.enable is not True:
        return SupervisionMode.IGNORED
    if not has_healthcheck and parsed.enable is not True:
        return SupervisionMode.IGNORED
    if seen.swarm_service:  # Swarm replaces unhealthy tasks itself
        return SupervisionMode.ORCHESTRATED
    if is_protected(settings, seen, parsed, own_ids):
        return SupervisionMode.PROTECTED
    return SupervisionMode.SUPERVISED


def restart_refusal(settings: Settings, seen: Sighting, parsed: ContainerLabels,
                    own_ids: Set[str]) -> str | None:
    """Why aegis may not restart ``seen`` (a container it restarts only because it shares
    a restarted container's network), as far as labels and settings tell; None when they
    allow it (maintenance set with ``aegis maintenance`` is the caller's to check)."""
    if parsed.enable is False:
        return "opted out (aegis.enable=false)"
    if settings.docker_scope == DockerScope.LABELED and parsed.enable is not True:
        return "outside the scope (AEGIS_DOCKER_SCOPE=labeled, no aegis.enable=true)"
    if seen.swarm_service:
        return f"a task of the Swarm service {seen.swarm_service}"
    if is_protected(settings, seen, parsed, own_ids):
        return "protected"
    if parsed.maintenance:
        return "in maintenance"
    return None


def strike_policy(settings: Settings, parsed: ContainerLabels, mode: SupervisionMode,
                  maintenance: bool, stop_timeout_s: float) -> Policy:
    """The protocol's thresholds for one container: labels over settings."""
    interval_s = parsed.strike_interval_s or settings.strike_interval_s
    return Policy(
        remediation=settings.remediation, strike_interval_s=interval_s,
        max_restarts_per_hour=parsed.max_restarts if parsed.max_restarts is not None
        else settings.max_restarts_per_hour,
        backoff_s=settings.restart_backoff_s, backoff_max_s=settings.restart_backoff_max_s,
        stable_period_s=settings.stable_period_s or 2 * interval_s,
        stop_timeout_s=stop_timeout_s, protected=mode == SupervisionMode.PROTECTED,
        maintenance=maintenance, ignored=mode == SupervisionMode.IGNORED,
        orchestrated=mode == SupervisionMode.ORCHESTRATED,
        heal=parsed.heal or HealMode.RESTART, recreate_after=parsed.recreate_after or 1)


def effective_stop_timeout_s(seen: Sighting, settings: Settings) -> float:
    """How long a stop waits before it kills: the ``aegis.stop-timeout`` label (or
    docker-autoheal's ``autoheal.stop.timeout``), else the container's own StopTimeout (an
    inspect's), else AEGIS_DEFAULT_STOP_TIMEOUT (Docker's own default, 10 s)."""
    return (parse_labels(seen.labels, autoheal_label(settings)).stop_timeout_s
            or seen.stop_timeout_s or settings.default_stop_timeout_s or DEFAULT_STOP_TIMEOUT_S)
