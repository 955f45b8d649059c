"""The Docker engine: reachable, its API version, whether the endpoint lets aegis follow
events and restart containers, and the host linted (aegis/doctor/hostlint.py) from one
listing and an inspect of each container."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from aegis.core.config import RemediationMode, Settings
from aegis.core.redact import redact
from aegis.doctor import hostlint
from aegis.doctor.checks import FAIL, OK, WARN, Check, Status
from aegis.doctor.labeljobs import exec_refused, label_job_checks
from aegis.supervision.docker import (
    Sighting,
    docker_client,
    docker_endpoint,
    docker_errors,
    events_refused,
    forbidden,
    sighting_from_inspect,
)

DOCKER_TIMEOUT_S = 5
# A name no container can have (Docker's names start with a letter or a digit): restarting
# it changes nothing, and the answer tells an endpoint that allows restarts (404, no such
# container) from a proxy that forbids them (403).
RESTART_PROBE = "_aegis-doctor-probe"
PROXY_HINT = ("the Docker endpoint (a socket proxy?) forbids what aegis needs: allow "
              "CONTAINERS, EVENTS, PING, VERSION and ALLOW_RESTARTS (docs/deployment.md)")


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




def engine_checks(settings: Settings, env: Mapping[str, str] | None = None) -> list[Check]:
    """The docker check, then the host's findings: one listing of the containers, each
    inspected. Without an engine, the host's findings are of aegis's own environment only
    (the docker check says why)."""
    env = os.environ if env is None else env
    missing = WARN if settings.remediation == RemediationMode.OFF else FAIL
    endpoint = docker_endpoint()
    try:
        client = docker_client(DOCKER_TIMEOUT_S)
        try:
            version: dict[str, Any] = client.version()
            listing = client.api.containers(all=True)
            tls = " over TLS" if str(client.api.base_url).startswith("https:") else ""
            refused = refusals(client, restarts=settings.remediation == RemediationMode.ON)
            seen = _inspect_each(client, listing)
            no_exec = exec_refused(client, settings, listing)
        finally:
            client.close()
    except Exception as exc:  # the SDK raises DockerException, requests and OS errors alike
        message = redact(str(exc))
        unreachable = Check("docker", missing, f"unreachable at {endpoint}: {message[:200]}",
                            _unreachable_hint(exc, message))
        return [unreachable, hostlint.autoheal_variables(settings, env)]
    detail = (f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}) "
              f"at {endpoint}{tls}, {len(listing)} containers")
    return [_docker_check(detail, refused, missing),
            *hostlint.lint(settings, seen, env), *label_job_checks(settings, seen, no_exec)]


def _inspect_each(client: Any, listing: list[dict[str, Any]]) -> list[Sighting]:
    seen = []
    for entry in listing:
        with contextlib.suppress(*docker_errors()):  # removed meanwhile
            seen.append(sighting_from_inspect(client.api.inspect_container(entry["Id"])))
    return seen


def _docker_check(detail: str, refused: list[str], missing: Status) -> Check:
    if not refused:
        return Check("docker", OK, detail)
    hint = PROXY_HINT
    if "container restarts" in refused:
        hint += ", or set AEGIS_REMEDIATION=observe to record and escalate only"
    return Check("docker", missing, f"{detail}; forbidden (403): {', '.join(refused)}", hint)


def _unreachable_hint(exc: Exception, message: str) -> str:
    if forbidden(exc):
        return PROXY_HINT
    if "ermission denied" in message:
        return ("add aegis's user to the socket's group: stat -c %g /var/run/docker.sock, "
                "then group_add it in compose (DOCKER_GID) or `usermod -aG docker USER`")
    if "No such file" in message or "FileNotFoundError" in message:
        return "start Docker, or point DOCKER_HOST at its socket"
    if "SSL" in message or "certificate" in message or "HTTPS server" in message:
        return ("for an engine with TLS set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to a "
                "folder holding its ca.pem and a client's cert.pem and key.pem")
    return "check that dockerd runs and DOCKER_HOST points at it"
