"""The drop-in from docker-autoheal: its own three test scenarios (its tests/
docker-compose.yml), run against a real ``aegis run`` on the real engine, the containers
carrying docker-autoheal's label ``autoheal=true`` and nothing of aegis's, the daemon
configured with docker-autoheal's variables alone:

- should-keep-restarting: unhealthy and labelled: restarted (within the budget), then
  escalated, where docker-autoheal would restart it for ever;
- shouldnt-restart-healthy: healthy and labelled: never restarted;
- shouldnt-restart-no-label: unhealthy without the label: never restarted, label mode on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.containers import EXIT_ON_TERM
from tests.support.daemons import Spawner, daemon_env, daemon_running
from tests.support.engines import EngineEvents
from tests.support.rows import events_of, sql_rows, types_of
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine_to_ourselves")]

# docker-autoheal's scenarios use `tail -f /dev/null` and `exit 1` / `exit 0` probes
IDLE = f"{EXIT_ON_TERM}tail -f /dev/null & wait"
FAILING = {"test": ["CMD-SHELL", "exit 1"], "interval": 500_000_000,
           "timeout": 1_000_000_000, "retries": 3}
# passing, and kept so on a machine busy enough to make a probe miss its timeout now and
# then: such a miss is a failed probe to the engine, and a healthy container turned
# unhealthy by the machine's load is not what this scenario is about
PASSING = {**FAILING, "test": ["CMD-SHELL", "exit 0"], "timeout": 10_000_000_000,
           "retries": 3}
SWEEPS_AFTER = 3  # sweeps (every 2 s) after the escalation in which nothing more may happen


@pytest.fixture
def scenarios(make_container: Callable[..., Any]) -> dict[str, Any]:
    test_id = uuid.uuid4().hex[:8]

    def run(service: str, healthcheck: dict[str, Any], labels: dict[str, str]) -> Any:
        return make_container(IDLE, name=f"aegis-test-{test_id}-{service}",
                              healthcheck=healthcheck, labels=labels)

    return {
        "should-keep-restarting": run("should-keep-restarting", FAILING, {"autoheal": "true"}),
        "shouldnt-restart-healthy": run("shouldnt-restart-healthy", PASSING,
                                        {"autoheal": "true"}),
        "shouldnt-restart-no-label": run("shouldnt-restart-no-label", FAILING, {}),
    }


def test_docker_autoheals_three_scenarios_with_only_its_label_and_variables(
        aegis_env: dict[str, str], spawn: Spawner, docker_client: Any,
        scenarios: dict[str, Any]) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    seen = EngineEvents()
    seen.follow(docker_client)
    # docker-autoheal's own test environment: its label, a 2 s interval
    env = daemon_env(aegis_env, AEGIS_JOB_MODULES="", AEGIS_REMEDIATION="on",
                     AUTOHEAL_CONTAINER_LABEL="autoheal", AUTOHEAL_INTERVAL="2",
                     AUTOHEAL_DEFAULT_STOP_TIMEOUT="3",
                     AEGIS_JOB__DOCKER_HEALTH_CHECK__EVERY="2s")
    spawn(env)
    wait_for(daemon_running(url), what="the daemon")
    keep, healthy, unlabelled = (scenarios[name].name for name in (
        "should-keep-restarting", "shouldnt-restart-healthy", "shouldnt-restart-no-label"))
    wait_for(lambda: "container_escalated" in types_of(url, keep), timeout_s=90,
             what=f"{keep} restarted, then escalated")
    escalated_at = sql_rows(url, "SELECT max(timestamp) AS at FROM episodic_memory WHERE "
                            "event_type = 'container_escalated'")[0]["at"]
    wait_for(lambda: len(sql_rows(
        url, "SELECT 1 FROM job_runs WHERE job_id = 'docker_health_check' AND status = 'ok' "
        "AND started_at > %s", escalated_at)) >= SWEEPS_AFTER, timeout_s=60,
        what=f"{SWEEPS_AFTER} sweeps after the escalation")
    seen.stop()

    assert types_of(url, keep) == ["container_unhealthy", "container_restarted",
                                   "container_escalated"]
    restarted = events_of(url, keep)[1]["details"]
    assert restarted["stop_timeout_s"] == 3.0  # AUTOHEAL_DEFAULT_STOP_TIMEOUT
    assert len(seen.times(keep, "restart")) == 1
    assert seen.times(healthy, "restart") == []
    assert seen.times(unlabelled, "restart") == []
    assert types_of(url, healthy) == []
    assert types_of(url, unlabelled) == []
    rows = {r["name"]: r for r in sql_rows(url, "SELECT name, supervision, state, health, "
                                                "labels FROM containers")}
    assert (rows[healthy]["supervision"], rows[healthy]["state"]) == ("supervised", "ok")
    # docker-autoheal's label is kept with aegis's for the status page
    assert sorted(rows[keep]["labels"]) == ["aegis.test", "autoheal"]
    assert sorted(rows[unlabelled]["labels"]) == ["aegis.test"]
    assert rows[unlabelled]["supervision"] == "ignored"  # label mode: not in aegis's scope
    assert rows[unlabelled]["health"] == "unhealthy"
