"""kill -9 of the daemon at 30 random moments of a busy run (each after its first
heartbeat): jobs every second, a notification per execution posted to a local
Discord-like server, tasks queued all along, and (on a private Docker engine) flapping
containers under supervision. Afterwards nothing ran twice, no container was restarted
beyond its budget, nothing recorded was lost or recorded twice, and the server received
every message once and in order, but for a post its sender was killed right after making.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aegis.notify.sender import CLAIM_LEASE_S
from aegis.scheduling.heartbeat import read_heartbeat
from tests.support.cli import run_cli
from tests.support.containers import EXIT_ON_TERM, OK_FILE
from tests.support.daemons import Spawner, daemon_env
from tests.support.discord import FakeDiscord
from tests.support.engines import PrivateEngine, RestartWatch
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

KILLS = int(os.environ.get("AEGIS_FAULT_KILLS", "30"))
BUSY_S = 2.0  # each kill lands this long at most after the daemon's first heartbeat
# A post counts as made in the moment its sender was killed if the kill came this close
# to the server reading it: after, by the time of answering and recording (milliseconds;
# this leaves room for a loaded machine), or before, as a request sent just before the
# kill can be read by the server just after it.
DUPLICATE_WINDOW_S = 1.0
GROUP_TITLE = re.compile(r"^\d+ alerts from ")
GROUP_LINE = re.compile(r"^- \*\*(?P<title>.+?)\*\*(?: x(?P<times>\d+))? \(")
# Healthy for 8-11 s (long enough to recover: two 2 s strike intervals, seen by a timer
# polled every 5 s), unhealthy for 3-5 s (long enough for a restart), forever; a restart
# starts it healthy again. So incidents follow one another and budgets run out. Sleeping
# in the background lets TERM end it at once, so a restart takes well under an interval.
FLAP = (f"{EXIT_ON_TERM}while :; do touch /ok; sleep $((8 + RANDOM % 4)) & wait; "
        "rm -f /ok; sleep $((3 + RANDOM % 3)) & wait; done")
# container name -> its restart budget per hour (a label, or AEGIS_MAX_RESTARTS below)
BUDGETS = {"flap-0": 2, "flap-1": 2, "flap-2": 2, "flap-3": 2, "flap-4": 1, "flap-5": 1}
DEFAULT_BUDGET = 2


def start_flapping(engine: PrivateEngine) -> Any:
    for name, budget in BUDGETS.items():
        labels = {"aegis.enable": "true"}
        if budget != DEFAULT_BUDGET:
            labels["aegis.max-restarts"] = str(budget)
        engine.run(FLAP, name=name, healthcheck=OK_FILE, labels=labels)
    return engine.client()


def unescape(text: str) -> str:
    """A title as aegis wrote it, before the payload escaped its markdown."""
    return re.sub(r"\\(.)", r"\1", text)


def started_up(home: Path, pid: int) -> Callable[[], bool]:
    """The daemon ``pid`` is past its start-up: its first heartbeat is written (after its
    services and scheduler started)."""
    def check() -> bool:
        heartbeat = read_heartbeat(home)
        return heartbeat is not None and heartbeat.pid == pid and heartbeat.status == "running"
    return check


def test_kill_9_at_random_moments_runs_nothing_twice_and_loses_nothing(
        aegis_env: dict[str, str], spawn: Spawner,
        optional_engine: PrivateEngine | None) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    home = Path(aegis_env["AEGIS_HOME"])
    alerts, journal = FakeDiscord(), FakeDiscord()
    hooks = {"DISCORD_WEBHOOK_URL": alerts.webhook_url(),
             "DISCORD_JOURNAL_WEBHOOK_URL": journal.webhook_url()}
    env = daemon_env(aegis_env, **hooks)
    client, watch = None, None
    if optional_engine is not None:
        client = start_flapping(optional_engine)
        watch = RestartWatch(client)
        env = daemon_env(aegis_env, DOCKER_HOST=optional_engine.url, AEGIS_REMEDIATION="on",
                         AEGIS_STRIKE_INTERVAL="2s", AEGIS_RESTART_BACKOFF="0s",
                         AEGIS_MAX_RESTARTS=str(DEFAULT_BUDGET),
                         # one alert per escalation, checked below: six containers
                         # flapping together would otherwise be a storm, one message
                         AEGIS_STORM_THRESHOLD="off", **hooks)
    seed = int(os.environ.get("AEGIS_FAULT_SEED", str(time.time_ns())))
    rng = random.Random(seed)
    queued = 0
    killed: dict[int, float] = {}  # pid -> when it was killed (time.monotonic())
    began = time.monotonic()
    try:
        for kill in range(KILLS):
            for _ in range(rng.randint(0, 2)):
                queued += 1
                rows(url, "INSERT INTO tasks (job_id, args) VALUES ('bump', %s::jsonb) "
                          "RETURNING id", f'{{"n": {queued}, "seconds": {rng.random():.2f}}}')
            process = spawn(env)
            wait_for(started_up(home, process.pid), timeout_s=60,
                     what=f"daemon {kill} past start-up (seed {seed})")
            time.sleep(rng.uniform(0, BUSY_S))  # a moment of its busy run
            killed[process.pid] = time.monotonic()
            process.send_signal(signal.SIGKILL)
            assert process.wait(10) == -signal.SIGKILL, f"kill {kill} (seed {seed})"

        print(f"{KILLS} kills in {time.monotonic() - began:.0f}s (seed {seed})")
        final = spawn(env)
        # Its own heartbeat, not the rows of the killed ones (which still read 'running'): a
        # SIGTERM before its handlers are in place would end it like any Python program.
        wait_for(started_up(home, final.pid), timeout_s=60, what="the final daemon")
        wait_for(lambda: not rows(url, "SELECT 1 FROM tasks WHERE status IN "
                                       "('pending', 'running')"),
                 timeout_s=90, what=f"every task finished (seed {seed})")
        time.sleep(2)  # a couple of clean slots after the last kill
        final.send_signal(signal.SIGTERM)
        assert final.wait(30) == 0
        check_runs_and_tasks(url, queued, killed, seed)
        if client is not None and watch is not None:
            check_containers(url, watch.stop(), seed)

        # A last daemon queues nothing (no beat, no supervision) and delivers what is left,
        # once the leases of daemons killed while posting have run out.
        drain = spawn(daemon_env(aegis_env, AEGIS_JOB__BEAT__ENABLED="false",
                                 AEGIS_REMEDIATION="off", **hooks))
        wait_for(started_up(home, drain.pid), timeout_s=60, what="the last daemon")
        wait_for(lambda: not rows(url, "SELECT 1 FROM outbox WHERE status <> 'delivered'"),
                 timeout_s=CLAIM_LEASE_S + 60, what=f"every message delivered (seed {seed})")
        print(f"every message delivered after {time.monotonic() - began:.0f}s")
        drain.send_signal(signal.SIGTERM)
        assert drain.wait(30) == 0
        assert run_cli("check", env=env).returncode == 1
        for channel, fake in (("journal", journal), ("alerts", alerts)):
            check_delivered(url, channel, fake, killed, seed)
    finally:
        alerts.close()
        journal.close()
        if client is not None:
            client.close()


def check_runs_and_tasks(url: str, queued: int, killed: dict[int, float], seed: int) -> None:
    """Every kill hit a daemon past its start-up; no job slot ran twice; every task ran at
    most once; one outbox message per beat."""
    unclean = rows(url, "SELECT count(*) AS n FROM episodic_memory "
                        "WHERE event_type = 'daemon_unclean_restart'")[0]["n"]
    assert unclean == len(killed) == KILLS, f"seed {seed}"
    started = {int(r["pid"]) for r in rows(url, "SELECT details->>'pid' AS pid FROM "
                                                "episodic_memory WHERE event_type = "
                                                "'daemon_started'")}
    assert set(killed) <= started, f"a daemon killed before it recorded its start (seed {seed})"

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


@dataclass(frozen=True)
class Post:
    arrived: float  # time.monotonic() at the server
    pid: int  # of the daemon that posted it
    titles: tuple[str, ...]  # of the outbox rows it carried, oldest first


def posts_of(fake: FakeDiscord) -> list[Post]:
    """What the server accepted, in order of arrival: each post's (or edit's: an
    incident's living message) sender and the rows it carried (a grouped alert lists its
    rows as ``- **title** [xN] (...)`` lines)."""
    posts = []
    accepted = [*zip(fake.received, fake.received_at, strict=True),
                *zip((body for _, body in fake.edits), fake.edits_at, strict=True)]
    for payload, arrived in sorted(accepted, key=lambda found: found[1]):
        embed = payload["embeds"][0]
        pid = int(embed["footer"]["text"].rsplit("-", 1)[1])
        titles: list[str] = []
        lines = [GROUP_LINE.match(line) for line in
                 (embed.get("description") or "").splitlines()]
        if GROUP_TITLE.match(embed["title"]) and lines and all(lines):
            for line in lines:
                assert line is not None
                titles += [unescape(line["title"])] * int(line["times"] or 1)
        else:
            titles.append(unescape(embed["title"]))
        posts.append(Post(arrived, pid, tuple(titles)))
    return posts


def check_delivered(url: str, channel: str, fake: FakeDiscord, killed: dict[int, float],
                    seed: int) -> None:
    """The server got every message of ``channel`` once, in order; a message posted twice
    is explained by its first sender being killed right after posting it, before it could
    record it (a post has no idempotency key: docs/reliability.md). A grouped alert lists
    identical alerts once with a count, so within one post the order is not checked."""
    outbox = rows(url, "SELECT title, sent_by FROM outbox WHERE channel = %s ORDER BY id",
                  channel)
    posts = posts_of(fake)
    seen = f"{channel} (seed {seed})"
    at, repeated = 0, []
    for post in posts:
        carried = outbox[at:at + len(post.titles)]
        assert Counter(post.titles) == Counter(r["title"] for r in carried), \
            f"{post} is not the next message(s) of the channel: {carried}, {seen}"
        if {r["sent_by"] for r in carried} == {f"test-host-{post.pid}"}:
            at += len(carried)  # posted and recorded
        else:
            repeated.append(post)  # recorded by a later post of the same rows
    assert at == len(outbox), f"messages never received: {outbox[at:]}, {seen}"
    assert len(repeated) <= len(killed)
    for post in repeated:
        assert post.pid in killed, f"{post} posted twice though its sender lived: {seen}"
        assert abs(killed[post.pid] - post.arrived) <= DUPLICATE_WINDOW_S, \
            f"{post} posted twice, but its sender was not killed while posting it: {seen}"
        last = [p for p in posts if p.pid == post.pid][-1]
        assert last is post, f"{post} posted twice, yet its sender posted after it: {seen}"
    print(f"{channel}: {len(posts)} posts, {len(outbox)} messages, {len(repeated)} posted "
          "twice after a kill")


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
