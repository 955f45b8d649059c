"""The Docker adapter: what the engine reports, in aegis's terms. The client (honouring
DOCKER_HOST), the errors that mean the engine is away or a proxy refuses, one container as
a listing entry, an inspect or an event describes it, its effective stop timeout, the last
lines of its log, and the engine's availability, recorded once per outage.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from aegis.core.clock import utcnow
from aegis.core.errors import StoreError
from aegis.core.redact import redact
from aegis.storage.events import EventType, Importance
from aegis.storage.runtime import Runtime
from aegis.supervision.outage import Outage, outage_message, resolved_message

DOCKER_TIMEOUT_S = 15
DEFAULT_STOP_TIMEOUT_S = 10.0  # Docker's own, for a container that sets none
PROBE_OUTPUT_CHARS = 500
LOG_TAIL_LINES = 20  # `docker logs --tail 20`: what a person paged looks at first
LOG_LINE_CHARS = 300  # a line longer than this is cut, its start kept
# Colours and cursor moves (CSI and OSC sequences), then any other control character but
# the tab: a log line is shown as text.
_TERMINAL_CODES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?)?")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_HEALTH_IN_STATUS = re.compile(r"\((healthy|unhealthy|health: starting)\)")
_EXIT_IN_STATUS = re.compile(r"^Exited \((-?\d+)\)")
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
# The files the engine mounts into every container from its own directory of it.
_ENGINE_MOUNTED = frozenset({"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"})
# Labels Docker's own tools put on containers.
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_DEPENDS_ON = "com.docker.compose.depends_on"  # "db:service_healthy:false,..."
SWARM_SERVICE_ID = "com.docker.swarm.service.id"
SWARM_SERVICE_NAME = "com.docker.swarm.service.name"


def docker_errors() -> tuple[type[BaseException], ...]:
    """What a Docker call raises when the engine is away or refuses."""
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    return (DockerException, RequestException, OSError)


def docker_endpoint() -> str:
    """Where the Docker client goes, as DOCKER_HOST names it (credentials masked)."""
    return redact(os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock")


def forbidden(exc: BaseException) -> bool:
    """True when the Docker endpoint refused a call with 403 Forbidden: a socket proxy whose
    allow-list leaves the call out (the engine itself answers 404 or 409, never 403)."""
    return getattr(getattr(exc, "response", None), "status_code", None) == 403


def events_refused(client: Any) -> bool:
    """True when the endpoint answers the event stream 403 Forbidden (a socket proxy
    without EVENTS). Asked for an empty window, so it returns at once; docker-py's own
    ``events()`` ends quietly on such an answer instead of raising."""
    now_s = int(time.time())
    try:
        answer = client.api.get(f"{client.api.base_url}/v{client.api.api_version}/events",
                                params={"since": now_s, "until": now_s},
                                timeout=DOCKER_TIMEOUT_S)
    except docker_errors():
        return False  # unreachable: the connection's own failure says so
    return bool(answer.status_code == 403)


def docker_client(timeout_s: int = DOCKER_TIMEOUT_S, max_pool_size: int | None = None,
                  version: str | None = None) -> Any:
    """A client of the engine named by DOCKER_HOST (unix, tcp, tls via DOCKER_TLS_VERIFY and
    DOCKER_CERT_PATH), else the local socket; ``max_pool_size`` connections kept for
    threads that share it (docker-py's default: 10); ``version``: the API version to
    speak (None: negotiated with the engine, a ``/version`` call)."""
    options: dict[str, Any] = {"timeout": timeout_s}
    if max_pool_size is not None:
        options["max_pool_size"] = max_pool_size
    if version is not None:
        options["version"] = version
    return _client_class().from_env(**options)


class DockerClients:
    """Makes the Docker clients of one supervision (a restart's, a check's: one each),
    negotiating the API version with the engine once: the clients after the first reuse
    it, so a client made for one restart asks a busy engine no ``/version`` first."""

    def __init__(self) -> None:
        self._versions: dict[str, str] = {}  # DOCKER_HOST ("": the local socket) -> version

    def __call__(self) -> Any:
        endpoint = os.environ.get("DOCKER_HOST", "")
        client = docker_client(version=self._versions.get(endpoint))
        self._versions[endpoint] = client.api.api_version
        return client

    def forget(self) -> None:
        """Negotiate again with the next client: the engine went away, and the one that
        comes back may be another."""
        self._versions.clear()


@functools.cache
def _client_class() -> Any:
    """docker-py's client, except that a TLS engine is verified against DOCKER_CERT_PATH's
    ``ca.pem`` as the docker CLI does, even where REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE is
    set: requests lets those replace a session's own CA (docker/docker-py#2433)."""
    import docker

    class EngineAPI(docker.APIClient):  # type: ignore[misc]  # docker-py has no types
        def merge_environment_settings(self, url: Any, proxies: Any, stream: Any,
                                       verify: Any, cert: Any) -> Any:
            if verify is None and self.verify is not True:  # the engine's CA, or no check
                verify = self.verify
            return super().merge_environment_settings(url, proxies, stream, verify, cert)

    class EngineClient(docker.DockerClient):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:  # DockerClient's, but ours
            self.api = EngineAPI(*args, **kwargs)

    return EngineClient


def own_container_ids(proc: Path = Path("/proc/self"), hostname: str | None = None
                      ) -> frozenset[str]:
    """Ids (or 12-character prefixes) this process's own container may have: from its
    cgroup, from the files the engine mounts into every container (``/etc/hostname``,
    ``/etc/hosts``, ``/etc/resolv.conf``, from ``.../containers/<id>/``) and from a
    hostname that looks like one. Other mounts are left out: on a host, they name the
    layers and files of every container the engine runs."""
    found: set[str] = set()
    with contextlib.suppress(OSError):
        cgroup = (proc / "cgroup").read_text(encoding="utf-8", errors="replace")
        found.update(_CONTAINER_ID.findall(cgroup))
    with contextlib.suppress(OSError):
        for line in (proc / "mountinfo").read_text(encoding="utf-8",
                                                   errors="replace").splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[4] in _ENGINE_MOUNTED:
                found.update(_CONTAINER_ID.findall(fields[3]))
    hostname = os.environ.get("HOSTNAME", "") if hostname is None else hostname
    if re.fullmatch(r"[0-9a-f]{12,64}", hostname):
        found.add(hostname)
    return frozenset(found)


@dataclass(frozen=True)
class Probe:
    """One health probe's result, from an inspect's State.Health.Log."""

    exit_code: int | None
    output: str
    started_at: datetime | None = None


@dataclass(frozen=True)
class Sighting:
    """One container as Docker reported it (a listing entry or an inspect)."""

    id: str
    name: str
    image: str
    labels: dict[str, str]
    status: str
    health: str
    has_healthcheck: bool | None  # None: a listing of a stopped container cannot tell
    exit_code: int | None = None
    oom_killed: bool = False
    network_mode: str = ""
    stop_timeout_s: float | None = None
    probe_output: str = ""
    probe_exit_code: int | None = None
    docker_restart_count: int = 0  # Docker's own restarts since the last start by hand
    restart_policy: str | None = None  # as `docker run --restart` takes it; None: unknown
    details: dict[str, Any] = field(default_factory=dict)  # what else an inspect told
    probes: tuple[Probe, ...] = ()  # the probes since the container last started (inspect)
    started_at: datetime | None = None
    memory_limit: int = 0  # bytes; 0: none
    failing_streak: int = 0  # probes failed in a row
    probe_timing: tuple[float, float, float] = (30.0, 30.0, 0.0)  # interval, timeout, start
    log_driver: str = ""  # HostConfig.LogConfig.Type (an inspect's); "": unknown
    tty: bool | None = None  # Config.Tty (an inspect's): how its log is framed; None: unknown

    @property
    def compose_project(self) -> str | None:
        return self.labels.get(COMPOSE_PROJECT)

    @property
    def compose_service(self) -> str | None:
        return self.labels.get(COMPOSE_SERVICE)

    @property
    def swarm_service(self) -> str | None:
        """The Swarm service this container is a task of, or None."""
        return (self.labels.get(SWARM_SERVICE_NAME) or self.labels.get(SWARM_SERVICE_ID)
                or None)

    @property
    def network_parent(self) -> str | None:
        """The container (id or name) whose network namespace this one uses, or None."""
        mode = self.network_mode
        return mode.split(":", 1)[1] or None if mode.startswith("container:") else None

    @property
    def depends_on(self) -> tuple[str, ...]:
        """The compose services this container depends on (``depends_on``), by name."""
        text = self.labels.get(COMPOSE_DEPENDS_ON) or ""
        return tuple(part.split(":", 1)[0].strip() for part in text.split(",")
                     if part.split(":", 1)[0].strip())


def listing_key(entry: dict[str, Any]) -> Hashable:
    """What of a listing entry a sighting is made of (id, name, image, labels, state,
    health, exit code, network), without the rest of its status text (``Up 5 minutes``
    changes every time): equal keys, equal sightings."""
    status_text = entry.get("Status") or ""
    health = _HEALTH_IN_STATUS.search(status_text)
    exited = _EXIT_IN_STATUS.match(status_text)
    return (entry["Id"], tuple(entry.get("Names") or ()), entry.get("Image"),
            entry.get("State"), health.group(1) if health else None,
            exited.group(1) if exited else None,
            (entry.get("HostConfig") or {}).get("NetworkMode"),
            frozenset((entry.get("Labels") or {}).items()))


def sighting_from_listing(entry: dict[str, Any]) -> Sighting:
    status_text = entry.get("Status") or ""
    health_match = _HEALTH_IN_STATUS.search(status_text)
    health = "none"
    if health_match:
        health = "starting" if "starting" in health_match.group(1) else health_match.group(1)
    exit_match = _EXIT_IN_STATUS.match(status_text)
    state = entry.get("State") or ""
    return Sighting(
        id=entry["Id"], name=(entry.get("Names") or ["/?"])[0].lstrip("/"),
        image=entry.get("Image") or "", labels=dict(entry.get("Labels") or {}),
        status=state, health=health,
        has_healthcheck=True if health_match else (False if state == "running" else None),
        exit_code=int(exit_match.group(1)) if exit_match else None,
        network_mode=(entry.get("HostConfig") or {}).get("NetworkMode") or "")


def sighting_from_inspect(attrs: dict[str, Any]) -> Sighting:
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    health = state.get("Health") or {}
    healthcheck = config.get("Healthcheck") or {}
    has_healthcheck = bool(healthcheck.get("Test")) and healthcheck["Test"][0] != "NONE"
    log = health.get("Log") or []
    last = log[-1] if log else {}
    output = (last.get("Output") or "").strip()
    if len(output) > PROBE_OUTPUT_CHARS:
        output = output[-PROBE_OUTPUT_CHARS:]
    stop_timeout = config.get("StopTimeout")
    started_at = docker_time(str(state.get("StartedAt") or ""))
    return Sighting(
        id=attrs["Id"], name=(attrs.get("Name") or "/?").lstrip("/"),
        image=config.get("Image") or "", labels=dict(config.get("Labels") or {}),
        status=state.get("Status") or "", health=health.get("Status") or "none",
        has_healthcheck=has_healthcheck, exit_code=state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled")),
        network_mode=(attrs.get("HostConfig") or {}).get("NetworkMode") or "",
        stop_timeout_s=float(stop_timeout) if stop_timeout is not None else None,
        probe_output=output, probe_exit_code=last.get("ExitCode"),
        docker_restart_count=int(attrs.get("RestartCount") or 0),
        restart_policy=restart_policy(attrs),
        details={"finished_at": state.get("FinishedAt"), "error": state.get("Error") or ""},
        probes=probes_since(log, started_at), started_at=started_at,
        memory_limit=int((attrs.get("HostConfig") or {}).get("Memory") or 0),
        failing_streak=int(health.get("FailingStreak") or 0),
        probe_timing=(_ns_s(healthcheck.get("Interval"), 30.0),
                      _ns_s(healthcheck.get("Timeout"), 30.0),
                      _ns_s(healthcheck.get("StartPeriod"), 0.0)),
        log_driver=str(((attrs.get("HostConfig") or {}).get("LogConfig") or {}).get("Type")
                       or ""),
        tty=bool(config.get("Tty")))


def _ns_s(value: Any, default_s: float) -> float:
    """A health check duration (nanoseconds; 0 or unset: Docker's default) in seconds."""
    return float(value) / 1e9 if value else default_s


def probes_since(log: list[dict[str, Any]], started_at: datetime | None) -> tuple[Probe, ...]:
    """The health log's probes that ran since the container started, oldest first (Docker
    keeps the last five, across restarts)."""
    found = []
    for entry in log:
        began = docker_time(str(entry.get("Start") or ""))
        if started_at is not None and began is not None and began < started_at:
            continue
        output = (entry.get("Output") or "").strip()[-PROBE_OUTPUT_CHARS:]
        found.append(Probe(entry.get("ExitCode"), output, began))
    return tuple(found)


def restart_policy(attrs: dict[str, Any]) -> str:
    """An inspect's restart policy as ``docker run --restart`` takes it: ``no``,
    ``always``, ``unless-stopped``, ``on-failure`` or ``on-failure:N``."""
    policy = (attrs.get("HostConfig") or {}).get("RestartPolicy") or {}
    name = str(policy.get("Name") or "no")
    retries = int(policy.get("MaximumRetryCount") or 0)
    return f"{name}:{retries}" if name == "on-failure" and retries else name


def sighting_from_event(event: dict[str, Any]) -> Sighting | None:
    """A ``health_status: unhealthy`` event as a sighting; None for any other event. Docker
    puts the container's name, image and labels in every container event's attributes,
    which is all strike 1 needs; what only an inspect tells (probe output, stop timeout)
    is left empty."""
    actor = event.get("Actor") or {}
    attributes = dict(actor.get("Attributes") or {})
    action = str(event.get("Action") or event.get("status") or "")
    if action != "health_status: unhealthy" or not actor.get("ID") or "name" not in attributes:
        return None
    name = str(attributes.pop("name"))
    image = str(attributes.pop("image", ""))
    return Sighting(id=str(actor["ID"]), name=name, image=image, labels=attributes,
                status="running", health="unhealthy", has_healthcheck=True)


def memory_usage(client: Any, seen: Sighting) -> dict[str, int]:
    """The container's memory use now and at its peak (cgroup v1 only), in bytes, from one
    stats sample; empty when the engine does not answer or tells nothing."""
    try:
        stats = client.api.stats(seen.id, stream=False, one_shot=True)
    except docker_errors():
        return {}
    memory = stats.get("memory_stats") or {}
    return {key: int(memory[key]) for key in ("usage", "max_usage") if memory.get(key)}


def inspected(client: Any, seen: Sighting) -> Sighting:
    """``seen`` with what only an inspect tells (probe output, stop timeout, restart
    policy); as it was when the engine does not answer."""
    if seen.details:
        return seen
    try:
        return sighting_from_inspect(client.api.inspect_container(seen.id))
    except docker_errors():
        return seen


@dataclass(frozen=True)
class LogTail:
    """The last lines of a container's log, as aegis keeps them (redacted, each cut to
    LOG_LINE_CHARS), or why they could not be read (``unavailable``)."""

    lines: tuple[str, ...] = ()
    unavailable: str = ""

    def details(self) -> dict[str, Any]:
        """As an event's details (and an incident's log line) carry it: ``log_tail``, or
        ``log_tail_unavailable``."""
        if self.unavailable:
            return {"log_tail_unavailable": self.unavailable}
        return {"log_tail": list(self.lines)}

    @classmethod
    def from_details(cls, data: dict[str, Any]) -> LogTail | None:
        """The tail ``details`` carries; None when it carries none (an event or a line
        recorded before aegis read logs, or a step that read none)."""
        if data.get("log_tail_unavailable"):
            return cls(unavailable=str(data["log_tail_unavailable"]))
        lines = data.get("log_tail")
        if not isinstance(lines, list):
            return None
        return cls(lines=tuple(str(line) for line in lines))


def log_tail(client: Any, seen: Sighting, secrets: Iterable[str] = ()) -> LogTail:
    """The last LOG_TAIL_LINES lines the container wrote (stdout and stderr, as
    ``docker logs --tail`` shows them), each with ``secrets`` and credential-shaped text
    masked; or why there are none to show. Never raises: a restart or an escalation goes
    ahead whatever the engine answers. ``seen`` should come from an inspect, which names
    the log driver and tells whether the log is framed (no TTY) or raw, so the read is one
    call (docker-py's ``logs`` inspects the container first to know)."""
    if seen.log_driver == "none":
        return LogTail(unavailable="log driver none: the engine keeps no logs to read")
    try:
        if seen.tty is None:
            raw = client.api.logs(seen.id, stdout=True, stderr=True, tail=LOG_TAIL_LINES,
                                  timestamps=False)
        else:
            api = client.api
            answer = api._get(api._url("/containers/{0}/logs", seen.id), params={
                "stdout": 1, "stderr": 1, "timestamps": 0, "follow": 0,
                "tail": LOG_TAIL_LINES})
            raw = api._get_result_tty(False, answer, seen.tty)
    except docker_errors() as exc:
        return LogTail(unavailable=_unreadable(exc, seen.log_driver))
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    lines = str(raw).splitlines()[-LOG_TAIL_LINES:]
    return LogTail(lines=tuple(log_line(line, secrets) for line in lines))


def log_line(text: str, secrets: Iterable[str] = ()) -> str:
    """One line of a container's log as aegis keeps it: terminal codes removed, secrets
    masked, cut to LOG_LINE_CHARS (its start kept, the cut marked with an ellipsis)."""
    text = _CONTROL_CHARS.sub("", _TERMINAL_CODES.sub("", text)).rstrip()
    text = redact(text, secrets)  # before the cut: a secret across it is masked whole
    return text if len(text) <= LOG_LINE_CHARS else text[:LOG_LINE_CHARS - 1] + "…"


def _unreadable(exc: BaseException, driver: str) -> str:
    """Why the engine gave no logs, in one line."""
    explanation = str(getattr(exc, "explanation", "") or "")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 501 or "does not support reading" in explanation:
        # a driver that sends the logs elsewhere (syslog, gelf, fluentd, awslogs, splunk...)
        # with the engine's local copy turned off
        return (f"log driver {driver or 'unknown'}: the engine cannot read these logs back; "
                "they are where the driver sends them")
    reason = explanation or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"the logs could not be read: {redact(reason)}"


class EngineAvailability:
    """Records ``docker_unavailable`` when the engine goes away and ``docker_available``
    when it is back: once per change, whichever thread of one supervision notices, and
    remembered across restarts (a state key per host). An outage longer than a strike
    interval is one message (``docker_outage``), resolved by ``docker_available``
    (aegis/supervision/outage.py)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, bool] = {}  # host -> last noted
        self._outages: dict[str, Outage] = {}  # host -> the outage under way

    def note(self, runtime: Runtime, available: bool, error: str | None = None,
             now: datetime | None = None) -> None:
        """What the latest call to the engine found, at ``now``."""
        now = now or utcnow()
        host = runtime.settings.host
        with self._lock:
            if self._known.get(host) is not available:
                self._changed(runtime, available, error, now)
            if not available:
                self._alert_if_due(runtime, now)

    def _changed(self, runtime: Runtime, available: bool, error: str | None,
                 now: datetime) -> None:
        host, store = runtime.settings.host, runtime.store
        key = f"docker_available:{host}"
        try:
            previous = store.get_state(key)
            outage = Outage.from_json(store.get_state(f"docker_outage:{host}"))
        except StoreError:
            previous, outage = self._known.get(host), self._outages.get(host)
        self._known[host] = available
        if available:
            self._outages.pop(host, None)
            if outage is not None:
                store.set_state(f"docker_outage:{host}", None)
            if previous is False:
                resolved = (resolved_message(host, outage, now)
                            if outage is not None and outage.alerted else None)
                store.record_event(EventType.DOCKER_AVAILABLE, "the Docker engine answers again",
                                   importance=Importance.MEDIUM, source="supervisor",
                                   details={"host": host}, notify=resolved)
        else:
            if outage is None:
                outage = Outage(since=now, error=error or "")
                store.set_state(f"docker_outage:{host}", outage.to_json())
            self._outages[host] = outage
            if previous is not False:
                store.record_event(EventType.DOCKER_UNAVAILABLE,
                                   f"the Docker engine does not answer: {error}",
                                   importance=Importance.HIGH, source="supervisor",
                                   details={"host": host, "error": error})
        if previous is not available and not (available and previous is None):
            store.set_state(key, available)

    def _alert_if_due(self, runtime: Runtime, now: datetime) -> None:
        """The outage's message, once, when it has lasted longer than a strike interval."""
        host, store = runtime.settings.host, runtime.store
        outage = self._outages.get(host)
        if outage is None or not outage.due(now, runtime.settings.strike_interval_s):
            return
        store.record_event(EventType.DOCKER_OUTAGE,
                           f"the Docker engine has not answered since "
                           f"{outage.since:%H:%M:%S} UTC (over a strike interval)",
                           importance=Importance.HIGH, source="supervisor",
                           details={"host": host, "since": outage.since.isoformat(),
                                    "error": outage.error},
                           notify=outage_message(host, outage))
        self._outages[host] = replace(outage, alerted=True)
        store.set_state(f"docker_outage:{host}", self._outages[host].to_json())


def docker_time(text: str) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds, which ``fromisoformat`` does not take."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not match or text.startswith("0001-"):
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + fraction + zone)
