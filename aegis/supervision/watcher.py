"""The Docker events watcher, and ``Supervision``: the daemon service that runs it beside
the reconciliation sweep.

A reader thread turns the engine's event stream into a queue; the service loop takes
events from it and wakes for strike timers (strike 2 one interval after strike 1, strike 3
one interval after the restart). When the stream breaks (the engine restarted, the socket
went away) the loop reconnects with back-off from 0.5 s to 5 s, asks for the events it
missed (``since``), and runs a full reconciliation sweep so no unhealthy container is
missed. The outage is recorded once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from aegis.core.clock import utcnow
from aegis.core.config import RemediationMode
from aegis.core.errors import StoreError
from aegis.core.logs import get_logger
from aegis.storage.runtime import Runtime
from aegis.supervision.docker import (
    docker_client,
    docker_endpoint,
    docker_errors,
    events_refused,
)
from aegis.supervision.supervisor import SupervisionState, Supervisor

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 5.0
# A stream that ends sooner than this after it opened is refused (a socket proxy without
# EVENTS) or broken: reconnect with the same back-off as a failed connection, not at once.
SHORT_STREAM_S = 5.0
EVENTS_FORBIDDEN_HINT = ("allow the event stream on the socket proxy (EVENTS=1); until then "
                         "only the 5-minute sweep sees unhealthy containers")
DUE_POLL_S = 5.0
# A die is checked this long after, when a restart by Docker or by aegis has had its start.
DIE_SETTLE_S = 2.0
EVENT_ACTIONS = ("health_status", "die", "start", "stop", "kill", "destroy", "rename", "oom")
# Containers checked side by side off the loop (a timer come due, a restart over, a die).
CHECK_WORKERS = 4
# Not Docker's: the actions of the items queued when one of aegis's restarts is over, and
# by a check with the strike timer it set.
RESTART_DONE, CHECK_DONE = "aegis_restart_done", "aegis_check_done"
_END = object()


class Watcher:
    """Runs until ``stop`` is set; survives the engine and the database going away."""

    def __init__(self, runtime: Runtime, *,
                 client_factory: Callable[[], Any] = docker_client,
                 clock: Callable[[], datetime] = utcnow,
                 own_ids: frozenset[str] | None = None,
                 state: SupervisionState | None = None) -> None:
        self.runtime = runtime
        self.state = state or SupervisionState()
        self.client_factory = client_factory
        self.clock = clock
        self.own_ids = own_ids
        self.log = get_logger().bind(host=runtime.settings.host)
        self.connected = threading.Event()  # set while the stream is up (tests, status)
        self._since: int | None = None
        self._pending: dict[str, datetime] = {}  # container id -> when to check it
        self._events_refused = False  # the endpoint refused the stream, said once

    def run(self, stop: threading.Event) -> None:
        delay_s = RECONNECT_MIN_S
        while not stop.is_set():
            client = None
            try:
                client = self.client_factory()
                client.ping()
            except docker_errors() as exc:
                self._close(client)
                self._safely(self.state.engine.note, self.runtime, False, str(exc))
                stop.wait(delay_s)
                delay_s = min(delay_s * 2, RECONNECT_MAX_S)
                continue
            opened = time.monotonic()
            try:
                self._watch(client, stop)
            except docker_errors() as exc:
                self.log.warning("docker_stream_lost", error=str(exc))
            finally:
                self.connected.clear()
                self._close(client)
            if time.monotonic() - opened >= SHORT_STREAM_S:  # it ran: reconnect soon
                delay_s = RECONNECT_MIN_S
                stop.wait(RECONNECT_MIN_S)
            else:  # refused or broken at once: back off as after a failed connection
                stop.wait(delay_s)
                delay_s = min(delay_s * 2, RECONNECT_MAX_S)

    def _watch(self, client: Any, stop: threading.Event) -> None:
        stream = client.events(decode=True, since=self._since,
                               filters={"type": "container", "event": list(EVENT_ACTIONS)})
        events: queue.Queue[Any] = queue.Queue()
        reader = threading.Thread(target=_read, args=(stream, events), daemon=True,
                                  name="aegis-docker-events")
        reader.start()
        supervisor = Supervisor(
            self.runtime, client, own_ids=self.own_ids, restart_client=self.client_factory,
            state=self.state, on_restart_end=lambda container_id: events.put(
                {"Action": RESTART_DONE, "Actor": {"ID": container_id}}))
        checks = Checks(supervisor, self.client_factory, events)
        try:
            self._safely(self.state.engine.note, self.runtime, True)
            self.connected.set()
            self.log.info("docker_stream_connected")
            self._safely(supervisor.reconcile, self.clock())
            next_poll = time.monotonic()
            while not stop.is_set():
                soonest, now = supervisor.soonest, self.clock()
                if time.monotonic() >= next_poll or (soonest and soonest <= now):
                    # a timer still ahead outlives the poll; the checks set the next one
                    supervisor.soonest = soonest if soonest and soonest > now else None
                    self._safely(supervisor.check_due, now, checks.submit)
                    next_poll = time.monotonic() + DUE_POLL_S
                self._run_pending(supervisor, checks)
                try:
                    item = events.get(timeout=self._wait_s(next_poll, supervisor.soonest))
                except queue.Empty:
                    continue
                # every event already queued before the timers again: in a burst, the
                # strike 1 of each container is not held up by the checks of the others
                while item is not _END:
                    self._handle(supervisor, checks, item)
                    try:
                        item = events.get_nowait()
                    except queue.Empty:
                        break
                if item is _END:
                    self._stream_ended(client)
                    return
        finally:
            try:
                stream.close()
            except Exception as exc:  # the socket may already be gone
                self.log.debug("docker_stream_close_failed", error=str(exc))
            checks.close()

    def _handle(self, supervisor: Supervisor, checks: Checks, item: dict[str, Any]) -> None:
        action = item.get("Action")
        if action == CHECK_DONE:  # a check's timer, set here: the loop's alone
            supervisor.note_timer(item["due"])
            return
        if action == RESTART_DONE:  # aegis's own restart is over: judged again now
            checks.submit((item.get("Actor") or {}).get("ID", ""), self.clock())
            return
        self._since = int(item.get("time") or 0) or self._since
        if self._safely(supervisor.handle_event, item, self.clock()) == "die":
            actor = item.get("Actor") or {}
            self._pending[actor.get("ID") or item.get("id", "")] = \
                self.clock() + timedelta(seconds=DIE_SETTLE_S)

    def _stream_ended(self, client: Any) -> None:
        """One line for a stream the endpoint refuses, for as long as it does; a warning
        for any other end."""
        if events_refused(client):
            if not self._events_refused:
                self.log.error("docker_events_forbidden", docker_host=docker_endpoint(),
                               hint=EVENTS_FORBIDDEN_HINT)
            self._events_refused = True
            return
        self._events_refused = False
        self.log.warning("docker_stream_ended")

    def _wait_s(self, next_poll: float, timer: datetime | None) -> float:
        """Until the next poll, pending check or strike timer, whichever is first."""
        wait_s = max(0.0, next_poll - time.monotonic())
        dues = list(self._pending.values()) + ([timer] if timer else [])
        if dues:
            wait_s = min(wait_s, max(0.0, (min(dues) - self.clock()).total_seconds()))
        return min(wait_s, DUE_POLL_S)

    def _run_pending(self, supervisor: Supervisor, checks: Checks) -> None:
        now = self.clock()
        for container_id, due in list(self._pending.items()):
            if due <= now:
                del self._pending[container_id]
                if not supervisor.restarts.in_progress_id(container_id):  # else: its start
                    checks.submit(container_id, now)

    def _safely(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run one step; a database outage or a Docker refusal is logged, never fatal
        (the next event, timer or sweep tries again)."""
        try:
            return func(*args)
        except StoreError as exc:
            self.log.warning("supervision_step_failed", step=func.__name__, error=str(exc))
        except docker_errors() as exc:
            if _connection_lost(exc):
                raise
            self.log.warning("supervision_step_failed", step=func.__name__, error=str(exc))
        return None

    @staticmethod
    def _close(client: Any) -> None:
        if client is not None:
            try:
                client.close()
            except Exception:
                return


class Checks:
    """Containers inspected and judged off the watcher's loop, side by side in a few
    threads with a Docker client each: the strike 2s of a burst, and the judgement after
    each of its restarts, run in parallel, and an inspect the engine is slow to answer
    (it is stopping that container) never holds up the strike 1 of another container's
    event. One check of a container at a time; the strike timer a check sets comes back
    to the loop through its event queue (``CHECK_DONE``)."""

    def __init__(self, supervisor: Supervisor, client_factory: Callable[[], Any],
                 events: queue.Queue[Any], workers: int = CHECK_WORKERS) -> None:
        self.supervisor = supervisor
        self.client_factory = client_factory
        self.events = events
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="aegis-check")
        self._clients: queue.SimpleQueue[Any] = queue.SimpleQueue()  # idle, kept open
        self._lock = threading.Lock()
        self._running: set[str] = set()

    def submit(self, container: str, now: datetime) -> None:
        """Check ``container`` (id or name) soon, unless a check of it is under way."""
        with self._lock:
            if container in self._running:
                return
            self._running.add(container)
        try:
            self._executor.submit(self._check, container, now)
        except RuntimeError:  # closed: the stream ended, and its reconnection sweeps all
            with self._lock:
                self._running.discard(container)

    def close(self) -> None:
        """Wait for the checks under way (each bounded by the client's timeout), drop
        those not started, close the clients."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        while True:
            try:
                self._clients.get_nowait().close()
            except queue.Empty:
                return
            except Exception:  # closing a client of a gone engine
                continue

    def _check(self, container: str, now: datetime) -> None:
        timer = None
        try:
            try:
                client = self._clients.get_nowait()
            except queue.Empty:
                client = self.client_factory()
            try:
                twin = self.supervisor.with_client(client)
                twin.check(container, now)
                timer = twin.soonest
            finally:
                self._clients.put(client)
        except Exception as exc:  # the database, the engine: the next event, timer, sweep
            log = get_logger().bind(container=container, host=self.supervisor.host)
            if isinstance(exc, (StoreError, *docker_errors())):
                log.warning("supervision_step_failed", step="check", error=str(exc))
            else:
                log.error("supervision_check_crashed", error=str(exc), exc_info=True)
        finally:
            with self._lock:
                self._running.discard(container)
            if timer is not None:
                self.events.put({"Action": CHECK_DONE, "due": timer})


def _connection_lost(exc: BaseException) -> bool:
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout

    return isinstance(exc, RequestsConnectionError | Timeout | ConnectionError
                      | FileNotFoundError)


def _read(stream: Any, events: queue.Queue[Any]) -> None:
    try:
        for event in stream:
            events.put(event)
    except Exception as exc:  # a broken stream ends like a closed one
        events.put({"Action": "", "error": str(exc)})
    finally:
        events.put(_END)


# --- the supervision of one aegis ---


class Supervision:
    """The supervision of one aegis: the events watcher (a daemon service), the
    reconciliation sweep (the ``docker_health_check`` job) and what the two share (the
    rows kept for a database outage, the restarts under way, the engine's availability),
    so two aegis apps in one process share nothing::

        supervision = Supervision()
        registry.add("docker_health_check", ... supervision.sweep(ctx.app, ctx.now) ...)
        registry.add_service("docker_events", supervision.watch, drain=supervision.drain)
    """

    def __init__(self, client_factory: Callable[[], Any] = docker_client) -> None:
        self.client_factory = client_factory
        self.state = SupervisionState()
        self.waiting_until: float | None = None  # time.monotonic() the start period ends

    def sweep(self, runtime: Runtime, now: datetime | None = None) -> dict[str, Any]:
        """One reconciliation sweep over one container listing (see ``supervise_once``):
        its restarts side by side, each through a client of its own, the sweep over when
        they are; nothing during the daemon's start period."""
        if self.waiting_until is not None and time.monotonic() < self.waiting_until:
            return {"start_period_left_s": round(self.waiting_until - time.monotonic(), 1)}
        return supervise_once(runtime, now, client_factory=self.client_factory,
                              state=self.state, parallel_restarts=True)

    def watch(self, runtime: Runtime, stop: threading.Event) -> None:
        """The ``docker_events`` service: off when AEGIS_REMEDIATION=off. It (and the
        sweep) leaves containers alone for AEGIS_START_PERIOD after the daemon starts."""
        if runtime.settings.remediation == RemediationMode.OFF:
            return
        period_s = runtime.settings.start_period_s
        if period_s > 0 and self.waiting_until is None:  # once: not again after a crash
            self.waiting_until = time.monotonic() + period_s
            get_logger().info("supervision_start_period", seconds=period_s)
        if self.waiting_until is not None \
                and stop.wait(max(0.0, self.waiting_until - time.monotonic())):
            return
        Watcher(runtime, client_factory=self.client_factory, state=self.state).run(stop)

    def drain(self, grace_s: float) -> bool:
        """Wait up to ``grace_s`` for restarts under way (finished, then recorded)."""
        return self.state.restarts.wait_idle(grace_s)


def supervise_once(runtime: Runtime, now: datetime | None = None, client: Any = None, *,
                   client_factory: Callable[[], Any] = docker_client,
                   state: SupervisionState | None = None,
                   parallel_restarts: bool = False) -> dict[str, Any]:
    """One reconciliation sweep; records the engine's availability. Uses ``client`` when
    given, else a fresh one from ``client_factory`` (closed afterwards). With
    ``parallel_restarts``, the sweep's restarts run side by side (one thread and client
    from ``client_factory`` each) and it returns when they are over; else one after
    another in this thread."""
    now = now or utcnow()
    state = state or SupervisionState()
    own_client = client is None
    try:
        client = client or client_factory()
        client.ping()
    except docker_errors() as exc:
        state.engine.note(runtime, False, str(exc))
        return {"docker_available": False, "error": str(exc)}
    try:
        state.engine.note(runtime, True)
        supervisor = Supervisor(runtime, client, state=state,
                                restart_client=client_factory if parallel_restarts else None)
        return {"docker_available": True, **supervisor.reconcile(now, wait=True)}
    finally:
        if own_client:
            client.close()
