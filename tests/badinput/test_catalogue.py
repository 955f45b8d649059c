"""The bad-input catalogue: each case is one wrong input an operator (or a container, or
a hand-written SQL row) can give aegis, and what aegis must do with it: one clear line and
the contract's exit code, or a recorded event, and nothing else disturbed.

Configuration cases run ``aegis run --once`` so "nothing written" is checked where it
matters most: no pid file, no heartbeat, no database row.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aegis import api
from aegis.core.clock import utcnow
from aegis.core.config import DockerScope, RemediationMode, load_settings
from aegis.notify.discord import DiscordTarget
from aegis.notify.messages import escape_markdown
from aegis.notify.sender import Sender
from aegis.scheduling.registry import load_jobs
from aegis.storage.events import make_event
from aegis.storage.outbox import Channel
from aegis.storage.store import event_record
from aegis.supervision.docker import PROBE_OUTPUT_CHARS
from aegis.supervision.supervisor import Supervisor
from tests.support.cli import run_cli
from tests.support.containers import IDLE, PASSES, Containers, wait_health
from tests.support.daemons import Spawner, daemon_env, daemon_running
from tests.support.discord import FakeDiscord, mentions_would_ping, validate_discord_payload
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

SECRET = "s3cr3t-t0ken"


@dataclass(frozen=True)
class Case:
    id: str
    env: dict[str, str] = field(default_factory=dict)
    toml: str | bytes | None = None
    names: tuple[str, ...] = ()  # what the one line must mention
    args: tuple[str, ...] = ("run", "--once")
    code: int = 2


# --- environment values ---
ENV_CASES = [
    Case("port-not-a-number", {"POSTGRES_HOST": "db", "POSTGRES_PORT": "five"},
         names=("POSTGRES_PORT", "'five' is not a whole number")),
    Case("port-out-of-range", {"POSTGRES_HOST": "db", "POSTGRES_PORT": "70000"},
         names=("POSTGRES_PORT", "out of range")),
    Case("workers-zero", {"AEGIS_WORKERS": "0"}, names=("AEGIS_WORKERS", "out of range")),
    Case("workers-word", {"AEGIS_WORKERS": "many"}, names=("AEGIS_WORKERS",)),
    Case("heartbeat-not-a-duration", {"AEGIS_HEARTBEAT_INTERVAL": "soon"},
         names=("AEGIS_HEARTBEAT_INTERVAL",)),
    Case("heartbeat-too-short", {"AEGIS_HEARTBEAT_INTERVAL": "10ms"},
         names=("AEGIS_HEARTBEAT_INTERVAL", "at least 0.1s")),
    Case("strike-interval-negative", {"AEGIS_STRIKE_INTERVAL": "-5s"},
         names=("AEGIS_STRIKE_INTERVAL",)),
    Case("remediation-unknown", {"AEGIS_REMEDIATION": "maybe"},
         names=("AEGIS_REMEDIATION", "on, observe, off")),
    Case("docker-scope-unknown", {"AEGIS_DOCKER_SCOPE": "some"}, names=("AEGIS_DOCKER_SCOPE",)),
    Case("log-level-unknown", {"AEGIS_LOG_LEVEL": "verbose"}, names=("AEGIS_LOG_LEVEL",)),
    Case("log-format-unknown", {"AEGIS_LOG_FORMAT": "xml"}, names=("AEGIS_LOG_FORMAT",)),
    Case("max-restarts-too-many", {"AEGIS_MAX_RESTARTS": "101"},
         names=("AEGIS_MAX_RESTARTS",)),
    Case("storm-threshold-of-one", {"AEGIS_STORM_THRESHOLD": "1"},
         names=("AEGIS_STORM_THRESHOLD", "out of range (2-10000)")),
    Case("storm-threshold-word", {"AEGIS_STORM_THRESHOLD": "many"},
         names=("AEGIS_STORM_THRESHOLD",)),
    Case("storm-window-not-a-duration", {"AEGIS_STORM_WINDOW": "a while"},
         names=("AEGIS_STORM_WINDOW",)),
    Case("retention-under-an-hour", {"AEGIS_EVENT_RETENTION": "10m"},
         names=("AEGIS_EVENT_RETENTION", "at least 3600s")),
    Case("host-with-spaces", {"AEGIS_HOST": "my host!"}, names=("AEGIS_HOST",)),
    Case("job-module-not-a-path", {"AEGIS_JOB_MODULES": "jobs/extra.py"},
         names=("AEGIS_JOB_MODULES", "importable")),
    Case("http-addr-without-port", {"AEGIS_HTTP_ADDR": "localhost"},
         names=("AEGIS_HTTP_ADDR", "HOST:PORT")),
    Case("http-beyond-loopback-without-token", {"AEGIS_HTTP_ADDR": "0.0.0.0:9465"},
         names=("AEGIS_HTTP_TOKEN: must be set when AEGIS_HTTP_ADDR (0.0.0.0:9465) listens "
                "beyond loopback", "openssl rand -hex 32")),
    Case("http-token-too-short", {"AEGIS_HTTP_TOKEN": "short"},
         names=("AEGIS_HTTP_TOKEN", "shorter than 16 characters")),
    Case("http-token-with-a-space", {"AEGIS_HTTP_TOKEN": f"{SECRET}-{SECRET} x"},
         names=("AEGIS_HTTP_TOKEN", "only letters, digits")),
    Case("metrics-public-not-boolean", {"AEGIS_METRICS_PUBLIC": "sometimes"},
         names=("AEGIS_METRICS_PUBLIC", "not a boolean")),
    Case("webhook-not-http", {"DISCORD_WEBHOOK_URL": f"ftp://discord.example/{SECRET}"},
         names=("DISCORD_WEBHOOK_URL", "http(s) URL")),
    Case("notify-url-without-scheme", {"AEGIS_NOTIFY_URLS": f"tgram-{SECRET}"},
         names=("AEGIS_NOTIFY_URLS",)),
    Case("database-url-not-postgres", {"AEGIS_DATABASE_URL": f"mysql://u:{SECRET}@db/x"},
         names=("AEGIS_DATABASE_URL", "not a PostgreSQL URL")),
    Case("job-at-not-a-time", {"AEGIS_JOB__MORNING_STATUS__AT": "25:00"},
         names=("AEGIS_JOB__MORNING_STATUS__AT",)),
    Case("job-every-zero", {"AEGIS_JOB__HEALTH_CHECK__EVERY": "0s"},
         names=("AEGIS_JOB__HEALTH_CHECK__EVERY", "at least 1s")),
    Case("job-key-unknown", {"AEGIS_JOB__HEALTH_CHECK__COLOUR": "red"},
         names=("AEGIS_JOB__HEALTH_CHECK__COLOUR", "unknown job key")),
    Case("job-variable-malformed", {"AEGIS_JOB__HEALTHCHECK": "1"},
         names=("AEGIS_JOB__HEALTHCHECK", "AEGIS_JOB__<JOB_ID>__<KEY>")),
    Case("job-cron-three-fields", {"AEGIS_JOB__EVENING_SUMMARY__CRON": "* * *"},
         names=("AEGIS_JOB__EVENING_SUMMARY__CRON", "5-field cron")),
    Case("job-enabled-not-boolean", {"AEGIS_JOB__HEALTH_CHECK__ENABLED": "perhaps"},
         names=("AEGIS_JOB__HEALTH_CHECK__ENABLED", "not a boolean")),
    Case("timezone-unknown", {"AEGIS_TIMEZONE": "Mars/Olympus"},
         names=("AEGIS_TIMEZONE: 'Mars/Olympus' is not a time zone",)),
    Case("timezone-a-folder", {"AEGIS_TIMEZONE": "Europe"},
         names=("AEGIS_TIMEZONE: 'Europe' is not a time zone",)),
    Case("job-timezone-unknown", {"AEGIS_JOB__MORNING_STATUS__TIMEZONE": "Mars/Olympus"},
         names=("AEGIS_JOB__MORNING_STATUS__TIMEZONE", "is not a time zone")),
    Case("job-misfire-unknown", {"AEGIS_JOB__EVENING_SUMMARY__MISFIRE": "sometimes"},
         names=("AEGIS_JOB__EVENING_SUMMARY__MISFIRE", "run_once, skip, run_all")),
    Case("job-expect-every-words", {"AEGIS_JOB__EVENING_SUMMARY__EXPECT_EVERY": "daily"},
         names=("AEGIS_JOB__EVENING_SUMMARY__EXPECT_EVERY", "not a duration")),
    Case("config-file-missing", {"AEGIS_CONFIG": "/nonexistent/aegis.toml"},
         names=("AEGIS_CONFIG", "cannot read")),
    Case("job-module-missing", {"AEGIS_JOB_MODULES": "no_such_package.jobs"},
         names=("no_such_package.jobs",)),
    # bytes that are not UTF-8 (Python keeps them as surrogates; subprocess passes the bytes)
    Case("host-not-utf8", {"AEGIS_HOST": "caf\udce9"},
         names=("AEGIS_HOST: is not valid UTF-8 (byte 0xe9 at position 3)",)),
    Case("webhook-not-utf8",
         {"DISCORD_WEBHOOK_URL": f"https://discord.example/api/webhooks/1/{SECRET}\udcff"},
         names=("DISCORD_WEBHOOK_URL: is not valid UTF-8 (byte 0xff at position 51)",)),
    Case("journal-dir-not-utf8", {"AEGIS_JOURNAL_DIR": "/tmp/journ\udce9l"},
         names=("AEGIS_JOURNAL_DIR: is not valid UTF-8 (byte 0xe9 at position 10)",)),
]

# --- the TOML file ---
TOML_CASES = [
    Case("toml-syntax", toml="[daemon\nworkers = 2\n", names=("AEGIS_CONFIG", "not valid TOML")),
    Case("toml-unknown-key", toml="[docker]\ncolour = 'blue'\n",
         names=("docker.colour", "unknown key")),
    Case("toml-workers-string", toml="[daemon]\nworkers = 'many'\n",
         names=("daemon.workers",)),
    Case("toml-workers-boolean", toml="[daemon]\nworkers = true\n",
         names=("daemon.workers", "whole number")),
    Case("toml-port-zero", toml="[database]\nhost = 'db'\nport = 0\n",
         names=("database.port", "out of range")),
    Case("toml-jobs-not-a-table", toml="jobs = 5\n", names=("jobs", "table")),
    Case("toml-job-id-invalid", toml="[jobs.Bad-Id]\nenabled = false\n",
         names=("jobs.Bad-Id", "not a job id")),
    Case("toml-two-triggers", toml="[jobs.health_check]\nevery = '1m'\nat = '06:00'\n",
         names=("jobs.health_check", "at most one of every, at, cron")),
    Case("toml-not-utf8", toml=b"[daemon]\nworkers = 2 # caf\xe9\n",
         names=("AEGIS_CONFIG", "cannot read")),
    Case("toml-retention-words", toml="[retention]\nevents = 'a month'\n",
         names=("retention.events",)),
    Case("toml-timezone-unknown", toml="timezone = 'Mars/Olympus'\n",
         names=("timezone", "is not a time zone")),
    Case("toml-job-max-runtime-negative", toml="[jobs.evening_summary]\nmax_runtime = -5\n",
         names=("jobs.evening_summary.max_runtime", "at least 0.1s")),
]

# --- command-line arguments ---
CLI_CASES = [
    Case("cli-unknown-command", args=("frobnicate",), names=("No such command",)),
    Case("cli-since-unparseable", args=("events", "--since", "yesterday-ish"),
         names=("since",)),
    Case("cli-since-before-year-one", args=("events", "--since", "999999999d"),
         names=("--since", "reaches back before the year 1")),
    Case("cli-importance-unknown", args=("events", "--importance", "urgent"),
         names=("--importance", "urgent")),
    Case("cli-limit-zero", args=("events", "--limit", "0"), names=("--limit",)),
    Case("cli-arg-without-value", args=("jobs", "run", "health_check", "--arg", "novalue"),
         names=("--arg", "KEY=VALUE")),
    Case("cli-task-id-not-a-number", args=("tasks", "cancel", "abc"), names=("TASK_ID",)),
    Case("cli-date-impossible", args=("digest", "--date", "2026-13-01", "--stdout"),
         names=("2026-13-01",)),
    Case("cli-pause-unknown-job", args=("jobs", "pause", "no_such_job"),
         names=("no job 'no_such_job'",)),
    Case("cli-task-unknown-job", args=("tasks", "add", "no_such_job"),
         names=("no job 'no_such_job'",)),
    Case("cli-ticks-zero", args=("run", "--ticks", "0"), names=("--ticks",)),
    Case("cli-missing-argument", args=("jobs", "run"), names=("JOB_ID",)),
    Case("cli-status-filter-unknown", args=("tasks", "list", "--status", "weird"),
         names=("--status",)),
    Case("cli-ack-unknown-container", args=("ack", "web-typo"),
         names=("no container 'web-typo'",)),
    Case("cli-maintenance-unknown-container", args=("maintenance", "web-typo", "--for", "1h"),
         names=("no container 'web-typo'",)),
    Case("cli-type-not-utf8", args=("events", "--type", "caf\udce9"),
         names=("argument 3 'caf\\xe9' is not valid UTF-8 (byte 0xe9 at position 3)",)),
    Case("cli-container-not-utf8", args=("ack", "web\udcff"),
         names=("argument 2 'web\\xff' is not valid UTF-8 (byte 0xff at position 3)",)),
]


def _files(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir()) if home.exists() else []


@pytest.mark.parametrize("case", ENV_CASES + TOML_CASES + CLI_CASES, ids=lambda c: c.id)
def test_bad_input_is_one_clear_line_and_exit_2_with_nothing_written(
        case: Case, aegis_env: dict[str, str], tmp_path: Path) -> None:
    env = {**aegis_env, **case.env}
    if case.toml is not None:
        config = tmp_path / "aegis.toml"
        config.write_bytes(case.toml if isinstance(case.toml, bytes) else case.toml.encode())
        env["AEGIS_CONFIG"] = str(config)
    home = Path(aegis_env["AEGIS_HOME"])
    before = _files(home)

    result = run_cli(*case.args, env=env)

    assert result.returncode == case.code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aegis: ")
    for name in case.names:
        assert name in lines[0], lines[0]
    assert SECRET not in result.stderr
    assert _files(home) == before, "files appeared in AEGIS_HOME"
    url = aegis_env["AEGIS_DATABASE_URL"]
    assert rows(url, "SELECT event_type FROM episodic_memory") == []
    assert rows(url, "SELECT instance_id FROM daemons") == []
    assert rows(url, "SELECT id FROM tasks") == []
    assert rows(url, "SELECT name FROM containers") == []


def test_aegis_home_that_is_a_file_is_refused_in_one_line(
        aegis_env: dict[str, str], tmp_path: Path) -> None:
    not_a_folder = tmp_path / "home-file"
    not_a_folder.write_text("x")
    result = run_cli("run", "--once", env={**aegis_env, "AEGIS_HOME": str(not_a_folder)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert "AEGIS_HOME" in result.stderr
    assert not_a_folder.read_text() == "x"


def test_a_pid_file_holding_bytes_that_are_not_utf8_is_a_left_behind_one(
        aegis_env: dict[str, str]) -> None:
    home = Path(aegis_env["AEGIS_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "aegis.pid").write_bytes(b"\xff\xfe12\n")
    result = run_cli("run", "--once", env=aegis_env)
    assert result.returncode == 0, result.stderr
    url = aegis_env["AEGIS_DATABASE_URL"]
    assert [r["event_type"] for r in rows(
        url, "SELECT event_type FROM episodic_memory WHERE event_type LIKE 'daemon_%%' "
             "ORDER BY id")] == ["daemon_unclean_restart", "daemon_started", "daemon_stopped"]
    assert (home / "aegis.pid").read_bytes() == b""  # released on the way out


# --- rows inserted by hand into tasks ---

NOT_A_NUMBER = "ValueError: invalid literal for int() with base 10: 'not a number'"
TASK_ROWS = [
    # (job_id, args as SQL jsonb text, expected status, expected error; {run}: its run id,
    # {known}: the jobs the daemon runs)
    ("no_such_job", "{}", "failed", "unknown job 'no_such_job' (this daemon runs: {known})"),
    ("", "{}", "failed", "unknown job '' (this daemon runs: {known})"),
    ("bump", "[1, 2]", "failed", "args must be a JSON object, not list [1, 2]"),
    ("bump", '"seconds=1"', "failed", 'args must be a JSON object, not str "seconds=1"'),
    ("bump", '{"n": "not a number"}', "failed", "run {run} failed: " + NOT_A_NUMBER),
    ("bump", '{"n": 7}', "done", None),
]


def test_hand_inserted_task_rows_fail_cleanly_and_the_daemon_keeps_going(
        aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    env = daemon_env(aegis_env)
    known = ", ".join(sorted(job.id for job in load_jobs(load_settings(env))))
    process = spawn(env)
    wait_for(daemon_running(url), what="daemon")
    ids = [rows(url, "INSERT INTO tasks (job_id, args) VALUES (%s, %s::jsonb) RETURNING id",
                job_id, args)[0]["id"] for job_id, args, _, _ in TASK_ROWS]
    elsewhere = rows(url, "INSERT INTO tasks (job_id, host) VALUES ('bump', 'other-host') "
                          "RETURNING id")[0]["id"]
    wait_for(lambda: not rows(url, "SELECT 1 FROM tasks WHERE status IN ('pending', "
                                   "'running') AND id <> %s", elsewhere),
             what="every task closed")
    final = {r["id"]: r for r in rows(url, "SELECT id, status, error, run_id FROM tasks")}
    failed = {r["details"]["task_id"]: r for r in rows(
        url, "SELECT summary, importance, details FROM episodic_memory "
             "WHERE event_type = 'task_failed'")}
    for task_id, (job_id, _, status, error) in zip(ids, TASK_ROWS, strict=True):
        task = final[task_id]
        assert task["status"] == status, (job_id, task)
        if error is None:
            assert task["error"] is None, task
            assert task_id not in failed, task
            continue
        expected = error.format(run=task["run_id"], known=known)
        assert task["error"] == expected
        event = failed.pop(task_id)
        assert event["importance"] == "medium"
        assert event["summary"] == f"task {task_id} ({job_id or 'no job'}) failed: {expected}"
        assert event["details"] == {"task_id": task_id, "job": job_id,
                                    "run_id": task["run_id"], "error": expected}
    assert failed == {}, "a task_failed event for a task that did not fail"
    assert final[elsewhere]["status"] == "pending", "a task for another host was taken"
    assert process.poll() is None, "the daemon must keep running"
    wait_for(lambda: rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'beat' AND "
                               "status = 'ok' AND finished_at > now() - interval '2 s'"),
             what="scheduled jobs still running")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


# --- a spool file with lines that are not records ---


def test_a_spool_line_that_is_not_a_record_is_set_aside_and_the_rest_replayed(
        aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    spool = Path(aegis_env["AEGIS_HOME"]) / "spool.jsonl"
    events = [make_event("spooled_offline", f"written offline {n}", importance="medium",
                         host="test-host", source="test", details={"n": n}, timestamp=utcnow())
              for n in range(2)]
    bad = b'{"kind": "event", "summary": "caf\xe9 \xff\xfe"}'
    spool.write_bytes(json.dumps(event_record(events[0])).encode() + b"\n" + bad + b"\n"
                      + json.dumps(event_record(events[1])).encode() + b"\n")
    process = spawn(daemon_env(aegis_env))
    wait_for(daemon_running(url), what="daemon")
    wait_for(lambda: rows(url, "SELECT 1 FROM episodic_memory WHERE event_type = "
                               "'spool_record_set_aside'"), what="the spool replayed")
    replayed = rows(url, "SELECT uid::text AS uid FROM episodic_memory "
                         "WHERE event_type = 'spooled_offline' ORDER BY id")
    assert [r["uid"] for r in replayed] == [e.uid for e in events]
    set_aside = spool.with_name("spool.jsonl.set-aside")
    assert set_aside.read_bytes() == bad + b"\n"
    assert spool.read_bytes() == b""
    reports = rows(url, "SELECT summary, importance, details FROM episodic_memory "
                        "WHERE event_type = 'spool_record_set_aside'")
    assert reports == [{
        "summary": f"spool line 2 is not UTF-8 (byte 0xe9 at position 33): moved to "
                   f"{set_aside}", "importance": "high",
        "details": {"file": str(set_aside), "count": 1,
                    "lines": [{"line": 2, "reason": "not UTF-8 (byte 0xe9 at position 33)"}]}}]
    assert process.poll() is None, "the daemon must keep running"
    wait_for(lambda: rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'beat' AND "
                               "status = 'ok'"), what="scheduled jobs running")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


# --- containers: labels, probe output, names (a real engine; the clock is injected) ---

STRIKE = timedelta(seconds=60)
PROTOCOL = ["container_unhealthy", "container_restarted", "container_escalated"]
CONTAINER_CASES = [
    # (id, labels, probe command, what the escalation must carry, the events before the
    # protocol's three)
    ("labels-unparseable", {"aegis.max-restarts": "lots", "aegis.strike-interval": "5 parsecs",
                            "aegis.colour": "blue", "aegis.stop_timeout": "5s"}, "exit 1",
     None, ["container_bad_label"] * 3),
    # a window that does not parse is ignored: the protocol runs as without it
    ("window-label-unparseable", {"aegis.maintenance-window": "nightly/1h"}, "exit 1", None,
     ["container_bad_label"]),
    ("probe-output-huge", {}, "head -c 300000 /dev/zero | tr '\\0' x; exit 1", "xxxx", []),
    ("probe-output-not-utf8", {}, "printf 'caf\\351 \\377\\376 broken'; exit 1", "broken",
     []),
    ("probe-output-mentions-markdown", {},
     "echo '@everyone <@123> <@&456> **bold** `tick` [x](http://a)'; exit 1",
     "@everyone <@123> <@&456> **bold** `tick` [x](http://a)", []),
]


@pytest.fixture(scope="module")
def bystander(docker_client: Any, busybox_image: str) -> Iterator[Any]:
    """A healthy supervised container beside each case: nothing may touch it."""
    containers = Containers(docker_client, busybox_image)
    container = containers.run(IDLE, name=f"bystander_{uuid.uuid4().hex[:6]}",
                               labels={"aegis.enable": "true"}, healthcheck=PASSES)
    wait_health(docker_client, container, "healthy", 30)
    yield container
    containers.remove_all()


@pytest.mark.docker
@pytest.mark.usefixtures("engine_to_ourselves")
@pytest.mark.parametrize("case", CONTAINER_CASES, ids=lambda c: c[0])
def test_bad_container_input_is_recorded_and_pings_nobody(
        case: tuple[str, dict[str, str], str, str | None, list[str]], app: api.Aegis,
        docker_client: Any, make_container: Callable[..., Any], bystander: Any) -> None:
    case_id, labels, probe, carried, first_events = case
    # markdown in the name; Docker allows letters, digits, '_', '.', '-' (no '@' or '*')
    name = f"web__{uuid.uuid4().hex[:6]}.__{case_id}_"
    started = docker_client.api.inspect_container(bystander.id)["State"]["StartedAt"]
    container = make_container(
        IDLE, name=name, labels={"aegis.enable": "true", **labels},
        healthcheck={"test": ["CMD", "/bin/sh", "-c", probe], "interval": 1_000_000_000,
                     "timeout": 3_000_000_000, "retries": 1})
    fake = FakeDiscord()
    try:
        sv = Supervisor(app, docker_client, own_ids=frozenset())
        sv.settings = replace(app.settings, docker_scope=DockerScope.LABELED,
                              remediation=RemediationMode.ON, restart_backoff_s=0.0)
        wait_health(docker_client, container, "unhealthy", 30)
        t0 = utcnow()
        sv.reconcile(t0)
        sv.reconcile(t0 + STRIKE)
        wait_health(docker_client, container, "unhealthy", 30)
        sv.reconcile(t0 + 2 * STRIKE)

        # exactly the case's events, for this container only
        events = rows(app.db.dsn, "SELECT event_type, summary, details FROM episodic_memory "
                                  "ORDER BY id")
        assert [(e["event_type"], e["details"].get("container")) for e in events] == [
            (kind, name) for kind in first_events + PROTOCOL]
        escalated = events[-1]
        probe_output = escalated["details"].get("probe_output") or ""
        assert len(probe_output) <= PROBE_OUTPUT_CHARS + 1
        if carried:
            assert carried in probe_output
        if case_id == "labels-unparseable":
            problems = [e["summary"] for e in events if e["event_type"] == "container_bad_label"]
            # unknown aegis.* keys (aegis.colour) are left alone by design: tools and
            # tests put their own aegis.* labels on containers; a near miss is reported
            assert any("aegis.max-restarts" in p for p in problems)
            assert any("aegis.strike-interval" in p for p in problems)
            assert any("aegis.stop_timeout is unknown (did you mean aegis.stop-timeout?)" in p
                       for p in problems)

        # the bystander: not restarted, no strike, its row untouched by the incident
        assert docker_client.api.inspect_container(bystander.id)["State"]["StartedAt"] \
            == started
        assert rows(app.db.dsn, "SELECT name, phase, strikes, restarts, incident "
                                "FROM containers WHERE name <> %s", name) == [
            {"name": bystander.name, "phase": "ok", "strikes": 0, "restarts": [],
             "incident": 0}]

        sender = Sender(app, targets={Channel.ALERTS: [DiscordTarget(fake.webhook_url())],
                                      Channel.JOURNAL: []}, instance="badinput")
        sender.deliver(t0 + 3 * STRIKE)
        assert fake.rejected == []
        assert len(fake.received) == 1
        payload = fake.received[0]
        assert payload["allowed_mentions"] == {"parse": []}
        assert not mentions_would_ping(payload)
        assert validate_discord_payload(payload) == []
        # the name's markdown is shown as written: '_' escaped, '.' and '-' mid-line plain
        embed = payload["embeds"][0]
        shown = name.replace("_", "\\_")
        assert embed["title"] == f"{shown} escalated on test-host"
        assert {f["name"]: f["value"] for f in embed["fields"]} == {
            "host": "test-host", "container": shown, "image": "aegis-test-busybox:latest",
            "class": "unhealthy", "restarts": "1"}
        assert [f["name"] for f in embed["fields"]].count("host") == 1
        assert f"`aegis ack {name}`" in embed["description"]  # aegis's own markdown kept
        if carried:  # outside text in the description is escaped too
            assert escape_markdown(carried)[:200] in embed["description"]
        assert rows(app.db.dsn, "SELECT dedup_key, status FROM outbox") == [
            {"dedup_key": f"escalation:test-host:{name}:1", "status": "delivered"}]
    finally:
        fake.close()
        container.remove(force=True)
