"""kill -9 of the daemon at 30 random moments of a busy run: jobs every second, a
notification per execution, tasks queued all along, and (on a private Docker engine)
flapping containers under supervision. Afterwards nothing ran twice, no container was
restarted beyond its budget, and nothing recorded was lost or recorded twice."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from typing import Any

from tests.conftest import run_cli
from tests.faults.engine import PrivateEngine
from tests.faults.procs import Spawner, daemon_env, daemon_running, rows, wait_for

KILLS = int(os.environ.get("AEGIS_FAULT_KILLS", "30"))
# Healthy for 8-11 s (long enough to recover: two 2 s strike intervals, seen by a timer
# polled every 5 s), unhealthy for 3-5 s (long enough for a restart), forever; a restart
# starts it healthy again. So incidents follow one another and budgets run out. Sleeping
# in the background lets TERM end it at once, so a restart takes well under an interval.
FLAP = ("trap 'exit 0' TERM; while :; do touch /ok; sleep $((8 + RANDOM % 4)) & wait; "
        "rm -f /ok; sleep $((3 + RANDOM % 3)) & wait; done")
FLAP_PROBE = {"test": ["CMD", "test", "-f", "/ok"], "interval": 500_000_000,
              "timeout": 2_000_000_000, "retries": 1}
# container name -> its restart budget per hour (a label, or AEGIS_MAX_RESTARTS below)
BUDGETS = {"flap-0": 2, "flap-1": 2, "flap-2": 2, "flap-3": 2, "flap-4": 1, "flap-5": 1}
DEFAULT_BUDGET = 2


def start_flapping(engine: PrivateEngine) -> Any:
    client = engine.client()
    image = engine.build_busybox()
    for name, budget in BUDGETS.items():
        labels = {"aegis.enable": "true"}
        if budget != DEFAULT_BUDGET:
            labels["aegis.max-restarts"] = str(budget)
        client.containers.run(image, ["/bin/sh", "-c", FLAP], name=name, detach=True,
                              network_mode="none", healthcheck=FLAP_PROBE, labels=labels,
                              stop_signal="SIGTERM")
    return client


class RestartWatch:
    """Counts restarts as the engine saw them, whoever asked for them, from a live stream
    (the engine keeps only its last 256 events, too few to ask afterwards)."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        self._stream = client.events(decode=True,
                                     filters={"type": "container", "event": "restart"})
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends when closed
            for event in self._stream:
                self.counts[event["Actor"]["Attributes"]["name"]] += 1

    def stop(self) -> Counter[str]:
        time.sleep(1)  # the last restart's event is on its way
        self._stream.close()
        self._thread.join(10)
        return self.counts


def test_kill_9_at_random_moments_runs_nothing_twice_and_loses_nothing(
        aegis_env: dict[str, str], spawn: Spawner,
        optional_engine: PrivateEngine | None) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    env = daemon_env(aegis_env)
    client, watch = None, None
    if optional_engine is not None:
        client = start_flapping(optional_engine)
        watch = RestartWatch(client)
        env = daemon_env(aegis_env, DOCKER_HOST=optional_engine.url, AEGIS_REMEDIATION="on",
                         AEGIS_STRIKE_INTERVAL="2s", AEGIS_RESTART_BACKOFF="0s",
                         AEGIS_MAX_RESTARTS=str(DEFAULT_BUDGET))
    seed = int(os.environ.get("AEGIS_FAULT_SEED", str(time.time_ns())))
    rng = random.Random(seed)
    queued = 0
    for kill in range(KILLS):
        for _ in range(rng.randint(0, 2)):
            queued += 1
            rows(url, "INSERT INTO tasks (job_id, args) VALUES ('bump', %s::jsonb) "
                      "RETURNING id", f'{{"n": {queued}, "seconds": {rng.random():.2f}}}')
        process = spawn(env)
        # startup included: a moment anywhere from module import to a busy loop
        time.sleep(rng.uniform(0.3, 3.5))
        process.send_signal(signal.SIGKILL)
        assert process.wait(10) == -signal.SIGKILL, f"kill {kill} (seed {seed})"

    final = spawn(env)
    wait_for(daemon_running(url), what="the final daemon")
    wait_for(lambda: not rows(url, "SELECT 1 FROM tasks WHERE status IN "
                                   "('pending', 'running')"),
             timeout_s=90, what=f"every task finished (seed {seed})")
    time.sleep(2)  # a couple of clean slots after the last kill
    final.send_signal(signal.SIGTERM)
    assert final.wait(30) == 0
    assert run_cli("check", env=env).returncode == 1

    # no job slot ran twice: each execution recorded its slot
    for event_type, job in (("beat_ran", "beat"), ("pulse_ran", "pulse")):
        slots = Counter(r["slot"] for r in rows(
            url, "SELECT details->>'slot' AS slot FROM episodic_memory "
                 "WHERE event_type = %s", event_type))
        assert slots, f"{job} never ran (seed {seed})"
        assert max(slots.values()) == 1, f"{job} ran a slot twice (seed {seed})"
        # and no finished run lost the event it recorded
        unrecorded = rows(
            url, "SELECT r.id FROM job_runs r WHERE r.job_id = %s AND r.status = 'ok' "
                 "AND NOT EXISTS (SELECT 1 FROM episodic_memory e WHERE e.event_type = %s "
                 "AND e.details->>'run_id' = r.id::text)", job, event_type)
        assert unrecorded == [], f"{job} runs without their event (seed {seed})"

    # one outbox message per beat event, none without its event
    beats = rows(url, "SELECT count(*) AS n FROM episodic_memory WHERE event_type = "
                      "'beat_ran'")[0]["n"]
    messages = rows(url, "SELECT o.event_uid, e.event_type FROM outbox o "
                         "LEFT JOIN episodic_memory e ON e.uid = o.event_uid "
                         "WHERE o.channel = 'journal'")
    assert len(messages) == beats
    assert {m["event_type"] for m in messages} == {"beat_ran"}
    assert max(Counter(m["event_uid"] for m in messages).values()) == 1

    # every task ran at most once, and each one marked done ran exactly once
    tasks = rows(url, "SELECT id, args->>'n' AS n, status, run_id FROM tasks")
    assert len(tasks) == queued
    bumps = Counter(r["n"] for r in rows(
        url, "SELECT details->>'n' AS n FROM episodic_memory WHERE event_type = 'bump_ran'"))
    assert max(bumps.values(), default=1) == 1, f"a task ran twice (seed {seed})"
    for task in tasks:
        assert task["status"] in ("done", "failed"), task
        if task["status"] == "done":
            assert bumps[task["n"]] == 1, f"task {task} (seed {seed})"

    assert rows(url, "SELECT id FROM job_runs WHERE status = 'running'") == []
    assert rows(url, "SELECT count(*) AS n FROM episodic_memory "
                     "WHERE event_type = 'daemon_unclean_restart'")[0]["n"] >= KILLS // 2
    if client is not None and watch is not None:
        check_containers(url, watch.stop(), seed)
        client.close()


def check_containers(url: str, restarted: Counter[str], seed: int) -> None:
    """No container restarted beyond its budget; every restart persisted before it was
    made and recorded as an event once; no strike or escalation alert recorded twice."""
    state = {r["name"]: r for r in rows(url, "SELECT name, restarts FROM containers")}
    events = rows(url, "SELECT uid, event_type, details FROM episodic_memory "
                       "WHERE source = 'supervisor' AND details ? 'container'")
    by_type: dict[str, Counter[str]] = {}
    for event in events:
        by_type.setdefault(event["event_type"], Counter())[event["details"]["container"]] += 1
    seen = f"engine restarts {dict(restarted)}, events {by_type} (seed {seed})"
    assert sum(restarted.values()) >= 1, f"the flapping containers were never restarted: {seen}"
    for name, budget in BUDGETS.items():
        assert restarted[name] <= budget, f"{name} restarted beyond its budget {budget}: {seen}"
        assert restarted[name] <= len(state[name]["restarts"] or []), \
            f"{name}: a restart the containers table never recorded: {seen}"
        recorded = by_type.get("container_restarted", Counter())[name]
        assert recorded == restarted[name], f"{name}: restarts and their events differ: {seen}"
    assert any(restarted[name] == budget for name, budget in BUDGETS.items()), \
        f"no container reached its restart budget: {seen}"
    strikes = Counter((e["details"]["container"], e["details"]["incident"], e["event_type"])
                      for e in events if e["event_type"] in (
                          "container_unhealthy", "container_escalated"))
    assert max(strikes.values(), default=1) == 1, f"a strike recorded twice: {seen}"
    escalations = sum(by_type.get("container_escalated", Counter()).values())
    assert escalations >= 1, f"no container was ever escalated: {seen}"
    alerts = rows(url, "SELECT dedup_key FROM outbox WHERE dedup_key LIKE 'escalation:%%'")
    assert len(alerts) == escalations, f"one alert per escalation: {seen}"
    assert len({a["dedup_key"] for a in alerts}) == len(alerts)


def test_tasks_a_killed_daemon_left_running_are_closed_or_run_once(
        aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    # as a daemon killed at the wrong moment leaves them: one task whose run it claimed
    # (the run is interrupted at the next start), one it took but never claimed a run for
    claimed = rows(url, "INSERT INTO tasks (job_id, args, status, started_at, created_at) "
                        "VALUES ('bump', '{\"n\": 1}', 'running', now() - interval '1 hour', "
                        "now() - interval '1 hour') RETURNING id, created_at, "
                        "created_at + (id %% 1000000) * interval '1 microsecond' AS slot")[0]
    run = rows(url, "INSERT INTO job_runs (job_id, scope_key, host, trigger, scheduled_for, "
                    "started_at, status, instance_id) VALUES ('bump', 'test-host', "
                    "'test-host', 'manual', %s, %s, 'running', 'gone-1') RETURNING id",
               claimed["slot"], claimed["created_at"])[0]
    taken = rows(url, "INSERT INTO tasks (job_id, args, status, started_at) VALUES "
                      "('bump', '{\"n\": 2}', 'running', now() - interval '1 hour') "
                      "RETURNING id")[0]
    process = spawn(daemon_env(aegis_env))
    wait_for(lambda: not rows(url, "SELECT 1 FROM tasks WHERE status = 'running'"),
             what="both tasks closed")
    final = {r["id"]: r for r in rows(url, "SELECT id, status, run_id, error FROM tasks")}
    assert final[claimed["id"]] == {"id": claimed["id"], "status": "failed",
                                    "run_id": run["id"],
                                    "error": f"run {run['id']} interrupted: the daemon "
                                             "running it stopped without finishing it"}
    assert rows(url, "SELECT details->>'task_id' AS task FROM episodic_memory "
                     "WHERE event_type = 'task_failed'") == [{"task": str(claimed["id"])}]
    wait_for(lambda: rows(url, "SELECT 1 FROM tasks WHERE id = %s AND status = 'done'",
                          taken["id"]), what="the requeued task ran")
    assert [r["n"] for r in rows(url, "SELECT details->>'n' AS n FROM episodic_memory "
                                      "WHERE event_type = 'bump_ran'")] == ["2"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
