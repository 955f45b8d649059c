"""A container's labels read into job specs: aegis's own ``aegis.job.<name>.<key>`` and
Ofelia's ``ofelia.job-exec.<name>.<key>`` (with ``ofelia.enabled=true``), plus
``ofelia.job-run.*`` when AEGIS_LABEL_JOBS_RUN=on. Pure: a label that cannot be used is a
``LabelProblem`` naming the container, the label and the reason, never an exception, and
the container's other jobs are read all the same.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from aegis.core import clock, parsing
from aegis.core.durations import parse_duration_s
from aegis.scheduling.job_settings import MisfirePolicy
from aegis.scheduling.triggers import Trigger, go_duration_s, parse_schedule, spread

AEGIS_PREFIX = "aegis.job."
OFELIA_ENABLED = "ofelia.enabled"
OFELIA_PREFIX = "ofelia."
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
DEFAULT_TIMEOUT_S = 3600.0
SHELL = ("/bin/sh", "-c")
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
# Ofelia's job types aegis does not run, and why (docs/migrating-from-ofelia.md)
OFELIA_UNSUPPORTED = {
    "job-local": "runs a command on the host of the scheduler itself; aegis runs commands "
                 "in containers only",
    "job-service-run": "starts a Swarm service; aegis does not drive Swarm",
}
# Ofelia's keys that aegis reads and leaves without effect
OFELIA_IGNORED = frozenset({"history-limit", "delete"})


class LabelSource(StrEnum):
    """Whose labels declared the job."""

    AEGIS = "aegis"
    OFELIA = "ofelia"


class JobKind(StrEnum):
    # a command run in the labelled container (docker exec)
    EXEC = "exec"
    # a new container from an image (Ofelia's job-run; AEGIS_LABEL_JOBS_RUN=on only)
    RUN = "run"


class JobScope(StrEnum):
    # this host's labelled container
    CONTAINER = "container"
    # once per slot across every host running a container of the compose service
    SERVICE = "service"


@dataclass(frozen=True)
class LabelJobSpec:
    """One job a container's labels declare, ready to be registered."""

    name: str
    container: str
    source: LabelSource
    schedule: str
    trigger: Trigger
    command: tuple[str, ...]
    kind: JobKind = JobKind.EXEC
    user: str | None = None
    workdir: str | None = None
    env: tuple[str, ...] = ()
    tty: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    overlap: bool = False
    scope: JobScope = JobScope.CONTAINER
    # (compose project, service) of the container, for scope=service
    service: tuple[str, str] | None = None
    timezone: str | None = None
    misfire: MisfirePolicy = MisfirePolicy.RUN_ONCE
    max_runtime_s: float | None = None
    expect_every_s: float | None = None
    # job-run: the image, network and volumes of the container it makes
    image: str | None = None
    network: str | None = None
    volumes: tuple[str, ...] = ()
    labels: tuple[str, ...] = field(default=(), compare=False)

    @property
    def job_id(self) -> str:
        """``CONTAINER.NAME``; with scope=service, ``PROJECT-SERVICE.NAME`` on every host."""
        if self.scope == JobScope.SERVICE and self.service is not None:
            return f"{self.service[0]}-{self.service[1]}.{self.name}"
        return f"{self.container}.{self.name}"

    @property
    def source_text(self) -> str:
        return f"label: {self.container}"

    @property
    def label_prefix(self) -> str:
        if self.source == LabelSource.AEGIS:
            return f"{AEGIS_PREFIX}{self.name}"
        return f"{OFELIA_PREFIX}job-{self.kind}.{self.name}"


@dataclass(frozen=True)
class LabelProblem:
    """A label that declares no job, and why."""

    container: str
    label: str
    reason: str

    def describe(self) -> str:
        return f"{self.container}: {self.label}: {self.reason}"


@dataclass(frozen=True)
class LabelJobs:
    """What one container's labels declare."""

    specs: tuple[LabelJobSpec, ...] = ()
    problems: tuple[LabelProblem, ...] = ()


class _Bad(ValueError):
    """A key's value that cannot be used: the label it is in and why."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(reason)
        self.label = label


def has_job_labels(labels: Mapping[str, str]) -> bool:
    return any(key.startswith((AEGIS_PREFIX, "ofelia.job-")) for key in labels)


def read_labels(container: str, labels: Mapping[str, str], *,
                run_allowed: bool = False) -> LabelJobs:
    """The jobs ``labels`` of ``container`` declare, and the problems of the rest."""
    groups: dict[tuple[LabelSource, str, str], dict[str, tuple[str, str]]] = {}
    problems: list[LabelProblem] = []
    ofelia = parsing_bool(labels.get(OFELIA_ENABLED, "false"))
    for key, value in sorted(labels.items()):
        found = _job_key(key, ofelia)
        if found is None:
            continue
        if isinstance(found, str):
            label = _job_prefix(key)
            if all(p.label != label for p in problems):
                problems.append(LabelProblem(container, label, found))
            continue
        source, kind, name, option = found
        groups.setdefault((source, kind, name), {})[option] = (key, value)
    specs: list[LabelJobSpec] = []
    for job, keys in groups.items():
        try:
            specs.append(_spec(container, labels, job, keys, run_allowed))
        except _Bad as bad:
            problems.append(LabelProblem(container, bad.label, str(bad)))
    return LabelJobs(*_unique(specs, problems))


def parsing_bool(raw: str) -> bool:
    try:
        return parsing.boolean(raw)
    except ValueError:
        return False


def _job_prefix(key: str) -> str:
    """``ofelia.job-local.NAME`` of ``ofelia.job-local.NAME.KEY``: where a job's labels
    begin (the whole key when it has no such shape)."""
    parts = key.split(".")
    return ".".join(parts[:-1]) if len(parts) >= 4 else key


def _job_key(key: str, ofelia: bool) -> tuple[LabelSource, str, str, str] | str | None:
    """(source, kind, job name, option) of a job's label; a reason for a job label that is
    malformed; None for any other label."""
    if key.startswith(AEGIS_PREFIX):
        source, kind, rest = LabelSource.AEGIS, JobKind.EXEC.value, key[len(AEGIS_PREFIX):]
    elif key.startswith("ofelia.job-") and ofelia:
        kind_text, _, rest = key[len("ofelia.job-"):].partition(".")
        if f"job-{kind_text}" in OFELIA_UNSUPPORTED:
            return f"not supported: job-{kind_text} {OFELIA_UNSUPPORTED['job-' + kind_text]}"
        if kind_text not in tuple(JobKind):
            return f"unknown Ofelia job type job-{kind_text}"
        source, kind = LabelSource.OFELIA, kind_text
    else:
        return None
    name, _, option = rest.partition(".")
    if not JOB_NAME.match(name) or not option:
        return "use " + ("aegis.job.NAME.KEY" if source == LabelSource.AEGIS
                         else "ofelia.job-exec.NAME.KEY") + " (NAME: letters, digits, '-', '_')"
    return source, kind, name, option


def _unique(specs: list[LabelJobSpec], problems: list[LabelProblem]
            ) -> tuple[tuple[LabelJobSpec, ...], tuple[LabelProblem, ...]]:
    """A job name declared twice (by aegis's labels and Ofelia's): neither runs."""
    by_name: dict[str, list[LabelJobSpec]] = {}
    for spec in specs:
        by_name.setdefault(spec.name, []).append(spec)
    kept = []
    for name, same in sorted(by_name.items()):
        if len(same) == 1:
            kept.append(same[0])
            continue
        problems.extend(LabelProblem(spec.container, spec.label_prefix,
                                     f"the job name {name!r} is used twice "
                                     f"({', '.join(s.label_prefix for s in same)})")
                        for spec in same)
    return tuple(kept), tuple(problems)


# --- one job's keys ---


def _text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("is empty")
    return value


def _duration(raw: str) -> float:
    try:
        seconds = parse_duration_s(raw)
    except ValueError:
        seconds = go_duration_s(raw)
    if seconds <= 0:
        raise ValueError(f"{raw!r} must be more than 0")
    return seconds


def _strings(raw: str) -> tuple[str, ...]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError(f"{raw!r} is not a JSON array of strings") from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{raw!r} is not a JSON array of strings")
    return tuple(value)


def _env(raw: str) -> tuple[str, ...]:
    found = _strings(raw)
    for item in found:
        if "=" not in item or item.startswith("="):
            raise ValueError(f"{item!r} is not NAME=VALUE")
    return found


def _aegis_command(raw: str) -> tuple[str, ...]:
    """A JSON array runs as is; any other text through the container's ``/bin/sh -c``."""
    text = _text(raw)
    if text.startswith("["):
        argv = _strings(text)
        if not argv:
            raise ValueError("the command's array is empty")
        return argv
    return (*SHELL, text)


def _ofelia_command(raw: str) -> tuple[str, ...]:
    """Split into words as Ofelia does (quotes honoured, no shell)."""
    argv = tuple(shlex.split(_text(raw)))
    if not argv:
        raise ValueError("the command is empty")
    return argv


def _volumes(raw: str) -> tuple[str, ...]:
    return _strings(raw) if raw.strip().startswith("[") else (_text(raw),)


def _timezone(raw: str) -> str:
    return clock.zone(raw).key


def _scope(raw: str) -> JobScope:
    return parsing.member(JobScope)(raw)


Parser = tuple[str, Callable[[str], Any]]
AEGIS_KEYS: Mapping[str, Parser] = {
    "schedule": ("schedule", _text), "command": ("command", _aegis_command),
    "user": ("user", _text), "workdir": ("workdir", _text), "env": ("env", _env),
    "timeout": ("timeout_s", _duration), "overlap": ("overlap", parsing.boolean),
    "scope": ("scope", _scope), "timezone": ("timezone", _timezone),
    "misfire": ("misfire", parsing.member(MisfirePolicy)),
    "expect-every": ("expect_every_s", _duration), "max-runtime": ("max_runtime_s", _duration),
}
OFELIA_KEYS: Mapping[str, Parser] = {
    "schedule": ("schedule", _text), "command": ("command", _ofelia_command),
    "user": ("user", _text), "tty": ("tty", parsing.boolean),
    "environment": ("env", _env),
    "no-overlap": ("overlap", lambda raw: not parsing.boolean(raw)),
}
OFELIA_RUN_KEYS: Mapping[str, Parser] = {
    **OFELIA_KEYS, "image": ("image", _text), "network": ("network", _text),
    "volume": ("volumes", _volumes), "container": ("container", _text),
}


def _spec(container: str, labels: Mapping[str, str], job: tuple[LabelSource, str, str],
          keys: Mapping[str, tuple[str, str]], run_allowed: bool) -> LabelJobSpec:
    source, kind, name = job[0], JobKind(job[1]), job[2]
    prefix = (f"{AEGIS_PREFIX}{name}" if source == LabelSource.AEGIS
              else f"{OFELIA_PREFIX}job-{kind}.{name}")
    if kind == JobKind.RUN and not run_allowed:
        raise _Bad(prefix, "ofelia.job-run jobs start new containers from labels, which lets "
                   "whoever sets a label mount the host: set AEGIS_LABEL_JOBS_RUN=on to "
                   "allow them")
    table = AEGIS_KEYS if source == LabelSource.AEGIS else (
        OFELIA_RUN_KEYS if kind == JobKind.RUN else OFELIA_KEYS)
    values = _values(table, keys)
    for required in ("schedule", "command"):
        if required not in values:
            raise _Bad(f"{prefix}.{required}", "is missing")
    if kind == JobKind.RUN and "image" not in values:
        raise _Bad(f"{prefix}.image", "is missing (the image of the container to run)")
    schedule = values["schedule"]
    try:
        trigger = parse_schedule(schedule, timezone=values.get("timezone"))
    except ValueError as exc:
        raise _Bad(keys["schedule"][0], str(exc)) from None
    values.pop("container", None)
    spec = LabelJobSpec(name=name, container=container, source=source, kind=kind,
                        trigger=trigger, labels=tuple(key for key, _ in keys.values()),
                        **values)
    if source == LabelSource.OFELIA and "overlap" not in values:
        spec = replace(spec, overlap=True)  # Ofelia's default: runs may overlap
    spec = _with_service(spec, labels, prefix)
    # @every promises an interval, not a mark on the clock: spread by the job's id
    return replace(spec, trigger=spread(spec.trigger, spec.job_id))


def _values(table: Mapping[str, Parser], keys: Mapping[str, tuple[str, str]]
            ) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for option, (label, raw) in sorted(keys.items()):
        if option in OFELIA_IGNORED and table is not AEGIS_KEYS:
            continue
        if option not in table:
            raise _Bad(label, f"unknown key {option!r} (known: {', '.join(table)})")
        field_name, parse = table[option]
        try:
            values[field_name] = parse(raw)
        except ValueError as exc:
            raise _Bad(label, str(exc)) from None
    return values


def _with_service(spec: LabelJobSpec, labels: Mapping[str, str],
                  prefix: str) -> LabelJobSpec:
    project, service = labels.get(COMPOSE_PROJECT), labels.get(COMPOSE_SERVICE)
    if project and service:
        spec = replace(spec, service=(project, service))
    if spec.scope == JobScope.SERVICE and spec.service is None:
        raise _Bad(f"{prefix}.scope", "scope=service needs a container of a compose service "
                   f"(labels {COMPOSE_PROJECT} and {COMPOSE_SERVICE})")
    return spec
