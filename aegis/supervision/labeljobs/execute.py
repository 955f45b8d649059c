"""One run of a label job through the engine: the command executed in its container
(``exec_create``, ``exec_start``, ``exec_inspect``), or for Ofelia's ``job-run`` in a new
container of its image, with its exit code, duration and the last 64 KiB of its output
(stdout and stderr, redacted); at its timeout the process is signalled, then killed.

A slot whose container is stopped, restarting or in an open incident is not run: the
job raises ``RunSkipped`` with the reason, and the slot is recorded ``skipped``.

The exec's process is stopped from the host's side when aegis sees the host's processes:
``exec_inspect`` names its pid in the host's process namespace, and aegis signals it and
its children once it has checked, from ``/proc``, that they belong to the container.
aegis in a container without ``pid: host`` does not see them; then the signal is sent from
inside the container: every exec carries ``AEGIS_JOB_RUN=<mark>`` in its environment (its
children inherit it), and a second exec (``/bin/sh`` as root) signals each process whose
environment holds that mark. Only a container without ``/bin/sh`` keeps a command past
its timeout running; the run's error says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aegis.core.redact import redact
from aegis.scheduling.registry import RunSkipped
from aegis.supervision.labeljobs.spec import (
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    JobScope,
    LabelJobSpec,
)

OUTPUT_BYTES = 64 * 1024
# between the TERM and the KILL of a command past its timeout
KILL_GRACE_S = 5.0
POLL_S = 0.2
SECRET_NAME_PARTS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY")
# the variable that marks an exec's processes, for a signal sent from inside its container
RUN_MARK = "AEGIS_JOB_RUN"
# signals every process of the container whose environment holds RUN_MARK=$AEGIS_MARK (its
# own environment holds AEGIS_MARK=..., never RUN_MARK=..., so it never signals itself)
SIGNAL_INSIDE = (f'for d in /proc/[0-9]*; do grep -qs "{RUN_MARK}=$AEGIS_MARK" "$d/environ" '
                 '&& kill -s "$AEGIS_SIGNAL" "${d#/proc/}" 2>/dev/null; done; true')


@dataclass(frozen=True)
class Target:
    """The container a slot runs in."""

    id: str
    name: str


@dataclass(frozen=True)
class ExecOutcome:
    """How one command ended."""

    exit_code: int | None
    duration_s: float
    output: str
    timed_out: bool = False
    # how a command past its timeout was stopped ("TERM", "KILL"), or why it could not be
    stopped: str | None = None

    def as_result(self, container: str) -> dict[str, Any]:
        return {"container": container, "exit_code": self.exit_code,
                "duration_s": round(self.duration_s, 3), "output": self.output,
                "timed_out": self.timed_out, "stopped": self.stopped}


class Tail:
    """The last OUTPUT_BYTES of a stream, kept as it is read."""

    def __init__(self, limit_bytes: int = OUTPUT_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self.cut = False

    def add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        while self._size - len(self._chunks[0]) >= self.limit_bytes:
            self._size -= len(self._chunks.popleft())
            self.cut = True

    def text(self, secrets: Iterable[str] = ()) -> str:
        data = b"".join(self._chunks)
        if len(data) > self.limit_bytes:
            data, self.cut = data[-self.limit_bytes:], True
        return redact(data.decode("utf-8", errors="replace"), secrets)


def secrets_of(spec: LabelJobSpec, settings_secrets: Iterable[str]) -> list[str]:
    """What is masked in a run's output: aegis's own secrets, and the values of the job's
    environment whose names say they are secret."""
    found = list(settings_secrets)
    for item in spec.env:
        name, _, value = item.partition("=")
        if any(part in name.upper() for part in SECRET_NAME_PARTS):
            found.append(value)
    return found


# --- the container a slot runs in ---


def target_of(client: Any, spec: LabelJobSpec) -> Target:
    """The running container of the job: its own, or with scope=service any running
    container of the service on this host. Raises RunSkipped when there is none."""
    if spec.scope == JobScope.SERVICE and spec.service is not None:
        project, service = spec.service
        running = client.api.containers(filters={
            "label": [f"{COMPOSE_PROJECT}={project}", f"{COMPOSE_SERVICE}={service}"],
            "status": "running"})
        if not running:
            raise RunSkipped(f"no container of service {project}/{service} is running on "
                             "this host")
        first = sorted(running, key=lambda c: c["Names"][0])[0]
        return Target(first["Id"], first["Names"][0].lstrip("/"))
    from docker.errors import NotFound

    try:
        inspect = client.api.inspect_container(spec.container)
    except NotFound:
        raise RunSkipped(f"container {spec.container} is gone") from None
    state = inspect.get("State") or {}
    if state.get("Restarting"):
        raise RunSkipped(f"container {spec.container} is restarting")
    if state.get("Paused"):
        raise RunSkipped(f"container {spec.container} is paused")
    if not state.get("Running"):
        raise RunSkipped(f"container {spec.container} is {state.get('Status') or 'stopped'}")
    return Target(inspect["Id"], spec.container)


# --- exec ---


def run_exec(client: Any, target: Target, spec: LabelJobSpec, cancelled: threading.Event,
             secrets: Iterable[str] = ()) -> ExecOutcome:
    """Run ``spec``'s command in ``target`` until it ends or ``cancelled`` is set (its
    timeout): then its processes get SIGTERM, and SIGKILL KILL_GRACE_S later."""
    api = client.api
    started = time.monotonic()
    mark = uuid.uuid4().hex
    exec_id = api.exec_create(target.id, list(spec.command), stdout=True, stderr=True,
                              tty=spec.tty, user=spec.user or "",
                              environment=[*spec.env, f"{RUN_MARK}={mark}"],
                              workdir=spec.workdir)["Id"]
    tail = Tail()
    stream = api.exec_start(exec_id, tty=spec.tty, stream=True)
    reader = threading.Thread(target=_read, args=(stream, tail), daemon=True,
                              name="aegis-label-job-output")
    reader.start()
    stopped = None
    while reader.is_alive():
        if cancelled.wait(POLL_S):
            stopped = _stop(api, exec_id, Marked(target, mark), reader)
            break
    reader.join(KILL_GRACE_S)
    inspect = api.exec_inspect(exec_id)
    code = None if inspect.get("Running") else inspect.get("ExitCode")
    return ExecOutcome(exit_code=code, duration_s=time.monotonic() - started,
                       output=tail.text(secrets), timed_out=cancelled.is_set(),
                       stopped=stopped)


def _read(stream: Iterator[bytes], tail: Tail) -> None:
    with contextlib.suppress(Exception):  # a stream cut short ends like a finished one
        for chunk in stream:
            tail.add(chunk)


@dataclass(frozen=True)
class Marked:
    """The container of an exec, and the mark its processes carry."""

    target: Target
    mark: str


def _stop(api: Any, exec_id: str, marked: Marked, reader: threading.Thread) -> str:
    """TERM, then KILL after the grace, to the exec's process and its children; what was
    done, or why nothing could be."""
    pid = int(api.exec_inspect(exec_id).get("Pid") or 0)
    if not pid:
        return "ended"
    for sig, name in ((signal.SIGTERM, "TERM"), (signal.SIGKILL, "KILL")):
        if not _signal(api, pid, marked, sig):
            return "not stopped: aegis cannot see the container's processes and the " \
                   "container has no /bin/sh to signal them from" if name == "TERM" else "TERM"
        reader.join(KILL_GRACE_S)
        if not reader.is_alive() and not _running(api, exec_id):
            return name
    return "KILL"


def _signal(api: Any, pid: int, marked: Marked, sig: signal.Signals) -> bool:
    """``sig`` to the exec's processes: from the host when aegis sees them, else from
    inside the container. False when neither could be done."""
    victims = process_tree(pid, marked.target.id)
    for victim in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(victim, sig)
    return bool(victims) or signal_inside(api, marked.target.id, marked.mark, sig)


def signal_inside(api: Any, container_id: str, mark: str, sig: signal.Signals) -> bool:
    """``sig`` to every process of the container carrying ``mark``, sent by an exec of
    ``/bin/sh`` as root inside it; False when that exec could not run."""
    from docker.errors import APIError

    try:
        exec_id = api.exec_create(container_id, ["/bin/sh", "-c", SIGNAL_INSIDE], user="0",
                                  environment=[f"AEGIS_MARK={mark}",
                                               f"AEGIS_SIGNAL={sig.name.removeprefix('SIG')}"]
                                  )["Id"]
        api.exec_start(exec_id)
        return bool(api.exec_inspect(exec_id).get("ExitCode") == 0)
    except APIError:
        return False


def _running(api: Any, exec_id: str) -> bool:
    return bool(api.exec_inspect(exec_id).get("Running"))


def process_tree(pid: int, container_id: str, proc: Path = Path("/proc")) -> list[int]:
    """``pid`` and its descendants, as this process sees them, when ``pid`` belongs to the
    container (its cgroup names the container's id); [] otherwise, so that a pid of
    another namespace is never signalled."""
    if container_id not in _read_text(proc / str(pid) / "cgroup"):
        return []
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read_text(entry / "stat")
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, waiting = [], [pid]
    while waiting:
        current = waiting.pop()
        found.append(current)
        waiting.extend(children.get(current, ()))
    return found


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


# --- Ofelia's job-run: a new container ---


def run_container(client: Any, spec: LabelJobSpec, cancelled: threading.Event,
                  secrets: Iterable[str] = ()) -> ExecOutcome:
    """Run ``spec`` in a new container of its image (removed afterwards), until it ends or
    ``cancelled`` is set: then it is stopped (TERM, KILL after the grace)."""
    api = client.api
    started = time.monotonic()
    binds = list(spec.volumes)
    host_config = api.create_host_config(binds=binds or None,
                                         network_mode=spec.network or None)
    created = api.create_container(spec.image, list(spec.command), user=spec.user or None,
                                   environment=list(spec.env) or None, tty=spec.tty,
                                   host_config=host_config,
                                   labels={"aegis.job-run.of": spec.job_id})
    container_id = created["Id"]
    stopped = None
    try:
        api.start(container_id)
        while True:
            if cancelled.wait(POLL_S):
                api.stop(container_id, timeout=int(KILL_GRACE_S))
                stopped = "stopped"
                break
            if not api.inspect_container(container_id)["State"].get("Running"):
                break
        state = api.inspect_container(container_id)["State"]
        tail = Tail()
        tail.add(api.logs(container_id, stdout=True, stderr=True, tail=2000))
        return ExecOutcome(exit_code=state.get("ExitCode"),
                           duration_s=time.monotonic() - started,
                           output=tail.text(secrets), timed_out=cancelled.is_set(),
                           stopped=stopped)
    finally:
        with contextlib.suppress(Exception):
            api.remove_container(container_id, force=True)
