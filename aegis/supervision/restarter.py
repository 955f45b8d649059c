"""Act: strike 2, the restart already decided and saved. The restart itself, the
containers that share its network namespace, and the outcome of restarts a daemon decided
and saved but was killed before recording (completed from Docker's ``StartedAt``, never
made again).

The events watcher restarts in the background (``Restarter.start``), so one slow stop (a
container that ignores SIGTERM takes its whole stop timeout) never holds up the events of
the others; the sweep restarts side by side too, and waits for its restarts. Either way a
container being restarted is not judged again until the restart is over
(``RestartTracker``), and the daemon drains the restarts under way before it exits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from aegis.core.logs import get_logger, secret_values
from aegis.storage.db import Queries
from aegis.storage.events import Event, EventType, Importance
from aegis.storage.outbox import IncidentStep
from aegis.storage.runtime import Runtime
from aegis.storage.store import event_record, insert_event
from aegis.supervision.docker import (
    Sighting,
    docker_endpoint,
    docker_errors,
    forbidden,
    inspected,
    log_tail,
    sighting_from_inspect,
    sighting_from_listing,
)
from aegis.supervision.ladder import Ladder
from aegis.supervision.protocol.labels import effective_stop_timeout_s
from aegis.supervision.protocol.strikes import Action, Decision
from aegis.supervision.records import SOURCE, Recorder, details
from aegis.supervision.repository import Containers, LogLine, UnrecordedRestart

# A restart decided by a daemon that stopped before recording it, and not made by Docker
# this long after, is recorded as not made (until then it may still be under way).
RESTART_OUTCOME_WAIT_S = 60.0
RESTART_FORBIDDEN_HINT = ("allow container restarts on the socket proxy (ALLOW_RESTARTS=1), "
                          "or set AEGIS_REMEDIATION=observe to record and escalate only")

# Why aegis may not restart a container it would restart only because it shares a
# restarted container's network (None: it may).
Refusal = Callable[[Sighting, datetime], str | None]
# A container whose restart is over is judged again once the engine has started the
# others restarted with it: its checks wait while other restarts are under way, at most
# this long after its own ended (see RestartTracker.held_until).
JUDGED_AFTER_OTHERS_MAX_S = 15.0


class RestartTracker:
    """The restarts one supervision is making right now, and the slots of its background
    restarts (AEGIS_MAX_PARALLEL_RESTARTS at once; more wait for one to end)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: monotonic seconds, for how long a check waits (``held_until``)."""
        self._clock = clock
        self._in_flight: dict[tuple[str, str], str] = {}  # (host, name) -> container id
        # container id and name -> when (monotonic) its latest restart ended, and the
        # restarts still under way then, for JUDGED_AFTER_OTHERS_MAX_S
        self._ended: dict[str, tuple[float, frozenset[tuple[tuple[str, str], str]]]] = {}
        self._changed = threading.Condition()
        self._slots: threading.BoundedSemaphore | None = None
        # held while restarts a stopped daemon left are completed: the sweep's and the
        # watcher's (on a start) may come at once, and each would record the same outcome
        self.completing = threading.Lock()

    def slots(self, limit: int) -> threading.BoundedSemaphore:
        """The semaphore of background restarts, made on first use with ``limit``."""
        with self._changed:
            if self._slots is None:
                self._slots = threading.BoundedSemaphore(limit)
            return self._slots

    def in_progress(self, host: str, name: str) -> bool:
        """True while the container ``name`` of ``host`` is being restarted."""
        with self._changed:
            return (host, name) in self._in_flight

    def in_progress_id(self, container_id: str) -> bool:
        """True while the container with this (full) id is being restarted."""
        with self._changed:
            return bool(container_id) and container_id in self._in_flight.values()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no restart is under way; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._in_flight:
                left_s = deadline - time.monotonic()
                if left_s <= 0:
                    return False
                self._changed.wait(left_s)
        return True

    def begin(self, host: str, name: str, container_id: str) -> None:
        with self._changed:
            self._in_flight[(host, name)] = container_id

    def claim(self, host: str, name: str, container_id: str) -> bool:
        """``begin``, unless the container is being acted on already (then False): the
        sweep's thread and the watcher's may find the same container to act on."""
        with self._changed:
            if (host, name) in self._in_flight:
                return False
            self._in_flight[(host, name)] = container_id
            return True

    def end(self, host: str, name: str) -> None:
        with self._changed:
            container_id = self._in_flight.pop((host, name), None)
            ended = self._clock()
            self._ended = {key: was for key, was in self._ended.items()
                           if ended - was[0] < JUDGED_AFTER_OTHERS_MAX_S}
            if self._in_flight:
                others = frozenset(self._in_flight.items())
                for key in (name, container_id):
                    if key:
                        self._ended[key] = (ended, others)
            self._changed.notify_all()

    def held_until(self, container: str) -> float | None:
        """Until when (monotonic) a check of ``container`` (id or name) waits; None: it
        runs now. A container whose restart by aegis is over waits while the restarts
        under way when it ended are (not those begun since), at most
        JUDGED_AFTER_OTHERS_MAX_S after its own ended: a burst's restarts end together,
        and the engine, starting the restarted containers one after another, starts the
        last of them later for every inspect and log read that judging the first asks of
        it. What that judgement finds (a recovery, strike 3) can wait those seconds."""
        with self._changed:
            ended, others = self._ended.get(container, (0.0, frozenset()))
            until = ended + JUDGED_AFTER_OTHERS_MAX_S
            if until <= self._clock() or others.isdisjoint(self._in_flight.items()):
                return None
            return until


class RunningListing:
    """The running containers, listed once for every thread that needs a listing asked
    after some moment (the end of its restart): the restarts of a burst that end together
    share a listing instead of each asking an engine busy starting the others for one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # the latest listing asked: when (monotonic), and its answer (or the engine's error)
        self._latest: tuple[float, Future[list[dict[str, Any]]]] | None = None

    def after(self, client: Any, moment: float) -> list[dict[str, Any]]:
        """The running containers, as listed at ``moment`` (monotonic) or later: by a
        listing asked since (waited for if under way), else one asked now. Raises what
        the engine raised."""
        with self._lock:
            latest = self._latest
            shared = latest[1] if latest is not None and latest[0] >= moment else None
            if shared is None:
                own: Future[list[dict[str, Any]]] = Future()
                self._latest = (time.monotonic(), own)
        if shared is not None:
            return shared.result()
        try:
            own.set_result(client.api.containers(filters={"status": "running"}))
        except BaseException as exc:  # the threads sharing it are told too
            own.set_exception(exc)
            raise
        return own.result()


class Restarter:
    """Makes and records the restarts of one supervision."""

    def __init__(self, runtime: Runtime, tracker: RestartTracker, recorder: Recorder, *,
                 refusal: Refusal, on_end: Callable[[str], None] | None = None) -> None:
        """``refusal``: why a container that shares a restarted one's network may not be
        restarted with it. ``on_end(container_id)``: told when a background restart is
        over, so the container is judged again at once."""
        self.runtime = runtime
        self.tracker = tracker
        self.recorder = recorder
        self.refusal = refusal
        self.on_end = on_end
        self.host = runtime.settings.host
        self.log = get_logger().bind(host=self.host)
        self.ladder = Ladder(runtime, self.record_step, refusal)
        self.running = RunningListing()

    def restart(self, client: Any, decision: Decision, seen: Sighting, now: datetime) -> None:
        """Restart now, in this thread."""
        self.tracker.begin(self.host, seen.name, seen.id)
        try:
            self._act(client, decision, seen, now)
        finally:
            self.tracker.end(self.host, seen.name)

    def start(self, client_factory: Callable[[], Any], decision: Decision, seen: Sighting,
              now: datetime) -> threading.Thread | None:
        """Restart in a thread of its own, through a Docker client of its own (the
        caller's may be closed when its stream breaks), so restarts of different containers
        never wait for each other. Returns the thread (None when there was none to be had
        and the restart was made here)."""
        # before the thread starts: never judged or completed meanwhile
        self.tracker.begin(self.host, seen.name, seen.id)
        thread = threading.Thread(target=self._restart_in_thread,
                                  args=(client_factory, decision, seen, now),
                                  name=f"aegis-restart-{seen.name}", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: restart here rather than not at all
            self.tracker.end(self.host, seen.name)
            client = client_factory()
            try:
                self.restart(client, decision, seen, now)
            finally:
                client.close()
            return None
        return thread

    def _restart_in_thread(self, client_factory: Callable[[], Any], decision: Decision,
                           seen: Sighting, now: datetime) -> None:
        running_id = seen.id
        try:
            with self.tracker.slots(self.runtime.settings.max_parallel_restarts):
                client = client_factory()
                try:
                    running_id = self._act(client, decision, seen, now)
                finally:
                    client.close()
        except Exception as exc:  # recorded in the log; the sweep completes what it can
            self.log.error("container_restart_crashed", container=seen.name,
                           error=str(exc), exc_info=True)
        finally:
            self.tracker.end(self.host, seen.name)
            if self.on_end is not None:
                self.on_end(running_id)

    def _act(self, client: Any, decision: Decision, seen: Sighting, now: datetime) -> str:
        """Make the intervention ``decision`` saved (a restart, or the healing ladder's
        recreate or stack restart); returns the id of the container now under the name."""
        if decision.action == Action.RECREATE:
            return self.ladder.recreate(client, decision, seen, now)
        if decision.action == Action.RESTART_STACK:
            self.ladder.restart_stack(client, decision, seen, now)
            return seen.id
        self._restart(client, decision, seen, now)
        return seen.id

    def _restart(self, client: Any, decision: Decision, seen: Sighting, now: datetime) -> None:
        """Ask Docker, record the outcome, then restart the containers sharing its network
        namespace."""
        seen = inspected(client, seen)
        timeout_s = effective_stop_timeout_s(seen, self.runtime.settings)
        restarts = len(decision.state.restarts)
        carried = details(self.host, seen, decision, probe_output=seen.probe_output,
                          probe_exit_code=seen.probe_exit_code, restarts_last_hour=restarts,
                          docker_restart_count=seen.docker_restart_count,
                          stop_timeout_s=timeout_s)
        self.log.warning("container_restarting", container=seen.name, strike=2,
                         stop_timeout_s=timeout_s)
        store = self.runtime.store
        # asked at once, its last log lines read meanwhile: the restart waits for no other
        # answer of a busy engine, and the lines are still those of the failing process
        # (a stop sends SIGTERM and waits; the new process starts only after)
        with ThreadPoolExecutor(1, thread_name_prefix=f"aegis-restart-{seen.name}") as asking:
            asked = asking.submit(client.api.restart, seen.id, timeout=int(timeout_s))
            tail = log_tail(client, seen, secret_values(self.runtime.settings))
            carried.update(tail.details())
            exc = asked.exception()
        ended = time.monotonic()
        if exc is not None and not isinstance(exc, docker_errors()):
            raise exc
        if exc is not None:
            if forbidden(exc):  # a proxy's allow-list: every restart fails until it changes
                self.log.error("container_restart_forbidden", container=seen.name,
                               docker_host=docker_endpoint(), hint=RESTART_FORBIDDEN_HINT)
            event = store.new_event(
                EventType.CONTAINER_RESTART_FAILED, f"{seen.name}: restart failed: {exc}",
                importance=Importance.HIGH, source=SOURCE, timestamp=now,
                details={**carried, "error": str(exc)})
            self.record_step(event, seen, decision.state.incident,
                             LogLine(now, IncidentStep.RESTART_FAILED, str(exc),
                                     probe=seen.probe_output, log_tail=tail))
            return
        event = store.new_event(
            EventType.CONTAINER_RESTARTED,
            f"{seen.name} restarted (strike 2 of 3): {decision.reason}; "
            f"restart {restarts} this hour",
            importance=Importance.HIGH, source=SOURCE, timestamp=now, details=carried)
        self.record_step(event, seen, decision.state.incident,
                         LogLine(now, IncidentStep.RESTARTED,
                                 f"{decision.reason} (restart {restarts} this hour)",
                                 probe=seen.probe_output, log_tail=tail))
        self.restart_dependents(client, seen, now, ended)

    def record_step(self, event: Event, seen: Sighting, incident: int, line: LogLine) -> None:
        """Record ``event``, a step of the container's open incident taken outside a
        decision (a restart made or failed): the line goes into its log and, when it calls
        for one, the message (an edit of its living message) is queued, all in one
        transaction. With PostgreSQL down the event is spooled; the line waits for the
        next one."""
        self.runtime.store.log_event(event)

        def write(tx: Queries) -> None:
            insert_event(tx, event, self.recorder.step_message(tx, seen, incident, line))

        self.runtime.store.write(write, event_record(event))

    # --- restarts a stopped daemon decided ---

    def complete_restarts(self, client: Any, now: datetime) -> int:
        """Record the outcome of restarts a daemon decided and saved but stopped (killed)
        before recording: ``container_restarted`` when Docker started the container since
        the decision, ``container_restart_failed`` when it has not a while later. Never
        restarts anything itself. Returns how many were recorded: none when another thread
        of this supervision is completing them right now (it records each once)."""
        if not self.tracker.completing.acquire(blocking=False):
            return 0
        try:
            return self._complete_all(client, now)
        finally:
            self.tracker.completing.release()

    def _complete_all(self, client: Any, now: datetime) -> int:
        recorded = 0
        for unrecorded in Containers(self.runtime.db).restarts_unrecorded(self.host):
            row = unrecorded.row
            if self.tracker.in_progress(self.host, row.name):
                continue  # this process is making it right now
            try:
                attrs = client.api.inspect_container(row.container_id or row.name)
            except docker_errors():
                continue
            if self._complete(unrecorded, sighting_from_inspect(attrs), now):
                recorded += 1
        return recorded

    def _complete(self, unrecorded: UnrecordedRestart, seen: Sighting, now: datetime) -> bool:
        """Record the outcome of one restart decided and not recorded, if Docker tells it
        yet; False when it may still be under way."""
        row, decided = unrecorded.row, unrecorded.restart_at
        started = seen.started_at
        # a restart waits for the stop timeout before Docker starts the container again
        wait_s = RESTART_OUTCOME_WAIT_S + effective_stop_timeout_s(seen,
                                                                   self.runtime.settings)
        carried = {"container": row.name, "host": self.host,
                   "container_id": row.container_id[:12], "image": row.image,
                   "incident": row.incident, "strikes": row.strikes,
                   "restarts_last_hour": len(row.restarts), "reason": row.last_reason,
                   "class": row.incident_class, "recorded_late": True}
        store = self.runtime.store
        if started is not None and started >= decided:
            event = store.new_event(
                EventType.CONTAINER_RESTARTED, f"{row.name} restarted (strike 2 of 3); "
                "recorded late: the daemon stopped during the restart",
                importance=Importance.HIGH, source=SOURCE, timestamp=decided, details=carried)
            line = LogLine(decided, IncidentStep.RESTARTED, f"{row.last_reason} (recorded late)",
                           probe=seen.probe_output)
        elif (now - decided).total_seconds() > wait_s:
            error = "the daemon stopped before the restart"
            event = store.new_event(
                EventType.CONTAINER_RESTART_FAILED, f"{row.name}: restart not made: the "
                "daemon stopped between deciding it and asking Docker",
                importance=Importance.HIGH, source=SOURCE, timestamp=decided,
                details={**carried, "error": error})
            line = LogLine(decided, IncidentStep.RESTART_FAILED, error, probe=seen.probe_output)
        else:
            return False  # Docker may still be stopping it: the next sweep or start decides
        self.record_step(event, seen, row.incident, line)
        return True

    # --- the containers in its network namespace ---

    def restart_dependents(self, client: Any, seen: Sighting, now: datetime,
                           ended: float) -> None:
        """Restart, after ``seen``, the running containers that use its network namespace,
        except those aegis may not restart (protected, opted out, out of scope, in
        maintenance): they are left alone and ``container_dependent_skipped`` says why.
        ``ended``: when (monotonic) its restart ended; any listing of the running
        containers asked since tells them."""
        modes = {f"container:{seen.id}", f"container:{seen.name}"}
        try:
            entries = self.running.after(client, ended)
        except docker_errors():
            return
        for entry in entries:
            dependent = sighting_from_listing(entry)
            if dependent.network_mode in modes:
                self._restart_dependent(client, dependent, seen, now)

    def _restart_dependent(self, client: Any, dependent: Sighting, parent: Sighting,
                           now: datetime) -> None:
        store = self.runtime.store
        carried = {"container": dependent.name, "host": self.host,
                   "container_id": dependent.id[:12], "image": dependent.image,
                   "network_of": parent.name,
                   "reason": f"shares the network namespace of {parent.name}"}
        refusal = self.refusal(dependent, now)
        if refusal is not None:
            store.record_event(
                EventType.CONTAINER_DEPENDENT_SKIPPED,
                f"{dependent.name} shares {parent.name}'s network but is {refusal}: "
                "not restarted", importance=Importance.HIGH, source=SOURCE, timestamp=now,
                details={**carried, "skipped_because": refusal})
            return
        timeout_s = effective_stop_timeout_s(dependent, self.runtime.settings)
        try:
            client.api.restart(dependent.id, timeout=int(timeout_s))
        except docker_errors() as exc:
            self.log.error("container_dependent_restart_failed", container=dependent.name,
                           error=str(exc))
            return
        store.record_event(
            EventType.CONTAINER_RESTARTED,
            f"{dependent.name} restarted after {parent.name} (shared network namespace)",
            importance=Importance.HIGH, source=SOURCE, timestamp=now, details=carried)
