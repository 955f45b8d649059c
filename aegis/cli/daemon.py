"""``aegis run``, ``status``, ``check`` and ``stop``: the daemon of this host."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import click

from aegis import api
from aegis.cli.common import fail, print_json, settings_of
from aegis.core.clock import utcnow
from aegis.core.config import Settings
from aegis.core.errors import AegisError
from aegis.core.processes import pid_alive
from aegis.scheduling.daemon import AlreadyRunning, Daemon, RunMode
from aegis.scheduling.heartbeat import DaemonStatus, file_status, read_heartbeat, read_pid
from aegis.storage import embedded


@click.command("run")
@click.option("--once", is_flag=True,
              help="Run every slot due or within its grace and the queued tasks, then exit "
                   "(0 when all succeeded).")
@click.option("--ticks", type=click.IntRange(min=1), help="Stop after N loop iterations.")
@click.pass_context
def run_command(ctx: click.Context, once: bool, ticks: int | None) -> None:
    """Run the daemon: scheduled jobs, container supervision, notifications."""
    settings = settings_of(ctx)
    registry = api.load_registry(settings)  # a broken job module stops it before any I/O
    with api.connect(settings, migrate=False, registry=registry) as app:
        try:
            code = Daemon(app, registry, RunMode(once=once, ticks=ticks)).run()
        except AlreadyRunning as exc:
            fail(str(exc))
    sys.exit(code)


def _local_status(settings: Settings) -> dict[str, Any]:
    now = utcnow()
    heartbeat = read_heartbeat(settings.home)
    pid = read_pid(settings.home) or (heartbeat.pid if heartbeat else None)
    alive = pid is not None and pid_alive(pid)
    status = file_status(heartbeat, now, settings.heartbeat_interval_s, alive=alive)
    return {
        "status": status.value,
        "pid": pid if alive else (heartbeat.pid if heartbeat else None),
        "host": settings.host,
        "instance_id": heartbeat.instance_id if heartbeat else None,
        "started_at": heartbeat.started_at.isoformat() if heartbeat else None,
        "last_heartbeat_at": heartbeat.last_heartbeat_at.isoformat() if heartbeat else None,
        "heartbeat_age_s": round((now - heartbeat.last_heartbeat_at).total_seconds(), 3)
        if heartbeat else None,
        "next_jobs": [],
    }


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """This host's daemon: running, stale, stopped or never_started."""
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


@click.command("check")
@click.pass_context
def check_command(ctx: click.Context) -> None:
    """Exit 0 when this host's daemon loop is alive (for a HEALTHCHECK); works without
    the database."""
    status = _local_status(settings_of(ctx))
    if status["status"] != DaemonStatus.RUNNING:
        fail(f"daemon is {status['status']}"
             + (f" (heartbeat {status['heartbeat_age_s']}s old)"
                if status["heartbeat_age_s"] is not None else ""))
    click.echo(f"ok: pid {status['pid']}, heartbeat {status['heartbeat_age_s']}s old")


@click.command("stop")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=30.0,
              show_default=True, help="Seconds to wait for the daemon to exit.")
@click.pass_context
def stop_command(ctx: click.Context, wait_s: float) -> None:
    """SIGTERM the local daemon, when its pid file and heartbeat agree."""
    settings = settings_of(ctx)
    pid, heartbeat = read_pid(settings.home), read_heartbeat(settings.home)
    if pid is None or not pid_alive(pid):
        fail("no daemon is running for this AEGIS_HOME")
    if heartbeat is None or heartbeat.pid != pid or heartbeat.status == DaemonStatus.STOPPED:
        fail(f"pid file names {pid} but the heartbeat does not agree; not signalling it")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        fail(f"sent SIGTERM to pid {pid}; it is still running after {wait_s:g}s")
    click.echo(f"stopped pid {pid}")


COMMANDS = (run_command, status_command, check_command, stop_command)
