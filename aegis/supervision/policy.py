"""Which containers aegis acts on, and how: supervised, protected or ignored; why one may
not be restarted; the strike policy that applies to it. Pure functions of the settings,
a container's labels and what Docker reports."""

from __future__ import annotations

from collections.abc import Set

from aegis.core.config import DockerScope, Settings
from aegis.supervision.docker import Seen
from aegis.supervision.labels import ContainerLabels
from aegis.supervision.strikes import Policy, SupervisionMode


def is_own(seen: Seen, own_ids: Set[str]) -> bool:
    """Whether ``seen`` is the container this process runs in."""
    return any(seen.id.startswith(own) or own.startswith(seen.id) for own in own_ids)


def is_protected(settings: Settings, seen: Seen, parsed: ContainerLabels,
                 own_ids: Set[str]) -> bool:
    """Never restarted: labelled so, aegis itself, its database, or named in
    AEGIS_PROTECTED_CONTAINERS (by name or compose service)."""
    if parsed.protect or is_own(seen, own_ids):
        return True
    protected_names = set(settings.protected_containers)
    if settings.postgres_host:
        protected_names.add(settings.postgres_host)
    return seen.name in protected_names or (seen.compose_service or "\0") in protected_names


def supervision_mode(settings: Settings, seen: Seen, parsed: ContainerLabels,
                     has_healthcheck: bool, own_ids: Set[str]) -> SupervisionMode:
    if parsed.enable is False:
        return SupervisionMode.IGNORED
    if settings.docker_scope == DockerScope.LABELED and parsed.enable is not True:
        return SupervisionMode.IGNORED
    if not has_healthcheck and parsed.enable is not True:
        return SupervisionMode.IGNORED
    if is_protected(settings, seen, parsed, own_ids):
        return SupervisionMode.PROTECTED
    return SupervisionMode.SUPERVISED


def restart_refusal(settings: Settings, seen: Seen, parsed: ContainerLabels,
                    own_ids: Set[str]) -> str | None:
    """Why aegis may not restart ``seen`` (a container it restarts only because it shares
    a restarted container's network), as far as labels and settings tell; None when they
    allow it (maintenance set with ``aegis maintenance`` is the caller's to check)."""
    if parsed.enable is False:
        return "opted out (aegis.enable=false)"
    if settings.docker_scope == DockerScope.LABELED and parsed.enable is not True:
        return "outside the scope (AEGIS_DOCKER_SCOPE=labeled, no aegis.enable=true)"
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
        maintenance=maintenance, ignored=mode == SupervisionMode.IGNORED)
