"""The ``aegis`` command. Exit codes: 0 ok, 1 a check failed, 2 bad usage or configuration.

Commands are thin: they parse arguments, call the Python API (aegis.api) and print.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from click.exceptions import NoArgsIsHelpError

from aegis import __version__, api, cli_supervision
from aegis.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    fail,
    format_time,
    print_json,
    print_table,
    settings_of,
    with_app,
)
from aegis.config import Settings, load_settings, utf8_problem
from aegis.errors import AegisError, ConfigError, DatabaseUnavailable, UsageError
from aegis.logs import configure_logging
from aegis.store import IMPORTANCE


class AegisGroup(click.Group):
    """Turns aegis's own errors into one line on stderr and the contract's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            fail(f"configuration error: {exc}", EXIT_USAGE)
        except UsageError as exc:
            fail(str(exc), EXIT_USAGE)
        except DatabaseUnavailable as exc:
            fail(f"database unreachable: {exc}")
        except AegisError as exc:
            fail(str(exc))


@click.group(cls=AegisGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aegis")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """aegis: scheduled jobs, container remediation and an event history for a Docker host."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(f"configuration error: {exc}", EXIT_USAGE)
    configure_logging(settings)
    ctx.ensure_object(dict)["settings"] = settings


for _command in cli_supervision.COMMANDS:  # containers, ack, maintenance, notify, outbox
    cli.add_command(_command)


# --- db ---


@cli.group()
def db() -> None:
    """The database: migrations and connection URL."""


@db.command("migrate")
@click.pass_context
def db_migrate(ctx: click.Context) -> None:
    """Apply pending migrations (safe to run twice, or from two processes at once)."""
    with api.connect(settings_of(ctx), migrate=False) as app:
        applied = app.db.migrate()
    if applied:
        click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        click.echo("database is up to date")


@db.command("url")
@click.pass_context
def db_url(ctx: click.Context) -> None:
    """Print the database URL (for psql); starts the embedded server if needed."""
    click.echo(api.database_url(settings_of(ctx), keep_embedded=True))


# --- events ---


def _check_since(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """Refuse a bad --since before any connection is made (exit 2, not 1)."""
    from aegis.clock import utcnow
    from aegis.durations import parse_since

    try:
        parse_since(value, utcnow())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@cli.command("events")
@click.option("--since", default=api.DEFAULT_EVENT_WINDOW, show_default=True,
              callback=_check_since,
              help="A duration back from now (24h, 7d) or an ISO-8601 time.")
@click.option("--type", "event_types", multiple=True, help="Only this event type (repeatable).")
@click.option("--importance", type=click.Choice(IMPORTANCE),
              help="Only events at this importance or above.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_app()
def events(app: api.Aegis, since: str, event_types: tuple[str, ...], importance: str | None,
           limit: int, as_json: bool) -> None:
    """The episodic event history, newest first."""
    found = app.memory.query(since=since, event_type=list(event_types) or None,
                             importance=importance, limit=limit)
    if as_json:
        print_json([event.to_json() for event in found])
        return
    print_table([(e.timestamp.strftime("%Y-%m-%d %H:%M:%S"), e.importance, e.event_type,
                  e.host, e.summary) for e in found],
                ["timestamp", "importance", "event_type", "host", "summary"])


# --- daemon ---


@cli.command("run")
@click.option("--once", is_flag=True,
              help="Run every slot due or within its grace and the queued tasks, then exit "
                   "(0 when all succeeded).")
@click.option("--ticks", type=click.IntRange(min=1), help="Stop after N loop iterations.")
@click.pass_context
def run_command(ctx: click.Context, once: bool, ticks: int | None) -> None:
    """Run the daemon: scheduled jobs, container supervision, notifications."""
    from aegis.daemon import AlreadyRunning, Daemon
    from aegis.registry import load_jobs

    settings = settings_of(ctx)
    registry = load_jobs(settings)
    with api.connect(settings, migrate=False) as app:
        app._registry = registry
        try:
            code = Daemon(app, registry, once=once, ticks=ticks).run()
        except AlreadyRunning as exc:
            fail(str(exc))
    sys.exit(code)


def _local_status(settings: Settings) -> dict[str, Any]:
    from aegis.clock import utcnow
    from aegis.heartbeat import daemon_status, pid_alive, read_heartbeat, read_pid

    now = utcnow()
    heartbeat = read_heartbeat(settings.home)
    pid = read_pid(settings.home) or (heartbeat.pid if heartbeat else None)
    alive = pid is not None and pid_alive(pid)
    status = daemon_status(heartbeat, alive, now, settings.heartbeat_interval_s)
    return {
        "status": status,
        "pid": pid if alive else (heartbeat.pid if heartbeat else None),
        "host": settings.host,
        "instance_id": heartbeat.instance_id if heartbeat else None,
        "started_at": heartbeat.started_at.isoformat() if heartbeat else None,
        "last_heartbeat_at": heartbeat.last_heartbeat_at.isoformat() if heartbeat else None,
        "heartbeat_age_s": round((now - heartbeat.last_heartbeat_at).total_seconds(), 3)
        if heartbeat else None,
        "next_jobs": [],
    }


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """This host's daemon: running, stale, stopped or never_started."""
    from aegis import embedded

    settings = settings_of(ctx)
    status = _local_status(settings)
    if not settings.embedded or embedded.is_running(settings.home):
        try:
            with api.connect(settings, migrate=False) as app:
                status["next_jobs"] = [
                    {"id": job.id, "next_run": job.next_run.isoformat()}
                    for job in sorted(app.scheduler.list_jobs(),
                                      key=lambda j: (j.next_run is None, j.next_run))
                    if job.next_run is not None and not job.paused][:5]
        except AegisError as exc:
            status["database_error"] = str(exc)
    if as_json:
        print_json(status)
        return
    for key, value in status.items():
        shown = (", ".join(f"{j['id']} at {j['next_run']}" for j in value) or "-"
                 if key == "next_jobs" else value)
        click.echo(f"{key + ':':<19}{'-' if shown is None else shown}")


@cli.command("check")
@click.pass_context
def check_command(ctx: click.Context) -> None:
    """Exit 0 when this host's daemon loop is alive (for a HEALTHCHECK); works without
    the database."""
    status = _local_status(settings_of(ctx))
    if status["status"] != "running":
        fail(f"daemon is {status['status']}"
             + (f" (heartbeat {status['heartbeat_age_s']}s old)"
                if status["heartbeat_age_s"] is not None else ""))
    click.echo(f"ok: pid {status['pid']}, heartbeat {status['heartbeat_age_s']}s old")


@cli.command("stop")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=30.0,
              show_default=True, help="Seconds to wait for the daemon to exit.")
@click.pass_context
def stop_command(ctx: click.Context, wait_s: float) -> None:
    """SIGTERM the local daemon, when its pid file and heartbeat agree."""
    import os
    import signal
    import time

    from aegis.heartbeat import pid_alive, read_heartbeat, read_pid

    settings = settings_of(ctx)
    pid, heartbeat = read_pid(settings.home), read_heartbeat(settings.home)
    if pid is None or not pid_alive(pid):
        fail("no daemon is running for this AEGIS_HOME")
    if heartbeat is None or heartbeat.pid != pid or heartbeat.status == "stopped":
        fail(f"pid file names {pid} but the heartbeat does not agree; not signalling it")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        fail(f"sent SIGTERM to pid {pid}; it is still running after {wait_s:g}s")
    click.echo(f"stopped pid {pid}")


# --- jobs ---


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



@cli.group()
def jobs() -> None:
    """Scheduled jobs: list, history, run now, pause, resume."""


@jobs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_app()
def jobs_list(app: api.Aegis, as_json: bool) -> None:
    """Every job with its trigger, scope, next and last run."""
    found = app.scheduler.list_jobs()
    if as_json:
        print_json([job.to_json() for job in found])
        return
    print_table([(j.id, j.trigger, j.scope, format_time(j.next_run), format_time(j.last_run),
                  j.last_status or "-", "paused" if j.paused else
                  ("disabled" if not j.enabled else "")) for j in found],
                ["id", "trigger", "scope", "next_run", "last_run", "last_status", "flags"])


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
    print_table([(str(r.id), r.job_id, r.host, r.trigger, format_time(r.scheduled_for),
                  r.status, f"{r.duration_s:.2f}s" if r.duration_s is not None else "-",
                  (r.error or "")[:60]) for r in runs],
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
    if task.status == "done":
        click.echo(f"task {task.id}: {job_id} run {task.run_id} succeeded")
        return
    if task.status in ("pending", "running"):
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


# --- tasks ---


@cli.group()
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
@click.option("--status", type=click.Choice(["pending", "running", "done", "failed",
                                             "cancelled"]))
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


# --- digest ---


@cli.command("digest")
@click.option("--date", "day_text", metavar="YYYY-MM-DD",
              help="The UTC day to summarize (default: today, UTC).")
@click.option("--stdout", "to_stdout", is_flag=True,
              help="Print the markdown instead of writing the journal file.")
@click.pass_context
def digest_command(ctx: click.Context, day_text: str | None, to_stdout: bool) -> None:
    """Write (or print) a day's digest from the database alone."""
    from aegis.clock import utcnow
    from aegis.digest import collect_day, parse_day, render_day
    from aegis.journal import write_day

    today = utcnow().date()
    day = parse_day(day_text, today=today) if day_text is not None else today
    settings = settings_of(ctx)
    with api.connect(settings) as app:
        text = render_day(collect_day(app.db, day))
    if to_stdout:
        click.echo(text, nl=False)
        return
    try:
        path = write_day(settings.journal_dir, day, text)
    except OSError as exc:
        fail(f"cannot write the journal file in {settings.journal_dir}: "
             f"{exc.strerror or exc}")
    click.echo(str(path))


# --- doctor ---


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array of {check, status, detail, hint}.")
@click.pass_context
def doctor_command(ctx: click.Context, as_json: bool) -> None:
    """Check the database, migrations, clock, Docker, channels, journal folder and daemon;
    exit 1 when any check fails."""
    from aegis.doctor import has_failures, run_checks

    checks = run_checks(settings_of(ctx))
    if as_json:
        print_json([check.to_json() for check in checks])
    else:
        width = max(len(check.check) for check in checks)
        for check in checks:
            click.echo(f"{check.status:<5} {check.check:<{width}}  {check.detail}")
            if check.hint:
                click.echo(f"{'':<5} {'':<{width}}  fix: {check.hint}")
    sys.exit(EXIT_FAILED if has_failures(checks) else EXIT_OK)


def main() -> None:
    for number, arg in enumerate(sys.argv[1:], 1):
        problem = utf8_problem(arg)
        if problem:
            try:  # the bytes as given: caf\xe9
                shown = arg.encode("utf-8", "surrogateescape").decode("utf-8",
                                                                     "backslashreplace")
            except UnicodeEncodeError:
                shown = arg.encode("utf-8", "backslashreplace").decode("utf-8")
            fail(f"argument {number} '{shown}' is not valid UTF-8 ({problem})", EXIT_USAGE)
    # click's own usage errors become one line and exit 2, like aegis's errors
    try:
        code = cli.main(prog_name="aegis", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        fail(exc.format_message().replace("\n", " ") + where, EXIT_USAGE)
    except click.ClickException as exc:
        fail(exc.format_message().replace("\n", " "), exc.exit_code)
    except click.Abort:
        fail("aborted", EXIT_FAILED)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
