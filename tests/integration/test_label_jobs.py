"""Label jobs on the real engine, run by real daemons: a job a container's labels declare
runs on its schedule, never twice at once without overlap, is stopped at its timeout, goes
with its container and comes with one started after aegis; Ofelia's README example runs
unchanged; scope=service runs once per slot across two daemons; bad labels are events and
doctor lines while another job keeps running."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from aegis.supervision.labeljobs.execute import RUN_MARK, signal_inside
from tests.support.cli import run_cli
from tests.support.containers import IDLE
from tests.support.daemons import Spawner, daemon_env, daemon_running
from tests.support.rows import count, events_of_type, runs_of, sql_rows
from tests.support.supervision import SocketProxy
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker]


def label_daemon(spawn: Spawner, aegis_env: dict[str, str], **settings: str
                 ) -> subprocess.Popen[bytes]:
    """A daemon running label jobs only (no job module, no supervision), its labels swept
    every 2 s; running once it returns."""
    process = spawn(daemon_env(aegis_env, **{"AEGIS_JOB_MODULES": "",
                                             "AEGIS_LOG_LEVEL": "info",
                                             "AEGIS_LABEL_JOBS_SWEEP": "2s", **settings}))
    wait_for(daemon_running(aegis_env["AEGIS_DATABASE_URL"],
                            settings.get("AEGIS_HOST", "test-host")), what="the daemon")
    return process


def job_labels(name: str, **keys: str) -> dict[str, str]:
    return {f"aegis.job.{name}.{key.replace('_', '-')}": value for key, value in keys.items()}


def test_a_job_every_2s_runs_3_to_5_times_in_10s_and_goes_with_its_container(
        spawn: Spawner, aegis_env: dict[str, str], make_container: Callable[..., Any]) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    label_daemon(spawn, aegis_env)
    # started after aegis: found from the event stream
    container = make_container(IDLE, healthcheck=None, labels=job_labels(
        "tick", schedule="@every 2s", command="echo tick from $HOSTNAME; echo oops >&2"))
    job_id = f"{container.name}.tick"
    first = wait_for(lambda: runs_of(url, job_id, "ok"), timeout_s=20, what="the first run")[0]
    time.sleep(10.5)
    window_end = first["scheduled_for"] + timedelta(seconds=10)
    ran = [r for r in runs_of(url, job_id, "ok")
           if first["scheduled_for"] <= r["scheduled_for"] < window_end]
    assert 3 <= len(ran) <= 5
    assert ran[0]["result"]["exit_code"] == 0
    assert "tick from" in ran[0]["result"]["output"]
    assert "oops" in ran[0]["result"]["output"]
    assert ran[0]["host"] == "test-host"
    [registered] = events_of_type(url, "label_job_registered")
    assert registered["details"]["job"] == job_id

    listed = run_cli("jobs", "list", env=aegis_env)
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(job_id)]
    assert f"label: {container.name}" in line
    assert "every 2 seconds" in line

    container.remove(force=True)
    wait_for(lambda: events_of_type(url, "label_job_unregistered"), timeout_s=10,
             what="the job unregistered")
    time.sleep(3)  # no run after the container went, and only one unregistration
    last = runs_of(url, job_id)[-1]
    time.sleep(3)
    assert runs_of(url, job_id)[-1]["id"] == last["id"]
    assert len(events_of_type(url, "label_job_unregistered")) == 1
    assert len(runs_of(url, job_id, "ok")) >= 3  # its history stays
    wait_for(lambda: not sql_rows(url, "SELECT 1 FROM jobs WHERE id = %s", job_id),
             timeout_s=10, what="its row gone from jobs")


def test_pause_resume_and_run_now_treat_a_label_job_like_any_other(
        spawn: Spawner, aegis_env: dict[str, str], make_container: Callable[..., Any]) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    label_daemon(spawn, aegis_env)
    container = make_container(IDLE, healthcheck=None, labels=job_labels(
        "hourly", schedule="@hourly", command="echo by hand"))
    job_id = f"{container.name}.hourly"
    wait_for(lambda: sql_rows(url, "SELECT 1 FROM jobs WHERE id = %s AND source = %s",
                              job_id, f"label: {container.name}"),
             timeout_s=15, what="the job advertised with its source")
    ran = run_cli("jobs", "run", job_id, "--wait", "--timeout", "30", env=aegis_env)
    assert ran.returncode == 0, ran.stderr
    [manual] = runs_of(url, job_id, "ok")
    assert (manual["trigger"], manual["result"]["output"]) == ("manual", "by hand\n")
    history = run_cli("jobs", "history", job_id, env=aegis_env)
    assert "manual" in history.stdout

    ticking = make_container(IDLE, healthcheck=None, labels=job_labels(
        "tick", schedule="@every 2s", command="true"))
    tick_id = f"{ticking.name}.tick"
    wait_for(lambda: runs_of(url, tick_id, "ok"), timeout_s=15, what="a run")
    assert run_cli("jobs", "pause", tick_id, env=aegis_env).returncode == 0
    time.sleep(3)  # a heartbeat for the daemon to hear of it
    before = len(runs_of(url, tick_id))
    time.sleep(5)
    assert len(runs_of(url, tick_id)) == before
    assert run_cli("jobs", "resume", tick_id, env=aegis_env).returncode == 0
    wait_for(lambda: len(runs_of(url, tick_id)) > before, timeout_s=15, what="runs again")


def test_without_overlap_a_slow_command_never_runs_twice_at_once_and_slots_are_skipped(
        spawn: Spawner, aegis_env: dict[str, str], make_container: Callable[..., Any]) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    label_daemon(spawn, aegis_env)
    container = make_container(IDLE, healthcheck=None, labels=job_labels(
        "slow", schedule="@every 2s", command="sleep 3"))
    job_id = f"{container.name}.slow"
    wait_for(lambda: len(runs_of(url, job_id, "ok")) >= 2 and runs_of(url, job_id, "skipped"),
             timeout_s=30, what="two runs and a skip")
    finished = runs_of(url, job_id, "ok")
    for earlier, later in itertools.pairwise(finished):
        assert earlier["finished_at"] <= later["started_at"]
    skipped = runs_of(url, job_id, "skipped")
    assert all("overlap" in r["error"] for r in skipped)


def test_a_timeout_kills_the_command_in_the_container(
        spawn: Spawner, aegis_env: dict[str, str], make_container: Callable[..., Any],
        docker_client: Any) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    label_daemon(spawn, aegis_env)
    container = make_container(IDLE, healthcheck=None, labels=job_labels(
        "stuck", schedule="@every 30s", command="sleep 301", timeout="2s"))
    job_id = f"{container.name}.stuck"
    [timed_out] = wait_for(lambda: runs_of(url, job_id, "timeout"), timeout_s=45,
                           what="a run closed as timeout")
    assert "timeout" in timed_out["error"]

    def processes() -> str:
        return str(container.exec_run(["ps", "-o", "pid,args"]).output.decode())

    wait_for(lambda: "sleep 301" not in processes(), timeout_s=15,
             what="the command gone from the container")
    assert "sleep 301" not in processes()
    [failed] = wait_for(lambda: events_of_type(url, "label_job_failed"), timeout_s=15,
                        what="the failure recorded")
    assert "timed out" in failed["details"]["reason"]
    [queued] = sql_rows(url, "SELECT thread, state FROM outbox WHERE thread LIKE %s",
                        f"label_job:{job_id}:%")
    assert queued["state"] == "escalated"


def test_a_failing_job_is_one_living_message_until_it_recovers(
        spawn: Spawner, aegis_env: dict[str, str], make_container: Callable[..., Any]) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    label_daemon(spawn, aegis_env)
    # fails until /ok exists
    container = make_container(IDLE, healthcheck=None, labels=job_labels(
        "check", schedule="@every 2s", command="test -f /ok || { echo missing; exit 3; }"))
    job_id = f"{container.name}.check"
    wait_for(lambda: len(runs_of(url, job_id, "failed")) >= 2, timeout_s=20, what="two failures")
    failed = runs_of(url, job_id, "failed")[0]
    assert (failed["error"], failed["result"]["exit_code"]) == ("exit code 3", 3)
    assert "missing" in failed["result"]["output"]
    container.exec_run(["touch", "/ok"])
    wait_for(lambda: events_of_type(url, "label_job_recovered"), timeout_s=20, what="the recovery")
    rows = sql_rows(url, "SELECT thread, state, edit_only FROM outbox WHERE thread LIKE %s "
                         "ORDER BY id", f"label_job:{job_id}:%")
    assert len({row["thread"] for row in rows}) == 1  # one message, edited
    assert rows[0]["edit_only"] is False
    assert rows[1]["edit_only"] is True
    assert rows[-1]["state"] == "recovered"


def test_a_stopped_container_s_slots_are_skipped_with_the_reason(
        spawn: Spawner, aegis_env: dict[str, str], make_container: Callable[..., Any]) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    label_daemon(spawn, aegis_env)
    container = make_container(IDLE, healthcheck=None, labels=job_labels(
        "tick", schedule="@every 2s", command="true"))
    job_id = f"{container.name}.tick"
    wait_for(lambda: runs_of(url, job_id, "ok"), timeout_s=20, what="a run")
    container.stop(timeout=1)
    skipped = wait_for(lambda: [r for r in runs_of(url, job_id, "skipped")
                                if "exited" in (r["error"] or "")],
                       timeout_s=15, what="a skipped slot")
    assert f"container {container.name} is exited" in skipped[0]["error"]


def test_the_ofelia_readme_example_runs_unchanged(
        spawn: Spawner, aegis_env: dict[str, str], make_container: Callable[..., Any]) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    label_daemon(spawn, aegis_env)
    container = make_container(IDLE, healthcheck=None, labels={
        "ofelia.enabled": "true",
        "ofelia.job-exec.test-exec-job.schedule": "@every 5s",
        "ofelia.job-exec.test-exec-job.command": "uname -a"})
    [run] = wait_for(lambda: runs_of(url, f"{container.name}.test-exec-job", "ok")[:1],
                     timeout_s=20, what="a run of the Ofelia job")
    assert run["result"]["output"].startswith("Linux")


def test_scope_service_runs_once_per_slot_across_two_daemons(
        spawn: Spawner, aegis_env: dict[str, str], make_container: Callable[..., Any],
        tmp_path: Any) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    project = f"aegis-test-{uuid.uuid4().hex[:8]}"
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": "db",
              **job_labels("stamp", schedule="@every 2s", scope="service",
                           command="echo $HOSTNAME")}
    make_container(IDLE, healthcheck=None, labels=labels, name=f"{project}-db-1")
    make_container(IDLE, healthcheck=None, labels=labels, name=f"{project}-db-2")
    label_daemon(spawn, aegis_env, AEGIS_HOST="host-a")
    label_daemon(spawn, {**aegis_env, "AEGIS_HOME": str(tmp_path / "home-b")},
                 AEGIS_HOST="host-b")
    job_id = f"{project}-db.stamp"
    wait_for(lambda: len(runs_of(url, job_id, "ok")) >= 6, timeout_s=30, what="six runs")
    time.sleep(4)
    done = [r for r in runs_of(url, job_id) if r["status"] != "running"]
    slots = [r["scheduled_for"] for r in done]
    assert len(slots) == len(set(slots))  # each slot once, across both daemons
    assert {r["scope_key"] for r in done} == {"cluster"}
    # no slot left out between the first and the last
    assert (slots[-1] - slots[0]).total_seconds() / 2 + 1 == len(slots)


def test_bad_labels_are_events_and_doctor_lines_while_another_job_runs(
        spawn: Spawner, aegis_env: dict[str, str], make_container: Callable[..., Any]) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    good = make_container(IDLE, healthcheck=None, labels=job_labels(
        "tick", schedule="@every 2s", command="true"))
    bad = make_container(IDLE, healthcheck=None, labels={
        **job_labels("sched", schedule="@often", command="true"),
        **job_labels("nocmd", schedule="@hourly"),
        **job_labels("keyed", schedule="@hourly", command="true", colour="red"),
        **job_labels("twice", schedule="@hourly", command="true"),
        "ofelia.enabled": "true", "ofelia.job-exec.twice.schedule": "@hourly",
        "ofelia.job-exec.twice.command": "true"})
    label_daemon(spawn, aegis_env)
    expected = {"aegis.job.sched.schedule", "aegis.job.nocmd.command",
                "aegis.job.keyed.colour", "aegis.job.twice", "ofelia.job-exec.twice"}
    wait_for(lambda: {e["details"]["label"] for e in events_of_type(url, "label_job_invalid")}
             == expected, timeout_s=20, what="an event for each bad label")
    wait_for(lambda: len(runs_of(url, f"{good.name}.tick", "ok")) >= 2, timeout_s=20,
             what="the good job running")
    time.sleep(5)  # two sweeps later: still one event per label
    invalid = events_of_type(url, "label_job_invalid")
    assert len(invalid) == len(expected)
    assert all(e["details"]["container"] == bad.name for e in invalid)
    assert count(url, "label_job_registered") == 1

    # created and started after aegis: told once for its start, again after a restart
    later = make_container(IDLE, healthcheck=None, labels=job_labels("sched",
                                                                      schedule="@often",
                                                                      command="true"))
    wait_for(lambda: count(url, "label_job_invalid", later.name) == 1, timeout_s=10,
             what="the later container's bad label told")
    time.sleep(3)
    assert count(url, "label_job_invalid", later.name) == 1
    later.restart(timeout=1)
    wait_for(lambda: count(url, "label_job_invalid", later.name) == 2, timeout_s=10,
             what="told again after a restart")

    doctor = run_cli("doctor", env={**aegis_env, "AEGIS_LABEL_JOBS_RUN": "on"})
    lines = [line for line in doctor.stdout.splitlines() if bad.name in line]
    for label in expected:
        assert any(label in line for line in lines), (label, doctor.stdout)
    assert "AEGIS_LABEL_JOBS_RUN=on" in doctor.stdout


def test_ofelia_job_run_starts_a_container_only_when_allowed_and_removes_it(
        spawn: Spawner, aegis_env: dict[str, str], make_container: Callable[..., Any],
        busybox_image: str, docker_client: Any) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    label_daemon(spawn, aegis_env, AEGIS_LABEL_JOBS_RUN="on")
    container = make_container(IDLE, healthcheck=None, labels={
        "ofelia.enabled": "true", "ofelia.job-run.hello.schedule": "@every 2s",
        "ofelia.job-run.hello.image": busybox_image, "ofelia.job-run.hello.network": "none",
        "ofelia.job-run.hello.command": "echo hello from a new container"})
    job_id = f"{container.name}.hello"
    [run] = wait_for(lambda: runs_of(url, job_id, "ok")[:1], timeout_s=20,
                     what="a run in a new container")
    assert run["result"]["output"] == "hello from a new container\n"
    container.remove(force=True)
    wait_for(lambda: events_of_type(url, "label_job_unregistered"), timeout_s=10,
             what="the job unregistered")
    wait_for(lambda: not docker_client.containers.list(
        all=True, filters={"label": f"aegis.job-run.of={job_id}"}), timeout_s=15,
        what="every container it started removed")


def test_containers_come_and_go_while_the_engine_is_away_and_are_seen_when_it_is_back(
        spawn: Spawner, aegis_env: dict[str, str], make_container: Callable[..., Any],
        proxy: SocketProxy) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    # the sweep is far off: what is seen after the outage is seen on reconnecting
    label_daemon(spawn, aegis_env, DOCKER_HOST=f"unix://{proxy.path}",
                 AEGIS_LABEL_JOBS_SWEEP="10m")
    before = make_container(IDLE, healthcheck=None, labels=job_labels(
        "tick", schedule="@every 2s", command="true"))
    wait_for(lambda: runs_of(url, f"{before.name}.tick", "ok"), timeout_s=20, what="a run")
    proxy.drop()
    before.remove(force=True)
    after = make_container(IDLE, healthcheck=None, labels=job_labels(
        "tock", schedule="@every 2s", command="true"))
    time.sleep(4)  # slots fall due meanwhile: their runs fail, nothing stops
    proxy.start()
    wait_for(lambda: runs_of(url, f"{after.name}.tock", "ok"), timeout_s=30,
             what="the job of the container started while the engine was away")
    [gone] = wait_for(lambda: events_of_type(url, "label_job_unregistered"), timeout_s=10,
                      what="the job of the container removed meanwhile unregistered")
    assert gone["details"]["job"] == f"{before.name}.tick"


def test_a_container_recreated_with_other_labels_changes_its_job(
        spawn: Spawner, aegis_env: dict[str, str], make_container: Callable[..., Any]) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    label_daemon(spawn, aegis_env)
    name = f"aegis-test-{uuid.uuid4().hex[:8]}-app"
    first = make_container(IDLE, healthcheck=None, name=name, labels=job_labels(
        "say", schedule="@every 2s", command="echo one"))
    job_id = f"{name}.say"
    wait_for(lambda: runs_of(url, job_id, "ok"), timeout_s=20, what="a run of the first")
    # as compose recreates: the old one renamed aside, the new one made, the old removed
    first.rename(f"{first.id[:12]}_{name}")
    make_container(IDLE, healthcheck=None, name=name, labels=job_labels(
        "say", schedule="@every 2s", command="echo two"))
    first.remove(force=True)
    wait_for(lambda: runs_of(url, job_id, "ok")[-1]["result"]["output"] == "two\n",
             timeout_s=20, what="a run of the new command")
    assert runs_of(url, job_id, "ok")[0]["result"]["output"] == "one\n"
    assert [e["details"]["job"] for e in events_of_type(url, "label_job_registered")] == [
        job_id, job_id]  # never under the name set aside
    [gone] = events_of_type(url, "label_job_unregistered")
    assert gone["details"]["reason"] == "its container is being replaced"


def test_a_command_is_signalled_from_inside_its_container_by_its_mark(
        make_container: Callable[..., Any], docker_client: Any) -> None:
    """How a timeout stops a command when aegis cannot see the host's processes (aegis in
    a container without pid: host): every process carrying the exec's mark, and no other."""
    container = make_container(IDLE, healthcheck=None)
    api = docker_client.api
    for mark, command in (("m1", "sleep 302 & sleep 303"), ("m2", "sleep 304")):
        exec_id = api.exec_create(container.id, ["/bin/sh", "-c", command],
                                  environment=[f"{RUN_MARK}={mark}"])["Id"]
        api.exec_start(exec_id, detach=True)

    def processes() -> str:
        return str(container.exec_run(["ps", "-o", "pid,args"]).output.decode())

    wait_for(lambda: all(f"sleep {n}" in processes() for n in (302, 303, 304)),
             what="the three commands running")
    assert signal_inside(api, container.id, "m1", signal.SIGTERM)
    wait_for(lambda: "sleep 302" not in processes() and "sleep 303" not in processes(),
             timeout_s=10, what="the marked commands gone")
    assert "sleep 304" in processes()  # another exec's, untouched
    assert signal_inside(api, container.id, "m2", signal.SIGKILL)
    wait_for(lambda: "sleep 304" not in processes(), timeout_s=10, what="the second gone")
