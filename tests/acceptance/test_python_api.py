"""The Python API through its public names only, and the documented example run as is."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import aegis
from tests.support.cli import clean_environ
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


def documented_example() -> str:
    text = (REPO / "docs" / "python-api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/python-api.md has no python example"
    return str(blocks[0])


def test_the_documented_example_runs(aegis_env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(documented_example(), encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], env=clean_environ(aegis_env),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "manual run: manual ok {'rotated': 3}" in result.stdout
    assert "event: deploy_finished web rolled out {'version': '1.4.2'}" in result.stdout
    assert "state: {'version': '1.4.2'}" in result.stdout
    assert "rotate_logs" in result.stdout


@pytest.mark.serial  # nothing may run in a window of real time
def test_scheduler_memory_and_state_through_the_public_api(settings: aegis.Settings) -> None:
    ran: list[str] = []

    def heartbeat_job(ctx: aegis.JobContext) -> dict[str, str]:
        ran.append(ctx.trigger)
        return {"trigger": ctx.trigger}

    with aegis.connect(settings) as app:
        sched = app.scheduler
        sched.add_job(heartbeat_job, id="api_tick", trigger=aegis.every(seconds=1))
        sched.start()
        try:
            assert [j.id for j in sched.list_jobs() if j.id == "api_tick"] == ["api_tick"]
            wait_for(lambda: len(ok_runs(sched)) >= 2, 20)

            sched.pause_job("api_tick")
            time.sleep(1.5)  # let a slot that was already claimed finish
            paused_count = len(ok_runs(sched))
            time.sleep(2.5)  # two more slots pass while paused
            assert len(ok_runs(sched)) == paused_count
            assert next(j for j in sched.list_jobs() if j.id == "api_tick").paused

            sched.resume_job("api_tick")
            wait_for(lambda: len(ok_runs(sched)) > paused_count, 20)

            manual = sched.run_job("api_tick", wait=True)
            assert isinstance(manual, aegis.JobRun)
            assert (manual.trigger, manual.status, manual.result) == (
                "manual", "ok", {"trigger": "manual"})
        finally:
            sched.stop()
        assert not sched.running
        history = sched.history("api_tick", limit=100)
        # the slot current at start runs as a catch-up, then slots run on schedule
        assert {r.trigger for r in history} == {"catch_up", "schedule", "manual"}
        assert len({r.scheduled_for for r in history}) == len(history)

        event = app.memory.record("backup_checked", "nightly backup is fine",
                                  importance="medium", details={"size_gb": 12})
        found = app.memory.query(since="1h", event_type="backup_checked",
                                 importance="medium")
        assert [(e.uid, e.summary, e.details) for e in found] == [
            (event.uid, "nightly backup is fine", {"size_gb": 12})]
        assert app.memory.query(since="1h", event_type="backup_checked",
                                importance="high") == []

        assert app.state.get("favourite", "none") == "none"
        app.state.set("favourite", {"colour": "green", "n": [1, 2]})
        assert app.state.get("favourite") == {"colour": "green", "n": [1, 2]}


def ok_runs(sched: aegis.SchedulerControl) -> list[aegis.JobRun]:
    return [r for r in sched.history("api_tick", limit=100)
            if r.status == "ok" and r.trigger == "schedule"]



def test_a_strictly_typed_client_passes_mypy(tmp_path: Path) -> None:
    client = tmp_path / "client.py"
    client.write_text('''
from datetime import UTC, datetime

import aegis
from aegis.core.config import Settings


def job(ctx: aegis.JobContext) -> dict[str, int]:
    return {"n": 1}


def main() -> None:
    with aegis.connect() as app:
        app.scheduler.add_job(job, id="typed", trigger=aegis.cron("30 8 * * *"))
        app.scheduler.add_job(job, id="once", trigger=aegis.once(datetime.now(UTC)))
        runs: list[aegis.JobRun] = app.scheduler.history("typed")
        infos: list[aegis.JobInfo] = app.scheduler.list_jobs()
        events: list[aegis.Event] = app.memory.query(since="7d", importance="high")
        app.state.set("k", 1)
        value: object = app.state.get("k")
        print(runs, infos, events, value)
''', encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", str(client)],
                            capture_output=True, text=True, check=False, cwd=REPO)
    assert result.returncode == 0, result.stdout
