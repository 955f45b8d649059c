"""The daemon: one per host and AEGIS_HOME.

The loop reads like a paragraph: run what is due, take queued tasks, close timed-out
runs and report overrunning ones, heartbeat (and watch for silent jobs), then sleep until
the next due time, deadline, heartbeat or wake-up.
Beside it run the registry's services (the HTTP endpoint, the outbox sender, the Docker
events watcher...), each in a thread of its own; at the end each is drained.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType
from typing import Any, TextIO

from aegis.core.clock import utcnow
from aegis.core.errors import AegisError, DatabaseUnavailable, StoreError
from aegis.core.logs import get_logger
from aegis.core.redact import redact_urls
from aegis.scheduling.deadlines import watch_jobs
from aegis.scheduling.heartbeat import (
    PID_FILE,
    DaemonStatus,
    Heartbeat,
    home_id,
    read_heartbeat,
    stale_after_s,
    write_heartbeat,
)
from aegis.scheduling.registry import Registry, Service
from aegis.scheduling.repository import Runs
from aegis.scheduling.scheduler import Scheduler
from aegis.scheduling.tasks import TASK_CHANNEL, TaskQueue
from aegis.storage.events import EventType, Importance
from aegis.storage.runtime import Runtime
from aegis.version import __version__

MAX_SLEEP_S = 60.0
SERVICE_JOIN_S = 5.0
HEARTBEAT_PING_TIMEOUT_S = 5.0


class AlreadyRunning(AegisError):
    """Another daemon runs for this host or AEGIS_HOME."""


@dataclass(frozen=True)
class RunMode:
    """How long a daemon runs, and whether the process's signals are its own."""

    # one pass: the slots due or within their grace and the queued tasks, then exit
    # (aegis run --once)
    once: bool = False
    # stop after this many turns of the loop (aegis run --ticks)
    ticks: int | None = None
    # SIGTERM and SIGINT stop it; False in a thread of a process that keeps its own
    # handlers (Aegis.scheduler.start, tests)
    handle_signals: bool = True


UNTIL_STOPPED = RunMode()


class Daemon:
    def __init__(self, runtime: Runtime, registry: Registry, mode: RunMode = UNTIL_STOPPED,
                 *, clock: Callable[[], datetime] = utcnow) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.runs = Runs(runtime.db)
        self.registry = registry
        self.mode = mode
        self.clock = clock
        self.log = get_logger()
        self.instance_id = f"{self.settings.host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.started = threading.Event()
        self.scheduler = Scheduler(runtime, registry, instance_id=self.instance_id,
                                   clock=clock, wake=self.wake)
        self.tasks = TaskQueue(self.scheduler)
        self.started_at = clock()
        self._threads: list[threading.Thread] = []
        self._pid_handle: TextIO | None = None
        self._db_ready = False
        self._signals_received = 0
        self._ping_busy = threading.Lock()
        self._lease_lost = False

    # --- the whole life ---

    def run(self) -> int:
        """Run until stopped (or one pass with ``once``); return the exit code."""
        unclean = self._take_pid_file()
        try:
            self._ensure_database()
        except BaseException:
            self._release_pid_file()
            raise
        try:
            if self.mode.handle_signals:
                self._install_signal_handlers()
            self._start(unclean)
            self.started.set()
            if self.mode.once:
                return self._run_once()
            self._loop()
            return 0
        finally:
            self._stop()

    def request_stop(self) -> None:
        self.stop_event.set()
        self.wake.set()

    def _start(self, unclean: bool) -> None:
        if unclean:
            self.runtime.store.record_event(
                EventType.DAEMON_UNCLEAN_RESTART, "aegis restarted after a daemon on this host "
                "ended without shutting down", importance=Importance.HIGH,
                details={"instance_id": self.instance_id, "pid": os.getpid()})
        self.runtime.store.record_event(
            EventType.DAEMON_STARTED, f"aegis {__version__} started on {self.settings.host}",
            details={"instance_id": self.instance_id, "pid": os.getpid(),
                     "jobs": [job.id for job in self.registry]})
        if not self.mode.once:
            # new tasks wake the loop
            self.runtime.db.subscribe(TASK_CHANNEL, self.wake)
            for service in self.registry.services:
                self._start_thread(service.name, self._run_service, service)
        self._refresh_from_database()
        self.scheduler.start()
        self._heartbeat()

    def _loop(self) -> None:
        ticks = 0
        next_heartbeat = self.clock() + timedelta(seconds=self.settings.heartbeat_interval_s)
        while not self.stop_event.is_set():
            self.wake.clear()
            self.scheduler.run_pending()
            self.scheduler.claim_ahead()
            if self._db_ready:
                self.scheduler.advertise_changes()
            self._claim_tasks()
            self.scheduler.runner.reap_timeouts()
            self.scheduler.runner.report_overruns()
            ticks += 1
            if self.mode.ticks is not None and ticks >= self.mode.ticks:
                break
            if self.clock() >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = self.clock() + timedelta(
                    seconds=self.settings.heartbeat_interval_s)
            self.wake.wait(self._sleep_s(next_heartbeat))

    def _run_once(self) -> int:
        self._claim_tasks()
        runner = self.scheduler.runner
        while self.scheduler.run_backlog() or runner.in_flight():
            runner.reap_timeouts()
            runner.report_overruns()
            self.wake.wait(0.2)
            self.wake.clear()
        self._watch_jobs()
        self._services_once()
        outcomes = self.scheduler.outcomes
        runs = sum(outcomes.values())
        failed = runs - outcomes["ok"]
        self.log.info("run_once_finished", runs=runs, failed=failed)
        return 0 if failed == 0 else 1

    def _stop(self) -> None:
        self.stop_event.set()
        runner = self.scheduler.runner
        if runner.in_flight():
            self.log.info("shutdown_waiting_for_jobs", jobs=sorted(runner.running_jobs()),
                          grace_s=self.settings.shutdown_grace_s)
            if not runner.wait_idle(self.settings.shutdown_grace_s):
                for execution in runner.interrupt_all("the daemon stopped before it finished"):
                    self.log.warning("job_interrupted", job=execution.job.id,
                                     run_id=execution.run_id)
        self._drain_services()
        self.scheduler.release_claimed_ahead("the daemon stopped before its slot")
        try:
            self.runtime.store.record_event(
                EventType.DAEMON_STOPPED, f"aegis stopped on {self.settings.host}",
                details={"instance_id": self.instance_id, "pid": os.getpid()})
            self._write_heartbeat(DaemonStatus.STOPPED)
            if self._db_ready:
                self._upsert_daemon(DaemonStatus.STOPPED)
                self.runs.release_host_lease(self.settings.host, self.instance_id)
        except StoreError as exc:
            self.log.warning("daemon_stop_not_recorded", error=str(exc))
        self.runtime.db.unsubscribe(TASK_CHANNEL, self.wake)
        for thread in self._threads:
            thread.join(SERVICE_JOIN_S)
        self._release_pid_file()
        self.log.info("daemon_exited", instance_id=self.instance_id)

    # --- single instance ---

    def _take_pid_file(self) -> bool:
        """Lock AEGIS_HOME/aegis.pid for this process; True when a previous daemon left it
        behind without a clean shutdown."""
        home = self.settings.home
        home.mkdir(parents=True, exist_ok=True)
        # a pid file someone wrote garbage into is read, not a reason to crash
        handle = open(home / PID_FILE, "a+", encoding="utf-8", errors="replace")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyRunning(f"aegis is already running for {home} (pid {pid})") from None
        handle.seek(0)
        left_behind = handle.read().strip()
        heartbeat = read_heartbeat(home)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._pid_handle = handle
        return bool(left_behind) or (heartbeat is not None
                                     and heartbeat.status != DaemonStatus.STOPPED)

    def _release_pid_file(self) -> None:
        if self._pid_handle is not None:
            self._pid_handle.seek(0)
            self._pid_handle.truncate()
            self._pid_handle.close()
            self._pid_handle = None

    def _ensure_database(self) -> bool:
        """Migrate, take the host's lease and recover crashed runs, once the database
        answers; False while it does not."""
        if self._db_ready:
            return True
        try:
            self.runtime.db.migrate()
            if not self._take_lease():
                lease = self.runs.host_lease(self.settings.host)
                pid = lease.pid if lease else "unknown"
                raise AlreadyRunning(f"another aegis daemon runs as host "
                                     f"{self.settings.host!r} on this database (pid {pid})")
            for run in self.runs.interrupt_stale(self.settings.host, self.instance_id,
                                                 self.clock()):
                self.log.warning("job_run_interrupted", job=run.job_id, run_id=run.id)
            self.tasks.recover_abandoned()
            self._db_ready = True
            self._upsert_daemon(DaemonStatus.RUNNING)
        except DatabaseUnavailable as exc:
            self.log.error("database_unavailable", error=str(exc))
            return False
        return True

    # --- periodic work ---

    def _claim_tasks(self) -> None:
        if not self._db_ready:
            return
        try:
            self.tasks.claim_pending()
        except StoreError as exc:
            self.log.warning("task_claim_failed", error=str(exc))

    def _take_lease(self) -> bool:
        """The host's lease, held for a few heartbeats and renewed with each: one daemon
        per host on the database, with no connection held for it."""
        return self.runs.take_host_lease(
            host=self.settings.host, instance_id=self.instance_id,
            home_id=home_id(self.settings.home), pid=os.getpid(),
            ttl_s=stale_after_s(self.settings.heartbeat_interval_s))

    def _renew_lease(self) -> None:
        ttl_s = stale_after_s(self.settings.heartbeat_interval_s)
        if self.runs.renew_host_lease(self.settings.host, self.instance_id, ttl_s):
            self._lease_lost = False
            return
        # not renewed: it may have expired while the database was away, and be ours again
        if self._take_lease():
            self._lease_lost = False
            return
        if not self._lease_lost:
            lease = self.runs.host_lease(self.settings.host)
            self.log.error("host_lease_lost", host=self.settings.host,
                           holder=lease.instance_id if lease else None,
                           holder_pid=lease.pid if lease else None)
        self._lease_lost = True

    def _heartbeat(self) -> None:
        self._write_heartbeat(DaemonStatus.RUNNING)
        if not self._ensure_database():
            return
        try:
            self._renew_lease()
            self._upsert_daemon(DaemonStatus.RUNNING)
            self._refresh_from_database()
            self.scheduler.advertise()
            self.runtime.store.replay_spool()
            self.tasks.recover_abandoned()
        except StoreError as exc:
            self.log.warning("heartbeat_database_failed", error=str(exc))
        self._watch_jobs()
        self._ping_heartbeat_url()

    def _watch_jobs(self) -> None:
        """job_silent and job_resumed (aegis/scheduling/deadlines.py)."""
        if not self._db_ready:
            return
        try:
            # a job is given until its run ends
            running = self.scheduler.runner.running_jobs()
            watch_jobs(self.runtime, [job for job in self.registry if job.id not in running],
                       self.clock())
        except StoreError as exc:
            self.log.warning("job_watch_failed", error=str(exc))

    def _refresh_from_database(self) -> None:
        if not self._db_ready:
            return
        try:
            self.scheduler.refresh_paused()
        except StoreError as exc:
            self.log.warning("paused_jobs_not_read", error=str(exc))

    def _beat(self, status: DaemonStatus) -> Heartbeat:
        """This daemon's heartbeat now, as the heartbeat file and ``daemons`` hold it."""
        return Heartbeat(pid=os.getpid(), host=self.settings.host,
                         instance_id=self.instance_id, version=__version__,
                         started_at=self.started_at, last_heartbeat_at=self.clock(),
                         status=status)

    def _write_heartbeat(self, status: DaemonStatus) -> None:
        try:
            write_heartbeat(self.settings.home, self._beat(status))
        except OSError as exc:
            self.log.error("heartbeat_file_not_written", error=str(exc))

    def _upsert_daemon(self, status: DaemonStatus) -> None:
        self.runs.upsert_daemon(self._beat(status))

    def _ping_heartbeat_url(self) -> None:
        url = self.settings.heartbeat_url
        if not url or not self._ping_busy.acquire(blocking=False):
            return

        def ping() -> None:
            try:
                with urllib.request.urlopen(url, timeout=HEARTBEAT_PING_TIMEOUT_S):
                    pass
            except Exception as exc:
                self.log.warning("heartbeat_ping_failed", error=redact_urls(str(exc)))
            finally:
                self._ping_busy.release()

        threading.Thread(target=ping, name="aegis-heartbeat-ping", daemon=True).start()

    def _services_once(self) -> None:
        """``--once``: what each service does instead of running (the outbox delivered)."""
        for service in self.registry.services:
            if service.once is None:
                continue
            try:
                service.once(self.runtime)
            except StoreError as exc:
                self.log.warning("service_once_failed", service=service.name, error=str(exc))

    def _drain_services(self) -> None:
        """Give each service's work under way (a container restart) the shutdown grace to
        finish and be recorded, the grace shared by all."""
        deadline = time.monotonic() + self.settings.shutdown_grace_s
        for service in self.registry.services:
            if service.drain is None or service.drain(0):
                continue
            self.log.info("shutdown_waiting_for_service", service=service.name,
                          grace_s=self.settings.shutdown_grace_s)
            if not service.drain(max(0.0, deadline - time.monotonic())):
                self.log.warning("shutdown_left_work_under_way", service=service.name)

    def _sleep_s(self, next_heartbeat: datetime) -> float:
        now = self.clock()
        candidates: list[datetime | None] = [next_heartbeat, self.scheduler.next_wake(),
                                             self.scheduler.runner.next_deadline()]
        soonest: datetime = min(c for c in candidates if c is not None)
        sleep_s: float = max(0.0, min((soonest - now).total_seconds(), MAX_SLEEP_S))
        # after reading the deadlines: a run started since wakes the loop if it is sooner
        self.scheduler.runner.wakes_at = now + timedelta(seconds=sleep_s)
        return sleep_s

    # --- threads and signals ---

    def _start_thread(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"aegis-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run_service(self, service: Service) -> None:
        while not self.stop_event.is_set():
            try:
                service.run(self.runtime, self.stop_event)
                return
            except Exception as exc:
                self.log.error("service_crashed", service=service.name, error=str(exc),
                               exc_info=True)
                self.stop_event.wait(5.0)

    def _install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals_received += 1
        if self._signals_received > 1:
            self.log.warning("shutdown_forced", signal=signal.Signals(signum).name)
            os._exit(1)
        self.log.info("shutdown_requested", signal=signal.Signals(signum).name)
        self.request_stop()
