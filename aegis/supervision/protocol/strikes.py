"""The three-strike protocol as a pure function.

``decide(state, observed, policy, now)`` looks at one container's persisted strike state
and what Docker reports about it now, and returns the action to take and the state to
persist. It never reads a clock and never talks to Docker or the database.

    unhealthy ............ strike 1 (record)
    + strike interval .... strike 2: restart (within the hourly budget, after the back-off)
    + strike interval .... strike 3: escalate, then nothing until ``aegis ack`` or healthy
    healthy for the stable period ... recover (strikes reset)

Triage (aegis/supervision/protocol/triage.py) bends it: a broken probe escalates at strike 2
without a restart, a probe that times out every time (a hung application) is restarted as
usual and its escalation says so, an OOM kill is restarted at most once an hour, a crash loop under
Docker's restart policy escalates at once and is never restarted. A dependant whose
parent is in an incident is folded into it (``fold``): never restarted or escalated while
the parent's incident is open, healed (strike 2) after it. A Swarm task is only observed.

A container's healing ladder (``aegis.heal``) adds a rung above the restart: when the
restart did not help and the container has had ``aegis.heal.recreate-after`` restarts in
the hour, it is recreated (``recreate``) or its compose project is restarted (``stack``),
once per incident, before the escalation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from aegis.core.config import RemediationMode
from aegis.supervision.protocol import triage
from aegis.supervision.protocol.triage import Sample, TriageClass


class Phase(StrEnum):
    """Where a container stands in the protocol (the ``containers.phase`` column)."""

    OK = "ok"
    STRIKING = "striking"  # strike 1 recorded
    RESTARTING = "restarting"  # strike 2: restarted, judged one interval later
    ESCALATED = "escalated"  # strike 3: a person's, until ``aegis ack`` or healthy again


class Action(StrEnum):
    """What a decision does (the ``containers.last_action`` column, and the counts of a
    sweep)."""

    NONE = "none"
    STRIKE1 = "strike1"
    RESTART = "restart"
    ESCALATE = "escalate"
    RECOVER = "recover"
    RESET = "reset"  # no longer supervised: strikes reset
    FOLD = "fold"  # a dependant's incident folded into its parent's
    RECREATE = "recreate"  # the ladder's rung above a restart: a new container
    RESTART_STACK = "restart_stack"  # the ladder's rung: its compose project restarted


class HealMode(StrEnum):
    """The healing ladder's top rung (``aegis.heal``): restart only, or a recreate or
    a restart of the compose project when restarts did not help."""

    RESTART = "restart"
    RECREATE = "recreate"
    STACK = "stack"


# The actions that act on a container in the restarter (saved first, made once).
INTERVENTIONS = frozenset({Action.RESTART, Action.RECREATE, Action.RESTART_STACK})


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

    phase: Phase = Phase.OK
    strikes: int = 0
    incident: int = 0
    strike_at: datetime | None = None  # time of the latest strike
    healthy_since: datetime | None = None
    restarts: tuple[datetime, ...] = ()  # aegis's restarts, oldest first
    incident_class: TriageClass | None = None  # the open (or latest) incident's
    folded_into: str | None = None  # the parent whose incident this one waits for
    oom_restart_at: datetime | None = None  # aegis's latest restart for lack of memory
    docker_restarts: tuple[Sample, ...] = ()  # Docker's restart count over the window
    climbed_at: datetime | None = None  # the open incident's recreate or stack restart


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
    inspected: bool = False  # from an inspect: the restart count and triage can be trusted
    oom: bool = False  # killed for lack of memory since it last started (triage.oom_killed)
    probe_problem: str | None = None  # why its health check cannot work (triage.broken_probe)
    # the probe's timeout, when every probe since the start exceeded it (triage.hung_timeout_s)
    hung_timeout_s: float | None = None
    parent_incident: str | None = None  # a container it depends on, in an open incident


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
    # the end of the maintenance window under way (None: none, or a pause with no timer)
    maintenance_until: datetime | None = None
    ignored: bool = False
    orchestrated: bool = False  # a Swarm task: Swarm replaces it, aegis only observes
    heal: HealMode = HealMode.RESTART
    recreate_after: int = 1  # restarts in the hour that did not help before the next rung


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
    ORCHESTRATED = "orchestrated"  # a Swarm task: struck and recorded, never acted on
    IGNORED = "ignored"


class ShownState(StrEnum):
    """The state operators see (the ``containers.state`` column): a phase, or why aegis
    does not act."""

    OK = "ok"
    STRIKING = "striking"
    RESTARTING = "restarting"
    ESCALATED = "escalated"
    MAINTENANCE = "maintenance"
    PROTECTED = "protected"
    ORCHESTRATED = "orchestrated"
    IGNORED = "ignored"


def shown_state(phase: Phase, *, supervision: SupervisionMode, maintenance: bool
                ) -> ShownState:
    """The state shown to operators: a phase (ok, striking, restarting, escalated), or
    maintenance, protected, orchestrated or ignored."""
    if supervision == SupervisionMode.IGNORED:
        return ShownState.IGNORED
    if maintenance:
        return ShownState.MAINTENANCE
    if phase != Phase.OK:
        return ShownState(phase.value)
    if supervision in (SupervisionMode.PROTECTED, SupervisionMode.ORCHESTRATED):
        return ShownState(supervision.value)
    return ShownState.OK


def _after(moment: datetime | None, seconds: float) -> datetime | None:
    return None if moment is None else moment + timedelta(seconds=seconds)


def decide(state: StrikeState, observed: Observed, policy: Policy, now: datetime) -> Decision:
    """The next action for one container. Pure: same inputs, same answer."""
    state = replace(state, restarts=tuple(t for t in state.restarts
                                          if now - t < BUDGET_WINDOW))
    for gate in (_unsupervised, _in_maintenance, _being_stopped):
        decision = gate(state, observed, policy, now)
        if decision is not None:
            return decision
    state = _triaged(state, observed, now)
    if policy.orchestrated:
        return _orchestrated(state, observed, policy, now)
    if state.phase != Phase.ESCALATED and triage.crash_loop(state.docker_restarts,
                                                            observed.restart_policy, now):
        return _crash_loop(state, observed, now)
    return _by_health(state, observed, policy, now)


def _by_health(state: StrikeState, observed: Observed, policy: Policy,
               now: datetime) -> Decision:
    """The protocol proper, by what Docker says of the container now."""
    if observed.status != "running":
        return _not_running(state, observed, policy, now)
    if observed.health == "unhealthy":
        return _unhealthy(state, observed, policy, now)
    if observed.health in ("healthy", "none"):
        return _healthy(state, policy, now)
    return _starting(state, policy)


def _unsupervised(state: StrikeState, observed: Observed, policy: Policy,
                  now: datetime) -> Decision | None:
    """Not (or no longer) supervised: strikes reset, the incident's history kept."""
    if not (policy.ignored or policy.remediation == RemediationMode.OFF):
        return None
    if state.phase != Phase.OK or state.strikes:
        return Decision(Action.RESET, StrikeState(incident=state.incident,
                                                  restarts=state.restarts,
                                                  incident_class=state.incident_class,
                                                  oom_restart_at=state.oom_restart_at),
                        "not supervised")
    return Decision(Action.NONE, state)


def _in_maintenance(state: StrikeState, observed: Observed, policy: Policy,
                    now: datetime) -> Decision | None:
    """Nothing at all while in maintenance; a window's end is when to judge it afresh."""
    if not policy.maintenance:
        return None
    return Decision(Action.NONE, state, "maintenance", policy.maintenance_until)


def _being_stopped(state: StrikeState, observed: Observed, policy: Policy,
                   now: datetime) -> Decision | None:
    """A probe cut short by a stop reports unhealthy: not a strike."""
    stopping_until = _stopping_until(observed, policy)
    if stopping_until is not None and now < stopping_until:
        return Decision(Action.NONE, state, "being stopped", stopping_until)
    return None


def _starting(state: StrikeState, policy: Policy) -> Decision:
    """Its health check has no verdict yet: wait; a restarted container is judged after
    its interval."""
    in_incident = state.phase in (Phase.STRIKING, Phase.RESTARTING)
    return Decision(Action.NONE, state, "health check starting",
                    _after(state.strike_at, policy.strike_interval_s) if in_incident else None)


def _stopping_until(observed: Observed, policy: Policy) -> datetime | None:
    """Until when a container asked to stop is still shutting down, or None. Bounded by
    its stop timeout, so a stop signal it ignored does not hide it from the protocol."""
    if observed.status != "running" or not observed.stopped_by_user:
        return None
    return _after(observed.stop_requested_at, policy.stop_timeout_s + RESTART_GRACE_S)


def _not_running(state: StrikeState, observed: Observed, policy: Policy,
                 now: datetime) -> Decision:
    if (state.phase == Phase.RESTARTING and state.strike_at is not None
            and now - state.strike_at < timedelta(seconds=policy.stop_timeout_s
                                                  + RESTART_GRACE_S)):
        return Decision(Action.NONE, state, "restart in progress",
                        _after(state.strike_at, policy.stop_timeout_s + RESTART_GRACE_S))
    reason = gave_up(observed)
    if reason is None or state.phase == Phase.ESCALATED:
        return Decision(Action.NONE, replace(state, healthy_since=None), "not running")
    triage_class = TriageClass.OOM if observed.oom else TriageClass.EXITED
    return _escalate(replace(_opened(state, triage_class), healthy_since=None), now, reason)


def _triaged(state: StrikeState, observed: Observed, now: datetime) -> StrikeState:
    """``state`` with Docker's restart count noted and the open incident's class: a
    specific class (broken probe, OOM, crash loop) stays the incident's once seen."""
    if not observed.inspected:
        return state
    samples = triage.restart_samples(state.docker_restarts, observed.docker_restart_count,
                                     observed.exit_code, now)
    state = replace(state, docker_restarts=samples)
    if state.phase == Phase.OK:
        return state
    found = _class_of(observed)
    if found in _PASSING_CLASSES and state.incident_class not in (None, *_PASSING_CLASSES):
        return state
    return replace(state, incident_class=found)


# Classes that follow the latest inspect: a probe that timed out before and fails now (or
# the other way round) changes the incident's class; the others stay once seen.
_PASSING_CLASSES = (TriageClass.UNHEALTHY, TriageClass.HUNG)


def _class_of(observed: Observed) -> TriageClass:
    if observed.oom:
        return TriageClass.OOM
    if observed.probe_problem is not None:
        return TriageClass.BROKEN_PROBE
    if observed.hung_timeout_s is not None:
        return TriageClass.HUNG
    return TriageClass.UNHEALTHY


def _opened(state: StrikeState, triage_class: TriageClass) -> StrikeState:
    """``state`` with an incident open: a new one (of ``triage_class``) unless one is."""
    if state.phase != Phase.OK:
        return replace(state, incident_class=state.incident_class or triage_class)
    return replace(state, incident=state.incident + 1, incident_class=triage_class,
                   folded_into=None, climbed_at=None)


def _crash_loop(state: StrikeState, observed: Observed, now: datetime) -> Decision:
    """Docker keeps restarting it: escalate once (aegis's restarts would only add to
    Docker's), then leave it to Docker and a person, until it stays up (a recovery)."""
    count = triage.restarts_in_window(state.docker_restarts, now)
    codes = ", ".join(str(c) for c in triage.exit_codes(state.docker_restarts)) or "unknown"
    minutes = int(triage.CRASH_LOOP_WINDOW.total_seconds() // 60)
    return _escalate(
        replace(_opened(state, TriageClass.CRASH_LOOP), incident_class=TriageClass.CRASH_LOOP),
        now, f"crash loop: Docker restarted it {count} times within {minutes} min under its "
             f"restart policy {observed.restart_policy} (last exit codes {codes}); aegis "
             "adds no restarts of its own")


def _orchestrated(state: StrikeState, observed: Observed, policy: Policy,
                  now: datetime) -> Decision:
    """A Swarm task: strike 1 and the recovery are recorded; Swarm replaces unhealthy
    tasks, so aegis never restarts or escalates one."""
    replaced = "a Swarm task: Swarm replaces it"
    if observed.status == "running" and observed.health == "unhealthy":
        if state.phase != Phase.OK:
            return Decision(Action.NONE, replace(state, healthy_since=None), replaced)
        struck = replace(_opened(state, TriageClass.UNHEALTHY), phase=Phase.STRIKING,
                         strikes=1, strike_at=now, healthy_since=None)
        return Decision(Action.STRIKE1, struck,
                        "unhealthy; Swarm replaces its unhealthy tasks, aegis only observes")
    if observed.status == "running" and observed.health in ("healthy", "none"):
        return _healthy(state, policy, now)
    return Decision(Action.NONE, state, replaced)


def _unhealthy(state: StrikeState, observed: Observed, policy: Policy,
               now: datetime) -> Decision:
    """Strike 1, then, one strike interval later, strike 2 (``_strike_two``) or, after a
    restart, strike 3; a dependant of a parent in an incident waits for that one."""
    state = replace(state, healthy_since=None)
    interval = timedelta(seconds=policy.strike_interval_s)
    parent = observed.parent_incident
    if state.phase == Phase.OK:
        return _strike_one(state, observed, now, interval)
    if state.phase == Phase.ESCALATED:
        return Decision(Action.NONE, state, "escalated: waiting for ack or recovery")
    assert state.strike_at is not None
    due = state.strike_at + interval
    if now < due:
        return Decision(Action.NONE, state, "within the strike interval", due)
    if parent is not None:
        return _fold(state, parent, now, interval)
    if state.phase == Phase.RESTARTING:
        return _climb(state, observed, policy, now) or _escalate(
            state, now, _strike_three_reason(state, observed, policy))
    return _strike_two(state, observed, policy, now)


def _strike_one(state: StrikeState, observed: Observed, now: datetime,
                interval: timedelta) -> Decision:
    parent = observed.parent_incident
    opened = replace(_opened(state, _class_of(observed)), folded_into=parent)
    reason = (f"unhealthy; {parent}, which it depends on, is in an incident" if parent
              else "unhealthy")
    return Decision(Action.STRIKE1, replace(opened, phase=Phase.STRIKING, strikes=1,
                                            strike_at=now), reason, now + interval)


def _strike_two(state: StrikeState, observed: Observed, policy: Policy,
                now: datetime) -> Decision:
    """Still unhealthy one interval after strike 1: a restart, unless one is refused
    (escalated at once) or the back-off after the latest restart still runs."""
    refusal = _restart_refused(state, observed, policy, now)
    if refusal is not None:
        return _escalate(state, now, refusal)
    if state.restarts:
        allowed = state.restarts[-1] + timedelta(seconds=backoff_s(len(state.restarts),
                                                                   policy))
        if now < allowed:
            return Decision(Action.NONE, state, "restart back-off", allowed)
    oom = state.incident_class == TriageClass.OOM
    restarted = replace(state, phase=Phase.RESTARTING, strikes=2, strike_at=now,
                        restarts=(*state.restarts, now), folded_into=None,
                        oom_restart_at=now if oom else state.oom_restart_at)
    return Decision(Action.RESTART, restarted, _restart_reason(state, observed),
                    now + timedelta(seconds=policy.strike_interval_s))


def _climb(state: StrikeState, observed: Observed, policy: Policy,
           now: datetime) -> Decision | None:
    """The healing ladder, when a restart did not help: another restart while fewer than
    ``recreate_after`` were made in the hour, then (once per incident) a recreate or a
    restart of the compose project; None when the ladder has no rung left (escalate)."""
    if policy.heal == HealMode.RESTART or state.climbed_at is not None:
        return None
    if _restart_refused(state, observed, replace(policy, max_restarts_per_hour=1 << 30),
                        now) is not None:
        return None  # protected, observe mode, a broken probe, an OOM loop: no rung helps
    if len(state.restarts) < policy.recreate_after:
        return _strike_two(state, observed, policy, now)
    action = Action.RECREATE if policy.heal == HealMode.RECREATE else Action.RESTART_STACK
    climbed = replace(state, phase=Phase.RESTARTING, strikes=2, strike_at=now,
                      restarts=(*state.restarts, now), climbed_at=now)
    count = len(state.restarts)
    reason = (f"still unhealthy after {count} restart{'' if count == 1 else 's'} this hour: "
              + ("recreated from its image (a fresh writable layer)"
                 if action == Action.RECREATE else "its compose project restarted in order"))
    return Decision(action, climbed, reason, now + timedelta(seconds=policy.strike_interval_s))


def _restart_refused(state: StrikeState, observed: Observed, policy: Policy,
                     now: datetime) -> str | None:
    """Why strike 2 escalates instead of restarting, or None."""
    if policy.protected:
        return "protected: aegis never restarts it"
    if policy.remediation == RemediationMode.OBSERVE:
        return "observe mode: no restart"
    if observed.probe_problem is not None:
        return ("the health check command is broken, a restart cannot help: "
                f"{observed.probe_problem}")
    if (state.incident_class == TriageClass.OOM and state.oom_restart_at is not None
            and now - state.oom_restart_at < BUDGET_WINDOW):
        return ("killed for lack of memory again within an hour of aegis's restart: no "
                "restart in a loop")
    if len(state.restarts) >= policy.max_restarts_per_hour:
        return (f"restart budget spent ({len(state.restarts)} restarts in the last hour, at "
                f"most {policy.max_restarts_per_hour})")
    return None


def _restart_reason(state: StrikeState, observed: Observed) -> str:
    if state.folded_into is not None:
        return f"still unhealthy after {state.folded_into}'s incident ended"
    if state.incident_class == TriageClass.HUNG and observed.hung_timeout_s is not None:
        return (f"the health check has timed out every time since the container started "
                f"(timeout {observed.hung_timeout_s:g}s): restarted, as a hung application")
    if state.incident_class == TriageClass.OOM:
        return "killed for lack of memory: restarted once"
    return "still unhealthy one strike interval after strike 1"


def _strike_three_reason(state: StrikeState, observed: Observed, policy: Policy) -> str:
    """Why a container still unhealthy one interval after its restart is escalated."""
    if state.climbed_at is not None:
        return ("still unhealthy one strike interval after " + (
            "it was recreated" if policy.heal == HealMode.RECREATE
            else "its compose project was restarted"))
    if state.incident_class == TriageClass.HUNG and observed.hung_timeout_s is not None:
        return (f"the health check timed out every time since the restart (timeout "
                f"{observed.hung_timeout_s:g}s): the application hangs, or the probe needs "
                "longer than its timeout")
    return "still unhealthy one strike interval after the restart"


def _fold(state: StrikeState, parent: str, now: datetime, interval: timedelta) -> Decision:
    """A dependant whose parent is in an incident: neither restarted nor escalated until
    the parent's incident ends; then strike 2 (a restart) heals it if still needed."""
    folded = replace(state, phase=Phase.STRIKING, strikes=1, strike_at=now,
                     folded_into=parent)
    action = Action.NONE if state.folded_into == parent else Action.FOLD
    return Decision(action, folded, f"waits for {parent}, whose incident it depends on",
                    now + interval)


def _escalate(state: StrikeState, now: datetime, reason: str) -> Decision:
    return Decision(Action.ESCALATE, replace(state, phase=Phase.ESCALATED, strikes=3,
                                             strike_at=now), reason)


def _healthy(state: StrikeState, policy: Policy, now: datetime) -> Decision:
    if state.phase == Phase.OK:
        return Decision(Action.NONE, replace(state, healthy_since=None))
    stable = timedelta(seconds=policy.stable_period_s)
    # a restart by Docker's policy since the healthy stretch began ends it: a crash loop
    # seen healthy between two of its crashes has not recovered
    restarted = (bool(state.docker_restarts) and state.healthy_since is not None
                 and state.docker_restarts[-1][0] > state.healthy_since)
    if state.healthy_since is None or restarted:
        return Decision(Action.NONE, replace(state, healthy_since=now), "healthy, waiting",
                        now + stable)
    if now - state.healthy_since < stable:
        return Decision(Action.NONE, state, "healthy, waiting", state.healthy_since + stable)
    seconds = (now - state.healthy_since).total_seconds()
    return Decision(Action.RECOVER, StrikeState(incident=state.incident,
                                                restarts=state.restarts,
                                                incident_class=state.incident_class,
                                                oom_restart_at=state.oom_restart_at,
                                                docker_restarts=state.docker_restarts[-1:]),
                    f"healthy for {seconds:.0f}s")
