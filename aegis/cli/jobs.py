"""``aegis jobs`` and ``aegis tasks``: scheduled jobs, their runs, and queued work."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from aegis import api
from aegis.cli.common import fail, format_time, print_json, print_table, with_app
from aegis.core.errors import UsageError
from aegis.scheduling.repository import JobRun, RunStatus
from aegis.scheduling.tasks import TaskStatus


def _parse_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--arg {pair!r}: use KEY=VALUE")
        try:
            args[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            args[key.strip()] = value
    return args


@click.group()
def jobs() -> None:
    """Scheduled jobs: list, history, run now, pause, resume."""


@jobs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_app()
def jobs_list(app: api.Aegis, as_json: bool) -> None:
    """Every job with its trigger, scope, next and last run (in the job's time zone, with
    its offset; --json: UTC, and the zone's name)."""
    found = app.scheduler.list_jobs()
    if as_json:
        print_json([job.to_json() for job in found])
        return
    rows = []
    for j in found:
        zone = j.shown_zone(app.settings.zone)
        rows.append((j.id, j.trigger, j.scope, j.source, format_time(j.next_run, zone),
                     format_time(j.last_run, zone), j.last_status or "-",
                     "paused" if j.paused else ("disabled" if not j.enabled else "")))
    print_table(rows, ["id", "trigger", "scope", "source", "next_run", "last_run",
                       "last_status", "flags"])


def run_note(run: JobRun, zone: ZoneInfo) -> str:
    """The error column of a run; a gap of missed slots says where it ends."""
    result = run.result if isinstance(run.result, dict) else {}
    if run.status == RunStatus.MISSED and result.get("missed_slots", 1) > 1:
        last = datetime.fromisoformat(result["last"])
        return f"{result['missed_slots']} slots missed, to {format_time(last, zone)}"
    return (run.error or "")[:60]


@jobs.command("history")
@click.argument("job_id", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_app()
def jobs_history(app: api.Aegis, job_id: str | None, limit: int, as_json: bool) -> None:
    """Recent runs, newest first."""
    runs = app.scheduler.history(job_id, limit)
    if as_json:
        print_json([run.to_json() for run in runs])
        return
    zones = app.scheduler.zones_of({r.job_id for r in runs})
    print_table([(str(r.id), r.job_id, r.host, r.trigger,
                  format_time(r.scheduled_for, zones[r.job_id]), r.status,
                  f"{r.duration_s:.2f}s" if r.duration_s is not None else "-",
                  run_note(r, zones[r.job_id])) for r in runs],
                ["run", "job", "host", "trigger", "scheduled_for", "status", "took", "error"])


@jobs.command("run")
@click.argument("job_id")
@click.option("--arg", "arg_pairs", multiple=True, help="KEY=VALUE handed to the job.")
@click.option("--wait", is_flag=True, help="Wait for the run and exit 0 only if it succeeded.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=600.0,
              show_default=True, help="With --wait: seconds to wait.")
@with_app()
def jobs_run(app: api.Aegis, job_id: str, arg_pairs: tuple[str, ...], wait: bool,
             timeout_s: float) -> None:
    """Queue a manual run of JOB_ID for the daemon."""
    task = app.scheduler.enqueue(job_id, _parse_args(arg_pairs), requested_by="cli")
    if not wait:
        click.echo(f"queued task {task.id} for {job_id}")
        return
    task = app.scheduler.wait_task(task.id, timeout_s)
    if task.status == TaskStatus.DONE:
        click.echo(f"task {task.id}: {job_id} run {task.run_id} succeeded")
        return
    if task.status in (TaskStatus.PENDING, TaskStatus.RUNNING):
        fail(f"task {task.id} is still {task.status} after {timeout_s:g}s "
             "(is the daemon running?)")
    fail(f"task {task.id}: {task.status}" + (f": {task.error}" if task.error else ""))


@jobs.command("pause")
@click.argument("job_id")
@with_app()
def jobs_pause(app: api.Aegis, job_id: str) -> None:
    """Stop running JOB_ID's scheduled slots on every daemon (within one heartbeat)."""
    app.scheduler.pause_job(job_id, by="cli")
    click.echo(f"paused {job_id}")


@jobs.command("resume")
@click.argument("job_id")
@with_app()
def jobs_resume(app: api.Aegis, job_id: str) -> None:
    """Run JOB_ID's scheduled slots again."""
    app.scheduler.resume_job(job_id, by="cli")
    click.echo(f"resumed {job_id}")


@click.group()
def tasks() -> None:
    """Queued one-off work (rows may also be INSERTed with SQL)."""


@tasks.command("add")
@click.argument("job_id")
@click.option("--arg", "arg_pairs", multiple=True, help="KEY=VALUE handed to the job.")
@with_app()
def tasks_add(app: api.Aegis, job_id: str, arg_pairs: tuple[str, ...]) -> None:
    """Queue JOB_ID with arguments."""
    task = app.scheduler.enqueue(job_id, _parse_args(arg_pairs), requested_by="cli")
    click.echo(f"queued task {task.id} for {job_id}")


@tasks.command("list")
@click.option("--status", type=click.Choice([s.value for s in TaskStatus]))
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_app()
def tasks_list(app: api.Aegis, status: str | None, limit: int, as_json: bool) -> None:
    """Tasks, newest first."""
    found = app.scheduler.tasks(status, limit)
    if as_json:
        print_json([task.to_json() for task in found])
        return
    print_table([(str(t.id), t.job_id, t.status, t.requested_by, format_time(t.created_at),
                  str(t.run_id or "-"), (t.error or "")[:60]) for t in found],
                ["id", "job", "status", "requested_by", "created_at", "run", "error"])


@tasks.command("cancel")
@click.argument("task_id", type=int)
@with_app()
def tasks_cancel(app: api.Aegis, task_id: int) -> None:
    """Cancel a pending task."""
    task = app.scheduler.cancel_task(task_id)
    if task is None:
        fail(f"task {task_id} has already started; it cannot be cancelled")
    click.echo(f"cancelled task {task_id}")


COMMANDS = (jobs, tasks)
