"""The three-strike protocol as a pure function, driven by tables of datetimes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from aegis.core.config import RemediationMode
from aegis.supervision.protocol.strikes import (
    RESTART_GRACE_S,
    Decision,
    Observed,
    Phase,
    Policy,
    StrikeState,
    SupervisionMode,
    backoff_s,
    decide,
    gave_up,
    shown_state,
)
from tests.support.protocol import POLICY, T0, at, run

UNHEALTHY = Observed("running", "unhealthy")
HEALTHY = Observed("running", "healthy")
STARTING = Observed("running", "starting")


def actions(decisions: list[Decision]) -> list[str]:
    return [d.action for d in decisions]


def test_unhealthy_throughout_strikes_restarts_then_escalates() -> None:
    decisions = run([(0, UNHEALTHY), (30, UNHEALTHY), (60, UNHEALTHY), (90, UNHEALTHY),
                     (120, UNHEALTHY), (600, UNHEALTHY)])
    assert actions(decisions) == ["strike1", "none", "restart", "none", "escalate", "none"]
    strike1, waiting, restart, after_restart, escalate, escalated = decisions
    assert (strike1.state.phase, strike1.state.strikes, strike1.state.incident) == \
        ("striking", 1, 1)
    assert strike1.next_check_at == at(60)
    assert waiting.next_check_at == at(60)
    assert restart.state.restarts == (at(60),)
    assert (restart.state.phase, restart.state.strikes) == ("restarting", 2)
    assert restart.next_check_at == at(120)
    assert after_restart.next_check_at == at(120)
    assert (escalate.state.phase, escalate.state.strikes) == ("escalated", 3)
    assert escalate.reason == "still unhealthy one strike interval after the restart"
    assert escalated.state == escalate.state
    assert escalated.next_check_at is None


def test_healing_after_the_restart_recovers_without_escalation() -> None:
    decisions = run([(0, UNHEALTHY), (60, UNHEALTHY), (65, STARTING), (75, HEALTHY),
                     (120, HEALTHY), (194, HEALTHY), (195, HEALTHY), (300, HEALTHY)])
    assert actions(decisions) == ["strike1", "restart", "none", "none", "none", "none",
                                  "recover", "none"]
    assert decisions[2].next_check_at == at(120)  # starting: judged one interval after
    assert decisions[3].state.healthy_since == at(75)
    assert decisions[3].next_check_at == at(195)
    recovered = decisions[6].state
    assert (recovered.phase, recovered.strikes, recovered.incident) == ("ok", 0, 1)
    assert recovered.restarts == (at(60),)  # the hourly budget remembers the restart


def test_a_relapse_during_the_stable_period_restarts_the_wait() -> None:
    decisions = run([(0, UNHEALTHY), (20, HEALTHY), (40, UNHEALTHY), (60, UNHEALTHY)])
    assert actions(decisions) == ["strike1", "none", "none", "restart"]
    assert decisions[1].state.healthy_since == at(20)
    assert decisions[2].state.healthy_since is None


def test_healthy_before_strike_two_recovers_after_the_stable_period() -> None:
    decisions = run([(0, UNHEALTHY), (10, HEALTHY), (129, HEALTHY), (130, HEALTHY)])
    assert actions(decisions) == ["strike1", "none", "none", "recover"]
    assert decisions[3].reason == "healthy for 120s"


@pytest.mark.parametrize(("restart_offsets_s", "now_s", "expected", "next_check_s"), [
    # no earlier restart: restart at once
    ((), 0, "restart", 60),
    # one restart 5 s ago: back-off 10 s
    ((-5,), 0, "none", 5),
    ((-10,), 0, "restart", 60),
    # two restarts: back-off 20 s after the latest
    ((-100, -15), 0, "none", 5),
    ((-100, -20), 0, "restart", 60),
    # restarts older than an hour do not count
    ((-3700, -3650, -3601), 0, "restart", 60),
])
def test_restart_back_off(restart_offsets_s: tuple[float, ...], now_s: float, expected: str,
                          next_check_s: float) -> None:
    policy = replace(POLICY, max_restarts_per_hour=5)
    state = StrikeState(phase=Phase.STRIKING, strikes=1, incident=4, strike_at=at(now_s - 60),
                        restarts=tuple(at(s) for s in restart_offsets_s))
    decision = decide(state, UNHEALTHY, policy, at(now_s))
    assert decision.action == expected
    assert decision.next_check_at == at(next_check_s)


@pytest.mark.parametrize(("restarts", "seconds"), [
    (0, 0), (1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 300), (20, 300),
])
def test_backoff_doubles_from_ten_seconds_to_five_minutes(restarts: int, seconds: float) -> None:
    assert backoff_s(restarts, POLICY) == seconds


def test_a_spent_budget_escalates_instead_of_restarting() -> None:
    state = StrikeState(phase=Phase.STRIKING, strikes=1, incident=2, strike_at=at(-60),
                        restarts=(at(-3000), at(-2000), at(-1000)))
    decision = decide(state, UNHEALTHY, POLICY, T0)
    assert decision.action == "escalate"
    assert decision.reason == "restart budget spent (3 restarts in the last hour, at most 3)"
    assert decision.state.restarts == state.restarts


def test_a_budget_of_zero_never_restarts() -> None:
    decisions = run([(0, UNHEALTHY), (60, UNHEALTHY)],
                    policy=replace(POLICY, max_restarts_per_hour=0))
    assert actions(decisions) == ["strike1", "escalate"]


@pytest.mark.parametrize(("policy", "reason"), [
    (replace(POLICY, protected=True), "protected: aegis never restarts it"),
    (replace(POLICY, remediation=RemediationMode.OBSERVE), "observe mode: no restart"),
])
def test_protected_and_observe_strike_and_escalate_but_never_restart(
        policy: Policy, reason: str) -> None:
    decisions = run([(0, UNHEALTHY), (60, UNHEALTHY), (120, UNHEALTHY)], policy=policy)
    assert actions(decisions) == ["strike1", "escalate", "none"]
    assert decisions[1].reason == reason


def test_maintenance_pauses_everything_and_keeps_the_strikes() -> None:
    state = StrikeState(phase=Phase.STRIKING, strikes=1, incident=1, strike_at=at(-600))
    decision = decide(state, UNHEALTHY, replace(POLICY, maintenance=True), T0)
    assert decision.action == "none"
    assert decision.state == state


@pytest.mark.parametrize("policy", [replace(POLICY, ignored=True),
                                    replace(POLICY, remediation=RemediationMode.OFF)])
def test_unsupervised_containers_have_their_strikes_reset(policy: Policy) -> None:
    state = StrikeState(phase=Phase.STRIKING, strikes=1, incident=7, strike_at=at(-10),
                        restarts=(at(-100),))
    decision = decide(state, UNHEALTHY, policy, T0)
    assert decision.action == "reset"
    assert decision.state == StrikeState(incident=7, restarts=(at(-100),))
    assert decide(decision.state, UNHEALTHY, policy, T0).action == "none"


@pytest.mark.parametrize(("observed", "reason"), [
    (Observed("dead", "none"), "container is dead"),
    (Observed("exited", "none", exit_code=1),
     "container exited (exit code 1) and Docker is not restarting it"),
    (Observed("exited", "none", exit_code=137, oom_killed=True),
     "container exited (out of memory) and Docker is not restarting it"),
    (Observed("exited", "none", exit_code=0), None),
    (Observed("exited", "none", exit_code=143), None),
    (Observed("exited", "none", exit_code=137), None),
    (Observed("exited", "none", exit_code=1, stopped_by_user=True), None),
    (Observed("restarting", "none", exit_code=1), None),
    (Observed("paused", "unhealthy"), None),
])
def test_gave_up(observed: Observed, reason: str | None) -> None:
    assert gave_up(observed) == reason


EXITED_1 = Observed("exited", "none", exit_code=1)
RESTARTING_1 = Observed("restarting", "none", exit_code=1)


@pytest.mark.parametrize(("observed", "reason"), [
    # Docker is restarting it (in its restart delay, or started again): Docker's to handle
    (replace(RESTARTING_1, restart_policy="always", docker_restart_count=5), None),
    (replace(RESTARTING_1, restart_policy="unless-stopped", docker_restart_count=1), None),
    (replace(RESTARTING_1, restart_policy="on-failure", docker_restart_count=40), None),
    (replace(RESTARTING_1, restart_policy="on-failure:3", docker_restart_count=1), None),
    (Observed("running", "starting", exit_code=0, restart_policy="on-failure:3",
              docker_restart_count=2), None),
    # exited: Docker has stopped restarting it, and the reason says under which policy
    (replace(EXITED_1, restart_policy="no"),
     "container exited (exit code 1) and Docker is not restarting it (restart policy no)"),
    (replace(EXITED_1, restart_policy="on-failure:1", docker_restart_count=1),
     "container exited (exit code 1) and Docker is not restarting it "
     "(restart policy on-failure:1, 1 restart by Docker)"),
    (replace(EXITED_1, restart_policy="on-failure:3", docker_restart_count=3),
     "container exited (exit code 1) and Docker is not restarting it "
     "(restart policy on-failure:3, 3 restarts by Docker)"),
    # under `always` an exited container is one whose restart by Docker failed: given up
    (replace(EXITED_1, restart_policy="always", docker_restart_count=1),
     "container exited (exit code 1) and Docker is not restarting it "
     "(restart policy always, 1 restart by Docker)"),
    # stopped by a person: never given up, whatever the policy
    (replace(EXITED_1, restart_policy="always", stopped_by_user=True), None),
    (replace(EXITED_1, restart_policy="unless-stopped", exit_code=143), None),
])
def test_gave_up_follows_the_status_docker_reports_under_each_restart_policy(
        observed: Observed, reason: str | None) -> None:
    assert gave_up(observed) == reason


def test_a_container_docker_is_still_restarting_is_never_escalated() -> None:
    # on-failure:3 with an instant crash: restarting, running, restarting ... then exited
    looping = [replace(RESTARTING_1, restart_policy="on-failure:3", docker_restart_count=n)
               for n in (1, 2, 3)]
    given_up = replace(EXITED_1, restart_policy="on-failure:3", docker_restart_count=3)
    decisions = run([(0, looping[0]), (2, looping[1]), (4, looping[2]), (6, given_up),
                     (8, given_up)])
    assert actions(decisions) == ["none", "none", "none", "escalate", "none"]
    assert decisions[3].reason.endswith("(restart policy on-failure:3, 3 restarts by Docker)")


def test_a_crashed_container_is_escalated_once_never_restarted() -> None:
    crashed = Observed("exited", "none", exit_code=2)
    decisions = run([(0, crashed), (300, crashed), (600, crashed)])
    assert actions(decisions) == ["escalate", "none", "none"]
    assert decisions[0].state.incident == 1


def test_a_container_stopped_by_hand_is_left_alone() -> None:
    stopped = Observed("exited", "none", exit_code=137, stopped_by_user=True)
    state = StrikeState(phase=Phase.STRIKING, strikes=1, incident=1, strike_at=at(-120))
    decisions = run([(0, stopped), (600, stopped)], state=state)
    assert actions(decisions) == ["none", "none"]


def test_a_probe_cut_short_by_a_stop_is_not_a_strike() -> None:
    # Docker reports unhealthy when the stop kills a probe in flight, before the die
    stopping = Observed("running", "unhealthy", stopped_by_user=True, stop_requested_at=T0)
    decision = decide(StrikeState(), stopping, POLICY, at(1))
    assert (decision.action, decision.reason) == ("none", "being stopped")
    assert decision.state == StrikeState()
    assert decision.next_check_at == at(10 + RESTART_GRACE_S)  # stop timeout + grace


def test_a_stop_signal_the_container_ignored_hides_it_only_for_the_stop_timeout() -> None:
    # `docker kill -s TERM` on a process that ignores TERM: still running, still failing
    still_running = Observed("running", "unhealthy", stopped_by_user=True,
                             stop_requested_at=T0)
    decisions = run([(1, still_running), (10 + RESTART_GRACE_S, still_running)])
    assert actions(decisions) == ["none", "strike1"]


def test_the_restart_itself_is_not_mistaken_for_a_crash() -> None:
    state = StrikeState(phase=Phase.RESTARTING, strikes=2, incident=1, strike_at=T0,
                        restarts=(T0,))
    exited = Observed("exited", "unhealthy", exit_code=137)
    assert decide(state, exited, POLICY, at(5)).action == "none"
    crashed = Observed("exited", "none", exit_code=1)
    assert decide(state, crashed, POLICY, at(5)).action == "none"
    assert decide(state, crashed, POLICY, at(41)).action == "escalate"


def test_an_escalated_container_recovers_when_healthy_for_the_stable_period() -> None:
    state = StrikeState(phase=Phase.ESCALATED, strikes=3, incident=3, strike_at=at(-10))
    decisions = run([(0, HEALTHY), (60, UNHEALTHY), (70, HEALTHY), (190, HEALTHY)],
                    state=state)
    assert actions(decisions) == ["none", "none", "none", "recover"]
    assert decisions[3].state == StrikeState(incident=3)


def test_a_new_incident_after_recovery_gets_a_new_number() -> None:
    decisions = run([(0, UNHEALTHY), (10, HEALTHY), (130, HEALTHY), (200, UNHEALTHY)])
    assert actions(decisions) == ["strike1", "none", "recover", "strike1"]
    assert decisions[3].state.incident == 2


def test_a_daemon_restart_carries_on_from_the_persisted_state() -> None:
    # strike 2 happened at T0; a new process sees the same persisted state later on
    persisted = StrikeState(phase=Phase.RESTARTING, strikes=2, incident=1, strike_at=T0,
                            restarts=(T0,))
    assert decide(persisted, UNHEALTHY, POLICY, at(30)).action == "none"
    assert decide(persisted, UNHEALTHY, POLICY, at(60)).action == "escalate"
    # and a strike 1 recorded long ago is not forgotten either
    striking = StrikeState(phase=Phase.STRIKING, strikes=1, incident=1, strike_at=at(-3600))
    assert decide(striking, UNHEALTHY, POLICY, T0).action == "restart"


def test_decide_is_pure() -> None:
    state = StrikeState(phase=Phase.STRIKING, strikes=1, incident=1, strike_at=at(-60))
    assert decide(state, UNHEALTHY, POLICY, T0) == decide(state, UNHEALTHY, POLICY, T0)
    assert state == StrikeState(phase=Phase.STRIKING, strikes=1, incident=1, strike_at=at(-60))


@pytest.mark.parametrize(("phase", "supervision", "maintenance", "shown"), [
    ("ok", "supervised", False, "ok"),
    ("striking", "supervised", False, "striking"),
    ("restarting", "supervised", False, "restarting"),
    ("escalated", "protected", False, "escalated"),
    ("ok", "protected", False, "protected"),
    ("escalated", "supervised", True, "maintenance"),
    ("striking", "ignored", True, "ignored"),
])
def test_shown_state(phase: str, supervision: str, maintenance: bool, shown: str) -> None:
    assert shown_state(Phase(phase), supervision=SupervisionMode(supervision),
                       maintenance=maintenance) == shown
