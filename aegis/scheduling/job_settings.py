"""A job's settings from configuration: the ``[jobs.ID]`` tables of the file named by
AEGIS_CONFIG and the ``AEGIS_JOB__ID__KEY`` variables, parsed into one ``JobOverride`` per
job, which ``Registry.apply_overrides`` lays over the job its module registered.

core reads them without parsing (``Settings.job_tables``, ``Settings.job_variables``):
what a job's settings mean is scheduling's. Each mistake is a ConfigError naming the
variable or key; ``aegis.api.load_settings`` parses them with the rest of the settings, so
a bad one stops every command at start-up, before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from aegis.core import parsing
from aegis.core.config import JOB_ENV_PREFIX, Settings
from aegis.core.durations import parse_time_of_day
from aegis.core.errors import ConfigError

JOB_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# a job added at run time from elsewhere (a container's labels: ``CONTAINER.NAME``)
SOURCED_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
# The keys that set a job's trigger: at most one of them per job.
TRIGGER_KEYS = ("every", "at", "cron")


class MisfirePolicy(StrEnum):
    """What becomes of a job's slots that fell due while no daemon ran."""

    # the latest missed slot runs once, within the grace
    RUN_ONCE = "run_once"
    # nothing missed while no daemon ran is run later
    SKIP = "skip"
    # every missed slot within the grace runs, up to a bound
    RUN_ALL = "run_all"


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
    # 0: no max_runtime
    max_runtime_s: float | None = None
    # 0: not watched
    expect_every_s: float | None = None


def _time_of_day(raw: Any) -> str:
    return parse_time_of_day(parsing.text(raw)).strftime("%H:%M:%S")


# Each key: the JobOverride field it sets and the parser of its value.
KEYS: Mapping[str, tuple[str, Callable[[Any], Any]]] = {
    "enabled": ("enabled", parsing.boolean),
    "every": ("every_s", parsing.duration(1.0)),
    "at": ("at", _time_of_day),
    "cron": ("cron", parsing.cron_expression),
    "misfire_grace": ("misfire_grace_s", parsing.duration()),
    "timeout": ("timeout_s", parsing.duration(0.1)),
    "timezone": ("timezone", parsing.timezone),
    "misfire": ("misfire", parsing.member(MisfirePolicy)),
    "max_runtime": ("max_runtime_s", parsing.duration_or_off(0.1)),
    "expect_every": ("expect_every_s", parsing.duration_or_off(1.0)),
}


@dataclass(frozen=True)
class RawValue:
    """A job's key as configuration sets it: where (the variable, or the file's key, as an
    error names it) and the value, unparsed."""

    where: str
    value: Any
    from_environment: bool = False


# A job's keys as set: key -> where and what.
RawJob = dict[str, RawValue]


def job_overrides(settings: Settings) -> dict[str, JobOverride]:
    """Every configured job's override: the file's keys, then the environment's over them
    (an environment variable setting a trigger replaces the file's trigger)."""
    found = _file_keys(settings.job_tables, settings.config_file)
    for name, value in sorted(settings.job_variables.items()):
        _add_variable(found, name, value)
    return {job_id: _override(keys) for job_id, keys in found.items()}


def _file_keys(tables: Mapping[str, Any], path: Path | None) -> dict[str, RawJob]:
    found: dict[str, RawJob] = {}
    for job_id, keys in tables.items():
        where = f"{path}: jobs.{job_id}"
        if not JOB_ID.match(job_id):
            raise ConfigError(where, "is not a job id (lower-case letters, digits, '_')")
        if not isinstance(keys, dict):
            raise ConfigError(where, "must be a table")
        for key, value in keys.items():
            found.setdefault(job_id, {})[key] = RawValue(f"{where}.{key}", value)
    return found


def _add_variable(found: dict[str, RawJob], name: str, value: str) -> None:
    """``AEGIS_JOB__<JOB_ID>__<KEY>=value`` into ``found``; a trigger set in the
    environment takes the place of the file's."""
    job_part, sep, key_part = name.removeprefix(JOB_ENV_PREFIX).partition("__")
    job_id, key = job_part.lower(), key_part.lower()
    if not sep or not JOB_ID.match(job_id):
        raise ConfigError(name, f"use {JOB_ENV_PREFIX}<JOB_ID>__<KEY>, e.g. "
                          f"{JOB_ENV_PREFIX}MORNING_STATUS__AT")
    keys = found.setdefault(job_id, {})
    if key in TRIGGER_KEYS:
        for trigger_key in TRIGGER_KEYS:
            if trigger_key in keys and not keys[trigger_key].from_environment:
                del keys[trigger_key]
    keys[key] = RawValue(name, value, from_environment=True)


def _override(keys: RawJob) -> JobOverride:
    parsed = dict(_parsed(key, raw) for key, raw in keys.items())
    triggers = [k for k in TRIGGER_KEYS if k in keys]
    if len(triggers) > 1:
        raise ConfigError(keys[triggers[-1]].where, "set at most one of every, at, cron "
                          f"(found {' and '.join(triggers)})")
    return JobOverride(**parsed)


def _parsed(key: str, raw: RawValue) -> tuple[str, Any]:
    """The JobOverride field ``key`` sets and its parsed value."""
    if key not in KEYS:
        raise ConfigError(raw.where, f"unknown job key (known: {', '.join(KEYS)})")
    field, parse = KEYS[key]
    try:
        return field, parse(raw.value)
    except ValueError as exc:
        raise ConfigError(raw.where, str(exc)) from None
