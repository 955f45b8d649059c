"""Triage: why a container is in trouble, from what Docker already knows, and so what a
restart can do about it. Pure functions of what an inspect reports (``Sighting``), what aegis
remembers of the container, and ``now``; ``strikes.decide`` acts on the class.

    broken_probe  the probe cannot run (exit 126 or 127, an exec that failed, "not found",
                  "permission denied"): a restart cannot help; escalated at strike 2
    hung          the probe has timed out every time since the container started: the
                  application hangs (or the probe needs longer than its timeout); a
                  failure like any other, restarted within the budget, and escalated
                  with that said if it still times out every time after the restart
    oom           killed for lack of memory (State.OOMKilled, the engine's ``oom`` event
                  since the container started, or exit 137 at its memory limit):
                  restarted at most once an hour, then escalated with limit and usage
    crash_loop    Docker's own restart policy restarting it over and over (its restart
                  count rising CRASH_LOOP_RESTARTS times within CRASH_LOOP_WINDOW):
                  escalated once, never restarted by aegis on top
    exited        exited, and Docker is not restarting it (``strikes.gave_up``)
    unhealthy     none of these: the three-strike protocol as it stands
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from aegis.supervision.docker import Probe, Sighting


class TriageClass(StrEnum):
    UNHEALTHY = "unhealthy"
    BROKEN_PROBE = "broken_probe"
    HUNG = "hung"
    OOM = "oom"
    CRASH_LOOP = "crash_loop"
    EXITED = "exited"


# What each class means, as an alert says it.
MEANING = {
    TriageClass.UNHEALTHY: "unhealthy",
    TriageClass.BROKEN_PROBE: "the health check command is broken",
    TriageClass.HUNG: "the health check times out: the application hangs",
    TriageClass.OOM: "killed for lack of memory",
    TriageClass.CRASH_LOOP: "crash loop under Docker's restart policy",
    TriageClass.EXITED: "exited, and Docker is not restarting it",
}
CRASH_LOOP_RESTARTS = 3
CRASH_LOOP_WINDOW = timedelta(minutes=10)
# Docker keeps this many probes in State.Health.Log.
HEALTH_LOG_ENTRIES = 5
# A process killed by the kernel's OOM killer exits with SIGKILL: 128 + 9.
OOM_EXIT_CODE = 137
# Peak memory this close to the limit counts as having reached it.
MEMORY_LIMIT_REACHED = 0.95
# A probe Docker could not run: its own words (exit -1), or a shell's (exit 126, 127).
_CANNOT_RUN = re.compile(r"exec failed|executable file not found|no such file or directory"
                         r"|permission denied|: not found\b", re.IGNORECASE)
_TIMED_OUT = re.compile(r"^Health check exceeded timeout")
_MAX_EXIT_CODES = 5

# Docker's restart count as aegis saw it: (when, count, the exit code then)
Sample = tuple[datetime, int, int | None]


def broken_probe(seen: Sighting) -> str | None:
    """Why the health check itself cannot work, or None. Needs an inspect's probes."""
    probes = seen.probes
    if not probes:
        return None
    last = probes[-1]
    if last.exit_code in (126, 127) or (last.exit_code in (None, -1)
                                       and _CANNOT_RUN.search(last.output)):
        return f"the probe cannot run (exit {last.exit_code}): {_first_line(last)}"
    return None


def hung_timeout_s(seen: Sighting) -> float | None:
    """The probe's timeout when every probe since the container started has exceeded it
    (a hung application, or a probe that needs longer), or None. A timeout is a failure
    like any other (kubelet counts it as one): a restart usually frees a hung process.
    Needs an inspect's probes."""
    probes = seen.probes
    timed_out = bool(probes) and all(_TIMED_OUT.match(p.output) for p in probes)
    return seen.probe_timing[1] if timed_out and _since_start(seen, probes) else None


def _since_start(seen: Sighting, probes: Sequence[Probe]) -> bool:
    """Whether ``probes`` (all failures) are every probe since the container started: the
    log has not rotated since, or Docker's failing streak reaches back to the start."""
    if len(probes) < HEALTH_LOG_ENTRIES:
        return True
    last = probes[-1].started_at
    if seen.started_at is None or last is None:
        return False
    interval_s, timeout_s, start_period_s = seen.probe_timing
    reach_s = seen.failing_streak * (interval_s + timeout_s) + interval_s + start_period_s
    return (last - seen.started_at).total_seconds() <= reach_s


def _first_line(probe: Probe) -> str:
    lines = probe.output.strip().splitlines()
    return lines[0][:200] if lines else "no output"


def oom_killed(seen: Sighting, oom_at: datetime | None, memory_peak: int | None = None) -> bool:
    """Killed for memory: Docker says so, the engine's ``oom`` event came since the
    container last started (a process inside it killed, the container still running), or
    it exited 137 with its peak memory at the limit."""
    if seen.oom_killed:
        return True
    if oom_at is not None and (seen.started_at is None or oom_at >= seen.started_at):
        return True
    return (seen.exit_code == OOM_EXIT_CODE and seen.memory_limit > 0
            and memory_peak is not None
            and memory_peak >= MEMORY_LIMIT_REACHED * seen.memory_limit)


def restart_samples(samples: Sequence[Sample], count: int, exit_code: int | None,
                    now: datetime) -> tuple[Sample, ...]:
    """Docker's restart count over the crash-loop window: a sample each time aegis sees it
    rise, the newest one older than the window kept as the baseline; a count that fell (a
    start by hand resets it) starts again from there."""
    if not samples or count < samples[-1][1]:
        return ((now, count, exit_code),)
    kept = list(samples)
    if count > samples[-1][1]:
        kept.append((now, count, exit_code))
    old = [s for s in kept if now - s[0] >= CRASH_LOOP_WINDOW]
    return tuple(old[-1:] + [s for s in kept if now - s[0] < CRASH_LOOP_WINDOW])


def restarts_in_window(samples: Sequence[Sample], now: datetime) -> int:
    """How many times Docker restarted the container within the window."""
    if not samples:
        return 0
    baseline = samples[0][1]
    return samples[-1][1] - baseline if now - samples[-1][0] < CRASH_LOOP_WINDOW else 0


def exit_codes(samples: Sequence[Sample]) -> list[int]:
    """The exit codes of the latest crashes, oldest first."""
    return [code for _, _, code in samples[1:] if code is not None][-_MAX_EXIT_CODES:]


def crash_loop(samples: Sequence[Sample], restart_policy: str | None, now: datetime) -> bool:
    """Docker's restart policy keeps restarting it: its count rose CRASH_LOOP_RESTARTS
    times within the window."""
    return (restart_policy not in (None, "no")
            and restarts_in_window(samples, now) >= CRASH_LOOP_RESTARTS)
