"""Triage before restarting: the classes as pure functions of what an inspect reports, and
what the three-strike protocol does with each (a table of datetimes, no Docker)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from aegis.supervision import observe
from aegis.supervision.docker import Probe, Sighting
from aegis.supervision.protocol.strikes import (
    Observed,
    Phase,
    StrikeState,
    decide,
)
from aegis.supervision.protocol.triage import (
    CRASH_LOOP_WINDOW,
    TriageClass,
    broken_probe,
    crash_loop,
    exit_codes,
    hung_timeout_s,
    oom_killed,
    restart_samples,
    restarts_in_window,
)
from aegis.supervision.repository import ContainerRow
from tests.support.protocol import POLICY, at, run


def inspect(*probes: Probe, started_s: float = 0.0, **kw: object) -> Sighting:
    """A sighting as an inspect reports it (``details`` set), started at T0+started_s."""
    return replace(Sighting(id="c" * 64, name="web", image="img", labels={}, status="running",
                        health="unhealthy", has_healthcheck=True, details={"error": ""},
                        probes=probes, started_at=at(started_s),
                        probe_timing=(1.0, 1.0, 0.0)), **kw)  # type: ignore[arg-type]


def probe(code: int | None, output: str, seconds: float) -> Probe:
    return Probe(code, output, at(seconds))


TIMEOUT = "Health check exceeded timeout (1s)"
EXEC_FAILED = ('OCI runtime exec failed: exec failed: unable to start container process: '
               'exec: "curl": executable file not found in $PATH: unknown')


@pytest.mark.parametrize(("last", "expected"), [
    (probe(127, "/bin/sh: nosuchcmd: not found", 3), "cannot run (exit 127)"),
    (probe(126, "/bin/sh: /probe.sh: Permission denied", 3), "cannot run (exit 126)"),
    (probe(-1, EXEC_FAILED, 3), "cannot run (exit -1)"),
    (probe(-1, 'exec: "/etc/x": stat /etc/x: no such file or directory: unknown', 3),
     "cannot run"),
])
def test_a_probe_that_cannot_run_is_broken(last: Probe, expected: str) -> None:
    found = broken_probe(inspect(probe(1, "fine then", 1), last))
    assert found is not None
    assert expected in found


@pytest.mark.parametrize("last", [
    probe(1, "curl: (7) Failed to connect to localhost port 8080", 3),
    probe(1, "wget: server returned error: HTTP/1.1 404 Not Found", 3),  # the app's 404
    probe(-1, TIMEOUT, 3),  # a timeout after a success: the app is slow, the probe works
])
def test_a_probe_that_runs_and_fails_is_not_broken(last: Probe) -> None:
    assert broken_probe(inspect(probe(0, "", 1), last)) is None


def test_a_probe_that_has_timed_out_every_time_since_the_start_is_hung_not_broken() -> None:
    seen = inspect(probe(-1, TIMEOUT, 1), probe(-1, TIMEOUT, 3), probe(-1, TIMEOUT, 5))
    assert broken_probe(seen) is None  # it runs: a restart may well help
    assert hung_timeout_s(seen) == 1.0  # the probe's timeout, for the escalation's words
    assert hung_timeout_s(inspect(probe(-1, TIMEOUT, 1), probe(1, "refused", 3))) is None
    assert hung_timeout_s(inspect(probe(0, "", 1), probe(-1, TIMEOUT, 3))) is None


def test_timeouts_are_judged_by_the_failing_streak_once_the_log_has_rotated() -> None:
    # Docker keeps five probes: a full log of timeouts says nothing of the probes before
    five = tuple(probe(-1, TIMEOUT, 100 + 2 * i) for i in range(5))
    assert hung_timeout_s(inspect(*five, failing_streak=5)) is None  # it worked before t=92
    assert hung_timeout_s(inspect(*five, started_s=99, failing_streak=5)) is not None
    assert hung_timeout_s(inspect(*five, failing_streak=60)) is not None
    assert broken_probe(inspect(*five, failing_streak=60)) is None


def test_the_probes_of_an_earlier_start_do_not_count() -> None:
    # the health log outlives a restart; sighting_from_inspect keeps the probes since it
    assert broken_probe(inspect()) is None
    assert hung_timeout_s(inspect()) is None


def test_oom_kills_are_seen_by_docker_by_the_engine_event_or_at_the_limit() -> None:
    assert oom_killed(inspect(oom_killed=True), None)
    assert oom_killed(inspect(started_s=10), at(20))  # a process inside, after the start
    assert not oom_killed(inspect(started_s=10), at(5))  # before aegis's restart
    limited = inspect(status="exited", exit_code=137, memory_limit=64 * 2**20)
    assert oom_killed(limited, None, memory_peak=64 * 2**20)
    assert not oom_killed(limited, None, memory_peak=10 * 2**20)
    assert not oom_killed(limited, None)  # a plain SIGKILL, no peak known


def test_dockers_restart_count_is_followed_over_the_window() -> None:
    samples = restart_samples((), 0, None, at(0))
    for second, count in ((10, 1), (20, 2), (20, 2), (30, 3)):
        samples = restart_samples(samples, count, 1, at(second))
    assert [s[1] for s in samples] == [0, 1, 2, 3]
    assert restarts_in_window(samples, at(31)) == 3
    assert exit_codes(samples) == [1, 1, 1]
    assert crash_loop(samples, "always", at(31))
    assert not crash_loop(samples, "no", at(31))  # nothing restarts it: not Docker's loop
    # the window slides: the newest sample older than it stays as the baseline
    later = restart_samples(samples, 4, 2, at(30) + CRASH_LOOP_WINDOW)
    assert later[0][1] == 3
    assert restarts_in_window(later, at(30) + CRASH_LOOP_WINDOW) == 1
    # a start by hand (or aegis's restart) resets Docker's count: so does the history
    assert restart_samples(samples, 0, None, at(40)) == ((at(40), 0, None),)


def remembered(phase: str, next_check_at: datetime | None, stopped: bool) -> ContainerRow:
    """What aegis remembers of the container ``inspect()`` sees."""
    return ContainerRow(host="h", name="web", container_id="c" * 64, phase=Phase(phase),
                        next_check_at=next_check_at, stopped_by_user=stopped)


def needs_inspect(seen: Sighting, phase: str, next_check_at: datetime | None,
                  stopped: bool, now: datetime) -> bool:
    return observe.needs_inspect(seen, remembered(phase, next_check_at, stopped), now)


def test_only_a_sighting_that_may_call_for_a_step_is_completed_by_an_inspect() -> None:
    listing = replace(inspect(), details={})
    assert not needs_inspect(inspect(), "striking", at(0), False, at(60))  # one already
    assert needs_inspect(listing, "striking", at(60), False, at(60))  # strike 2 is due
    assert not needs_inspect(listing, "striking", at(61), False, at(60))
    assert not needs_inspect(listing, "ok", None, False, at(60))
    assert needs_inspect(replace(listing, status="restarting"), "ok", None, False, at(60))
    crashed = replace(listing, status="exited", exit_code=1)
    assert needs_inspect(crashed, "ok", None, False, at(60))
    assert not needs_inspect(crashed, "ok", None, True, at(60))  # a person stopped it
    assert not needs_inspect(crashed, "escalated", None, False, at(60))


# --- what the protocol does with each class ---


UNHEALTHY = Observed("running", "unhealthy")
INSPECTED = replace(UNHEALTHY, inspected=True)
BROKEN = replace(INSPECTED, probe_problem="the probe cannot run (exit 127): not found")
OOM = replace(INSPECTED, oom=True)
HUNG = replace(INSPECTED, hung_timeout_s=1.0)
HEALTHY = Observed("running", "healthy", inspected=True)


def test_a_broken_probe_escalates_at_strike_2_without_a_restart() -> None:
    decisions = run([(0, UNHEALTHY), (60, BROKEN), (120, BROKEN)])
    assert [d.action for d in decisions] == ["strike1", "escalate", "none"]
    escalated = decisions[1]
    assert escalated.state.restarts == ()
    assert escalated.state.incident_class == TriageClass.BROKEN_PROBE
    assert escalated.reason.startswith("the health check command is broken, a restart cannot "
                                       "help: the probe cannot run (exit 127)")


def test_a_hung_application_is_restarted_and_escalated_with_the_timeout_said() -> None:
    decisions = run([(0, UNHEALTHY), (60, HUNG), (120, HUNG), (180, HUNG)])
    assert [d.action for d in decisions] == ["strike1", "restart", "escalate", "none"]
    restarted, escalated = decisions[1], decisions[2]
    assert restarted.state.incident_class == TriageClass.HUNG
    assert restarted.state.restarts == (at(60),)
    assert restarted.reason.startswith("the health check has timed out every time since the "
                                       "container started (timeout 1s)")
    assert escalated.state.incident_class == TriageClass.HUNG
    assert escalated.reason == ("the health check timed out every time since the restart "
                                "(timeout 1s): the application hangs, or the probe needs "
                                "longer than its timeout")


def test_a_probe_that_timed_out_and_then_failed_is_restarted_as_unhealthy() -> None:
    decisions = run([(0, UNHEALTHY), (60, HUNG), (120, INSPECTED)])
    assert [d.action for d in decisions] == ["strike1", "restart", "escalate"]
    # hung or plain unhealthy follows the latest inspect: it fails now, it does not hang
    assert decisions[2].state.incident_class == TriageClass.UNHEALTHY
    assert decisions[2].reason == "still unhealthy one strike interval after the restart"
    first = run([(0, UNHEALTHY), (60, INSPECTED)])
    assert [d.action for d in first] == ["strike1", "restart"]


def test_a_hung_probe_does_not_take_the_place_of_a_class_that_stays() -> None:
    decisions = run([(0, UNHEALTHY), (60, OOM), (120, HUNG)])
    assert [d.action for d in decisions] == ["strike1", "restart", "escalate"]
    assert decisions[2].state.incident_class == TriageClass.OOM
    assert "hangs" not in decisions[2].reason  # the words follow the class, not the probe


def test_an_oom_kill_is_restarted_once_and_not_in_a_loop() -> None:
    first = run([(0, UNHEALTHY), (60, OOM), (100, HEALTHY), (220, HEALTHY)])
    assert [d.action for d in first] == ["strike1", "restart", "none", "recover"]
    assert first[1].state.incident_class == TriageClass.OOM
    assert first[1].reason == "killed for lack of memory: restarted once"
    assert first[3].state.oom_restart_at == at(60)  # remembered past the recovery
    # killed again within the hour: the next incident escalates at strike 2
    again = run([(300, UNHEALTHY), (360, OOM)], state=first[-1].state)
    assert [d.action for d in again] == ["strike1", "escalate"]
    assert again[1].reason.startswith("killed for lack of memory again within an hour")
    assert len(again[1].state.restarts) == 1
    # an hour after aegis's restart for memory, one restart is allowed again
    later = run([(3700, UNHEALTHY), (3760, OOM)], state=first[-1].state)
    assert [d.action for d in later] == ["strike1", "restart"]


def test_the_class_of_an_incident_stays_once_seen() -> None:
    decisions = run([(0, UNHEALTHY), (60, OOM), (120, INSPECTED)])
    assert [d.action for d in decisions] == ["strike1", "restart", "escalate"]
    # after the restart the OOM flag is gone (a new start), the incident's class is not
    assert decisions[2].state.incident_class == TriageClass.OOM


def crashing(count: int, status: str = "restarting") -> Observed:
    return Observed(status, "none" if status == "restarting" else "starting", exit_code=3,
                    restart_policy="always", docker_restart_count=count, inspected=True)


def test_a_crash_loop_under_dockers_policy_escalates_once_and_is_never_restarted() -> None:
    decisions = run([(0, crashing(0, "running")), (2, crashing(1)), (4, crashing(2)),
                     (8, crashing(3)), (16, crashing(4)), (32, crashing(5, "running"))])
    assert [d.action for d in decisions] == ["none", "none", "none", "escalate", "none", "none"]
    escalated = decisions[3]
    assert (escalated.state.phase, escalated.state.incident) == ("escalated", 1)
    assert escalated.state.incident_class == TriageClass.CRASH_LOOP
    assert escalated.state.restarts == ()
    assert escalated.reason == ("crash loop: Docker restarted it 3 times within 10 min under "
                                "its restart policy always (last exit codes 3, 3, 3); aegis "
                                "adds no restarts of its own")


def test_a_crash_loop_that_ends_recovers_and_its_history_does_not_reopen_it() -> None:
    looped = run([(0, crashing(0, "running")), (2, crashing(1)), (4, crashing(2)),
                  (8, crashing(3))])
    steady = replace(HEALTHY, restart_policy="always", docker_restart_count=3)
    after = run([(60, steady), (200, steady), (260, steady)], state=looped[-1].state)
    assert [d.action for d in after] == ["none", "recover", "none"]


def test_a_crash_loop_seen_healthy_between_its_crashes_has_not_recovered() -> None:
    looped = run([(0, crashing(0, "running")), (2, crashing(1)), (4, crashing(2)),
                  (8, crashing(3))])
    up = replace(HEALTHY, restart_policy="always")
    # healthy at each look, but Docker restarted it in between: the stretch starts again
    after = run([(10, replace(up, docker_restart_count=3)),
                 (200, replace(up, docker_restart_count=4)),
                 (400, replace(up, docker_restart_count=5)),
                 (600, replace(up, docker_restart_count=5))], state=looped[-1].state)
    assert [d.action for d in after] == ["none", "none", "none", "recover"]
    assert after[2].state.healthy_since == at(400)


def test_a_dependant_is_folded_into_its_parents_incident_and_healed_after_it() -> None:
    parent = replace(INSPECTED, parent_incident="vpn")
    decisions = run([(0, UNHEALTHY), (60, parent), (120, parent), (180, INSPECTED)])
    assert [d.action for d in decisions] == ["strike1", "fold", "none", "restart"]
    folded = decisions[1]
    assert (folded.state.phase, folded.state.folded_into) == ("striking", "vpn")
    assert folded.reason == "waits for vpn, whose incident it depends on"
    assert folded.next_check_at == at(120)
    healed = decisions[3]
    assert healed.state.folded_into is None
    assert healed.reason == "still unhealthy after vpn's incident ended"


def test_a_dependant_struck_while_its_parent_is_in_an_incident_says_so() -> None:
    decision = decide(StrikeState(), replace(UNHEALTHY, parent_incident="db"), POLICY, at(0))
    assert decision.action == "strike1"
    assert decision.state.folded_into == "db"
    # never restarted (nor escalated) while the parent's incident lasts
    after = run([(60, replace(INSPECTED, parent_incident="db"))] * 1
                + [(600, replace(INSPECTED, parent_incident="db"))], state=decision.state)
    assert [d.action for d in after] == ["none", "none"]


def test_a_swarm_task_is_struck_and_recovers_but_is_never_restarted_or_escalated() -> None:
    swarm = replace(POLICY, orchestrated=True)
    decisions = run([(0, UNHEALTHY), (60, INSPECTED), (600, INSPECTED),
                     (601, Observed("exited", "none", exit_code=1, inspected=True)),
                     (700, HEALTHY), (900, HEALTHY)], policy=swarm)
    assert [d.action for d in decisions] == ["strike1", "none", "none", "none", "none",
                                             "recover"]
    assert "Swarm replaces its unhealthy tasks" in decisions[0].reason
