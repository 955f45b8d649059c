"""The three-strike protocol as a pure function.

``decide(state, observed, policy, now)`` looks at one container's persisted strike state
and what Docker reports about it now, and returns the action to take and the state to
persist. It never reads a clock and never talks to Docker or the database.

    unhealthy ............ strike 1 (record)
    + strike interval .... strike 2: restart (within the hourly budget, after the back-off)
    + strike interval .... strike 3: escalate, then nothing until ``aegis ack`` or healthy
    healthy for the stable period ... recover (strikes reset)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from aegis.core.config import RemediationMode

Phase = Literal["ok", "striking", "restarting", "escalated"]
Action = Literal["none", "strike1", "restart", "escalate", "recover", "reset"]
BUDGET_WINDOW = timedelta(hours=1)
# Exit codes of a process stopped by SIGINT, SIGKILL or SIGTERM: a person or a tool stopped
# it (an OOM kill is told apart by State.OOMKilled).
SIGNAL_EXIT_CODES = frozenset({130, 137, 143})
# After aegis restarts a container, a not-running state this long after is the restart
# itself, not a crash.
RESTART_GRACE_S = 30.0


@dataclass(frozen=True)
class StrikeState:
    """What aegis remembers about one container (the strike columns of ``containers``)."""

    phase: Phase = "ok"
    strikes: int = 0
    incident: int = 0
    strike_at: datetime | None = None  # time of the latest strike
    healthy_since: datetime | None = None
    restarts: tuple[datetime, ...] = ()  # aegis's restarts, oldest first


@dataclass(frozen=True)
class Observed:
    """What Docker reports now."""

    status: str  # State.Status: created, running, paused, restarting, removing, exited, dead
    health: str  # healthy, unhealthy, starting, none
    exit_code: int | None = None
    oom_killed: bool = False
    stopped_by_user: bool = False  # a stop or kill request was seen since the last start
    stop_requested_at: datetime | None = None  # when that request was seen
    restart_policy: str | None = None  # no, always, unless-stopped, on-failure[:N]; None: unknown
    docker_restart_count: int = 0  # restarts Docker made itself since the last start by hand


@dataclass(frozen=True)
class Policy:
    """Settings and labels that apply to one container."""

    remediation: RemediationMode = RemediationMode.ON
    strike_interval_s: float = 60.0
    max_restarts_per_hour: int = 3
    backoff_s: float = 10.0
    backoff_max_s: float = 300.0
    stable_period_s: float = 120.0
    stop_timeout_s: float = 10.0
    protected: bool = False
    maintenance: bool = False
    ignored: bool = False


@dataclass(frozen=True)
class Decision:
    action: Action
    state: StrikeState
    reason: str = ""
    next_check_at: datetime | None = None  # when deciding again may change something


def backoff_s(restarts_in_window: int, policy: Policy) -> float:
    """Wait required after the latest restart: 10 s, 20 s, 40 s ... up to the maximum."""
    if restarts_in_window <= 0:
        return 0.0
    return float(min(policy.backoff_s * 2 ** (restarts_in_window - 1), policy.backoff_max_s))


def gave_up(observed: Observed) -> str | None:
    """Why Docker will not bring this container back by itself, or None.

    The status decides, whatever the restart policy: Docker shows a container it is going
    to restart (``always``, ``unless-stopped``, ``on-failure`` with retries left) as
    ``restarting`` through its restart delay, and as ``exited`` only once it has stopped
    restarting it: policy ``no``, ``on-failure:N`` with its N retries used, or a restart
    of its own that failed (a bind-mount source gone, say), which it never tries again.
    So an ``exited`` container that crashed (not stopped by a person, not a clean exit,
    not a stop signal) has no restart coming. The policy and Docker's restart count only
    go into the reason.
    """
    if observed.status == "dead":
        return "container is dead"
    if observed.status != "exited" or observed.stopped_by_user:
        return None
    code = observed.exit_code
    if code is None or code == 0:
        return None
    if code in SIGNAL_EXIT_CODES and not observed.oom_killed:
        return None
    cause = "out of memory" if observed.oom_killed else f"exit code {code}"
    return f"container exited ({cause}) and Docker is not restarting it{_policy(observed)}"


def _policy(observed: Observed) -> str:
    if observed.restart_policy is None:
        return ""
    count = observed.docker_restart_count
    if count == 0:
        return f" (restart policy {observed.restart_policy})"
    return (f" (restart policy {observed.restart_policy}, {count} restart"
            f"{'' if count == 1 else 's'} by Docker)")


class SupervisionMode(StrEnum):
    """What aegis does with a container, from its labels, scope and health check."""

    SUPERVISED = "supervised"
    PROTECTED = "protected"  # struck and escalated, never restarted
    IGNORED = "ignored"


def display_state(phase: str, *, supervision: str, maintenance: bool) -> str:
    """The state shown to operators: a phase (ok, striking, restarting, escalated), or
    maintenance, protected or ignored."""
    if supervision == SupervisionMode.IGNORED:
        return SupervisionMode.IGNORED.value
    if maintenance:
        return "maintenance"
    if phase != "ok":
        return phase
    return (SupervisionMode.PROTECTED.value if supervision == SupervisionMode.PROTECTED
            else "ok")


def _after(moment: datetime | None, seconds: float) -> datetime | None:
    return None if moment is None else moment + timedelta(seconds=seconds)


def decide(state: StrikeState, observed: Observed, policy: Policy, now: datetime) -> Decision:
    """The next action for one container. Pure: same inputs, same answer."""
    state = replace(state, restarts=tuple(t for t in state.restarts
                                          if now - t < BUDGET_WINDOW))
    if policy.ignored or policy.remediation == RemediationMode.OFF:
        if state.phase != "ok" or state.strikes:
            return Decision("reset", StrikeState(incident=state.incident,
                                                 restarts=state.restarts), "not supervised")
        return Decision("none", state)
    if policy.maintenance:
        return Decision("none", state, "maintenance")
    stopping_until = _stopping_until(observed, policy)
    if stopping_until is not None and now < stopping_until:
        # a probe cut short by the stop reports unhealthy: not a strike
        return Decision("none", state, "being stopped", stopping_until)

    if observed.status != "running":
        return _not_running(state, observed, policy, now)
    if observed.health == "unhealthy":
        return _unhealthy(state, policy, now)
    if observed.health in ("healthy", "none"):
        return _healthy(state, policy, now)
    # starting: wait for a verdict; a restarted container is judged after its interval
    return Decision("none", state, "health check starting",
                    _after(state.strike_at, policy.strike_interval_s)
                    if state.phase in ("striking", "restarting") else None)


def _stopping_until(observed: Observed, policy: Policy) -> datetime | None:
    """Until when a container asked to stop is still shutting down, or None. Bounded by
    its stop timeout, so a stop signal it ignored does not hide it from the protocol."""
    if observed.status != "running" or not observed.stopped_by_user:
        return None
    return _after(observed.stop_requested_at, policy.stop_timeout_s + RESTART_GRACE_S)


def _not_running(state: StrikeState, observed: Observed, policy: Policy,
                 now: datetime) -> Decision:
    if (state.phase == "restarting" and state.strike_at is not None
            and now - state.strike_at < timedelta(seconds=policy.stop_timeout_s
                                                  + RESTART_GRACE_S)):
        return Decision("none", state, "restart in progress",
                        _after(state.strike_at, policy.stop_timeout_s + RESTART_GRACE_S))
    reason = gave_up(observed)
    if reason is None or state.phase == "escalated":
        return Decision("none", replace(state, healthy_since=None), "not running")
    incident = state.incident if state.phase != "ok" else state.incident + 1
    return Decision("escalate", replace(state, phase="escalated", strikes=3, incident=incident,
                                        strike_at=now, healthy_since=None), reason)


def _unhealthy(state: StrikeState, policy: Policy, now: datetime) -> Decision:
    state = replace(state, healthy_since=None)
    interval = timedelta(seconds=policy.strike_interval_s)
    if state.phase == "ok":
        return Decision("strike1", replace(state, phase="striking", strikes=1,
                                           incident=state.incident + 1, strike_at=now),
                        "unhealthy", now + interval)
    if state.phase == "escalated":
        return Decision("none", state, "escalated: waiting for ack or recovery")
    assert state.strike_at is not None
    due = state.strike_at + interval
    if now < due:
        return Decision("none", state, "within the strike interval", due)
    if state.phase == "restarting":
        return _escalate(state, now, "still unhealthy one strike interval after the restart")
    # striking: strike 2
    if policy.protected:
        return _escalate(state, now, "protected: aegis never restarts it")
    if policy.remediation == RemediationMode.OBSERVE:
        return _escalate(state, now, "observe mode: no restart")
    if len(state.restarts) >= policy.max_restarts_per_hour:
        return _escalate(state, now, f"restart budget spent ({len(state.restarts)} restarts "
                                     f"in the last hour, at most {policy.max_restarts_per_hour})")
    if state.restarts:
        allowed = state.restarts[-1] + timedelta(seconds=backoff_s(len(state.restarts),
                                                                   policy))
        if now < allowed:
            return Decision("none", state, "restart back-off", allowed)
    return Decision("restart", replace(state, phase="restarting", strikes=2, strike_at=now,
                                       restarts=(*state.restarts, now)),
                    "still unhealthy one strike interval after strike 1", now + interval)


def _escalate(state: StrikeState, now: datetime, reason: str) -> Decision:
    return Decision("escalate", replace(state, phase="escalated", strikes=3, strike_at=now),
                    reason)


def _healthy(state: StrikeState, policy: Policy, now: datetime) -> Decision:
    if state.phase == "ok":
        return Decision("none", replace(state, healthy_since=None))
    stable = timedelta(seconds=policy.stable_period_s)
    if state.healthy_since is None:
        return Decision("none", replace(state, healthy_since=now), "healthy, waiting",
                        now + stable)
    if now - state.healthy_since < stable:
        return Decision("none", state, "healthy, waiting", state.healthy_since + stable)
    seconds = (now - state.healthy_since).total_seconds()
    return Decision("recover", StrikeState(incident=state.incident, restarts=state.restarts),
                    f"healthy for {seconds:.0f}s")
