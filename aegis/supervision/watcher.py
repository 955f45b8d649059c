"""The Docker events watcher, and what each event means for the supervisor.

A reader thread turns the engine's event stream into a queue; the watcher's loop takes
events from it and wakes for strike timers (strike 2 one interval after strike 1, strike 3
one interval after the restart). A fresh ``unhealthy`` event is strike 1 at once, from
what the event carries; everything that needs an inspect (other health and start events,
due strike timers, aegis's own restarts once over, the check after a ``die``) goes to a
small pool off the loop (aegis/supervision/checks.py), so the loop never waits on the
engine before the next event's strike 1. When the stream breaks
(the engine restarted, the socket went away) the loop reconnects with back-off from 0.5 s
to 5 s, asks for the events it missed (``since``), and runs a full reconciliation sweep
so no unhealthy container is missed. The outage is recorded once.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from aegis.core.clock import utcnow
from aegis.core.errors import DatabaseUnavailable, StoreError
from aegis.core.logs import get_logger
from aegis.storage.runtime import Runtime
from aegis.supervision.checks import CHECK_DONE, LOOKAHEAD_S, Checks
from aegis.supervision.docker import (
    DockerClients,
    Sighting,
    docker_client,
    docker_endpoint,
    docker_errors,
    events_refused,
    sighting_from_event,
)
from aegis.supervision.protocol.strikes import Action, Phase
from aegis.supervision.recreate import is_aside
from aegis.supervision.repository import ContainerRow
from aegis.supervision.supervisor import BackgroundRestarts, SupervisionState, Supervisor

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
# Not Docker's: the action of the item queued when one of aegis's restarts is over.
RESTART_DONE = "aegis_restart_done"
# An unhealthy event at most this old (by its own timestamp) is acted on as it stands;
# older ones (replayed after a reconnection) are checked against an inspect first.
FRESH_EVENT_S = 5.0
STOP_SIGNALS = frozenset({"2", "9", "15", "SIGINT", "SIGKILL", "SIGTERM"})
_END = object()


class ContainerEvents:
    """What each Docker event means for a supervisor: strike 1 from a fresh ``unhealthy``
    event, a check of anything else that may change a container's standing, and the
    facts the protocol needs later (a stop a person asked for, an OOM kill, an exit code,
    a rename, a removal)."""

    def __init__(self, supervisor: Supervisor,
                 check: Callable[[str, datetime], None] | None = None,
                 look_ahead: Callable[[str, datetime], None] | None = None) -> None:
        """``look_ahead(container_id, due)``: told of each container struck, with the
        time its strike timer falls due (the watcher has it inspected just before)."""
        self.supervisor = supervisor
        self.host = supervisor.host
        # how a container is inspected and judged: the watcher hands it to its Checks, off
        # the loop, so an inspect the engine is slow to answer holds up no strike 1
        self.check = check or supervisor.check
        self.look_ahead = look_ahead

    def handle(self, event: dict[str, Any], now: datetime) -> str | None:
        """Act on one Docker event. Returns ``"die"`` when the caller should check the
        container again shortly (a die is followed by a start when Docker restarts it)."""
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        container_id = actor.get("ID") or event.get("id") or ""
        attributes = actor.get("Attributes") or {}
        if action.startswith("health_status"):
            seen = self.fresh_unhealthy(event)
            if seen is not None:
                self.strike([seen], now)
            else:
                self.check(container_id, now)
        elif action == "start":
            self._started(container_id, attributes, now)
        elif action == "stop" or (action == "kill"
                                  and str(attributes.get("signal", "")) in STOP_SIGNALS):
            if not self.supervisor.restarts.in_progress_id(container_id):  # not aegis's own
                self._set_stopped(container_id, True, now)
        elif action == "die":
            with contextlib.suppress(TypeError, ValueError):
                self.supervisor.state.exit_codes[container_id] = int(
                    str(attributes.get("exitCode")))
            return "die"
        elif action == "oom":  # a process inside was killed for memory; it may run on
            self._note_oom(container_id, now)
        else:
            self._renamed_or_removed(action, container_id, attributes, now)
        return None

    def _started(self, container_id: str, attributes: dict[str, Any], now: datetime) -> None:
        supervisor = self.supervisor
        if supervisor.restarts.in_progress_id(container_id):
            return  # aegis's own restart: judged when it is over
        self._set_stopped(container_id, False, now)
        with contextlib.suppress(DatabaseUnavailable):
            supervisor.restarter.complete_restarts(supervisor.client, now)
        self.check(container_id, now)
        # a replaced network parent: its dependants are recreated into its namespace
        supervisor.rewirer.after_start(supervisor.client, str(attributes.get("name", "")),
                                       now)

    def _renamed_or_removed(self, action: str, container_id: str,
                            attributes: dict[str, Any], now: datetime) -> None:
        containers = self.supervisor.containers
        if action == "destroy":
            self.supervisor.state.exit_codes.pop(container_id, None)
            containers.mark_removed(self.host, container_id, now)
        elif action == "rename":
            old_name = str(attributes.get("oldName", "")).lstrip("/")
            new_name = str(attributes.get("name", ""))
            # set aside (or back) by a recreate: the row stays with the name
            if old_name and new_name and not (is_aside(new_name) or is_aside(old_name)):
                containers.rename(self.host, old_name, new_name)

    def _set_stopped(self, container_id: str, stopped: bool, now: datetime) -> None:
        """Remember whether (and when) a person or a tool asked Docker to stop the
        container; in the rows last known too, so it holds while PostgreSQL is down."""
        with contextlib.suppress(DatabaseUnavailable):
            self.supervisor.containers.set_stopped(self.host, container_id, stopped, now)
        self.supervisor.kept.update(self.host, container_id, stopped_by_user=stopped,
                                    stop_requested_at=now if stopped else None)

    def _note_oom(self, container_id: str, now: datetime) -> None:
        with contextlib.suppress(DatabaseUnavailable):
            self.supervisor.containers.note_oom(self.host, container_id, now)
        self.supervisor.kept.update(self.host, container_id, oom_at=now)

    def fresh_unhealthy(self, event: dict[str, Any]) -> Sighting | None:
        """The sighting an ``unhealthy`` event carries, when it is fresh enough to be
        strike 1 as it stands (no inspect of a busy engine first); None for anything else:
        other events, and stale ones (replayed after a reconnection), which are checked."""
        seen = sighting_from_event(event)
        if seen is None:
            return None
        age_s = time.time() - float(event.get("timeNano") or 0) / 1e9
        return seen if age_s <= FRESH_EVENT_S else None

    def strike(self, sightings: Sequence[Sighting], now: datetime, *,
               kept_first: bool = True) -> None:
        """Strike 1 for each container of fresh ``unhealthy`` events, decided together and
        saved in one transaction (one commit for a burst). A container already in an
        incident is checked instead: its next step is a restart or an escalation, never
        taken on an event's word alone.

        Decided from the rows this process last read or wrote, with no query first: the
        save writes a row only if its version is still the one decided from, so a row
        changed meanwhile (a person's ``aegis ack``, another daemon) drops its decision,
        and that container is decided again from the table's row."""
        rows = self.supervisor.rows([seen.name for seen in sightings], kept_first=kept_first)
        batch: list[tuple[Sighting, ContainerRow | None]] = []
        for seen in sightings:
            row = rows.get(seen.name)
            if row is not None and (row.phase != Phase.OK or row.removed_at is not None):
                self.check(seen.id, now)
            else:
                batch.append((seen, row))
        superseded: list[Sighting] | None = [] if kept_first else None
        decided = self.supervisor.evaluate_all(batch, now, superseded=superseded)
        for (seen, _), (action, _) in zip(batch, decided, strict=True):
            if self.look_ahead is None or action != Action.STRIKE1:
                continue
            kept = self.supervisor.kept.get(self.host, seen.name)
            if kept is not None and kept.next_check_at is not None:
                self.look_ahead(seen.id, kept.next_check_at)
        if superseded:
            self.strike(superseded, now, kept_first=False)


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
        self._ahead: dict[str, datetime] = {}  # container id -> when to inspect it ahead
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
                if isinstance(self.client_factory, DockerClients):
                    self.client_factory.forget()
                self._safely(self.state.engine.note, self.runtime, False, str(exc),
                             self.clock())
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
        inbox: queue.Queue[Any] = queue.Queue()
        reader = threading.Thread(target=_read, args=(stream, inbox), daemon=True,
                                  name="aegis-docker-events")
        reader.start()
        restarted = BackgroundRestarts(self.client_factory, on_end=lambda container_id: inbox.put(
            {"Action": RESTART_DONE, "Actor": {"ID": container_id}}))
        supervisor = Supervisor(self.runtime, client, own_ids=self.own_ids, state=self.state,
                                background=restarted)
        checks = Checks(supervisor, self.client_factory, inbox)
        try:
            self._safely(self.state.engine.note, self.runtime, True, None, self.clock())
            self.connected.set()
            self.log.info("docker_stream_connected")
            self._safely(supervisor.reconcile, self.clock())
            # a strike 1 waits for a connection behind no check's, restart's or job's call
            with self.runtime.db.served_first():
                self._loop(supervisor, checks, inbox, stop)
            if not stop.is_set():
                self._stream_ended(client)
        finally:
            try:
                stream.close()
            except Exception as exc:  # the socket may already be gone
                self.log.debug("docker_stream_close_failed", error=str(exc))
            checks.close()

    def _loop(self, supervisor: Supervisor, checks: Checks, inbox: queue.Queue[Any],
              stop: threading.Event) -> None:
        """Events and strike timers, until ``stop`` or the stream's end."""
        events = ContainerEvents(supervisor, check=checks.submit, look_ahead=self._look_ahead)
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
                item = inbox.get(timeout=self._wait_s(next_poll, supervisor.soonest,
                                                      checks.next_release()))
            except queue.Empty:
                continue
            # every event already queued before the timers again: in a burst, the strike 1
            # of each container is not held up by the checks of the others
            items = [item]
            while items[-1] is not _END:
                try:
                    items.append(inbox.get_nowait())
                except queue.Empty:
                    break
            self._handle_all(events, checks, [i for i in items if i is not _END])
            if items[-1] is _END:
                return

    def _handle_all(self, events: ContainerEvents, checks: Checks,
                    items: list[dict[str, Any]]) -> None:
        """Queued items in order, but the strike 1s of fresh ``unhealthy`` events
        together: decided and saved in one transaction, after the rest (or before an item
        of one of their containers, which then comes after its strike)."""
        strikes: dict[str, Sighting] = {}  # container id -> the first sighting
        for item in items:
            if actor := (item.get("Actor") or {}).get("ID"):
                self._ahead.pop(actor, None)  # an inspect ahead of it no longer tells
                checks.changed(actor)
            seen = events.fresh_unhealthy(item)
            if seen is not None:
                self._since = int(item.get("time") or 0) or self._since
                strikes.setdefault(seen.id, seen)
                continue
            if strikes and (item.get("Actor") or {}).get("ID") in strikes:
                self._safely(events.strike, list(strikes.values()), self.clock())
                strikes = {}
            self._handle(events, checks, item)
        if strikes:
            self._safely(events.strike, list(strikes.values()), self.clock())

    def _handle(self, events: ContainerEvents, checks: Checks, item: dict[str, Any]) -> None:
        action = item.get("Action")
        if action == CHECK_DONE:  # a check's timer, set here: the loop's alone
            events.supervisor.note_timer(item["due"])
            return
        if action == RESTART_DONE:  # aegis's own restart is over: judged again now
            checks.submit((item.get("Actor") or {}).get("ID", ""), self.clock())
            return
        self._since = int(item.get("time") or 0) or self._since
        if self._safely(events.handle, item, self.clock()) == "die":
            actor = item.get("Actor") or {}
            settled_at = self.clock() + timedelta(seconds=DIE_SETTLE_S)
            self._pending[actor.get("ID") or item.get("id", "")] = settled_at

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

    def _look_ahead(self, container_id: str, due: datetime) -> None:
        """Have ``container_id`` inspected LOOKAHEAD_S before its strike timer ``due``."""
        self._ahead[container_id] = due - timedelta(seconds=LOOKAHEAD_S)

    def _wait_s(self, next_poll: float, timer: datetime | None,
                released: float | None) -> float:
        """Until the next poll, pending check or inspect ahead, strike timer or the end of
        a held check's wait (``released``, monotonic), whichever is first."""
        until = next_poll if released is None else min(next_poll, released)
        wait_s = max(0.0, until - time.monotonic())
        dues = [*self._pending.values(), *self._ahead.values(), *([timer] if timer else [])]
        if dues:
            wait_s = min(wait_s, max(0.0, (min(dues) - self.clock()).total_seconds()))
        return min(wait_s, DUE_POLL_S)

    def _run_pending(self, supervisor: Supervisor, checks: Checks) -> None:
        now = self.clock()
        checks.release(now)  # the end of each restart queues an item: the loop is awake
        for container_id, due in list(self._pending.items()):
            if due <= now:
                del self._pending[container_id]
                if not supervisor.restarts.in_progress_id(container_id):  # else: its start
                    checks.submit(container_id, now)
        for container_id, due in list(self._ahead.items()):
            if due <= now:
                del self._ahead[container_id]
                checks.look_ahead(container_id)

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
