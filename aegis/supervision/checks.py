"""Containers judged off the watcher's loop: ``Checks`` inspects and judges them side by
side in a few threads, each with a Docker client of its own, so the strike 2s of a burst
and the judgement after each of its restarts run in parallel, and an inspect the engine
is slow to answer (it is stopping that container) never holds up the strike 1 of another
container's event.

A container struck by an event is inspected ahead, ``LOOKAHEAD_S`` before its strike timer
falls due (at once for a shorter interval): the check the timer brings decides from that
inspect, unless an event of the container came after it, so a burst's strike 2s wait on
no answer of an engine busy restarting the others. The checks of a container whose
restart is over wait while other restarts are under way (``RestartTracker.held_until``),
so the engine starting the last containers of a burst answers none of them meanwhile.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from aegis.core.errors import StoreError
from aegis.core.logs import get_logger
from aegis.supervision.docker import Sighting, docker_errors, sighting_from_inspect
from aegis.supervision.supervisor import Supervisor

# Containers checked side by side off the loop (a timer come due, a restart over, a die):
# an inspect mostly waits on the engine, and a burst's strike 2s all fall due together.
# Threads (and their clients) are made only as a burst needs them.
CHECK_WORKERS = 16
# Not Docker's: the action of the item a check queues with the strike timer it set.
CHECK_DONE = "aegis_check_done"
# A container struck by an event is inspected this long before its strike timer falls due;
# the check the timer brings decides from that inspect if it is at most
# LOOKAHEAD_MAX_AGE_S old and no event of the container came after it.
LOOKAHEAD_S = 2.0
LOOKAHEAD_MAX_AGE_S = 5.0


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
        # container -> the latest moment (monotonic) its check may wait to, while the
        # restarts under way with its own are still being made (RestartTracker.held_until)
        self._held: dict[str, float] = {}
        # container id -> its inspect ahead: (when it was asked, monotonic; the sighting)
        self._ahead: dict[str, Future[tuple[float, Sighting] | None]] = {}

    def submit(self, container: str, now: datetime) -> None:
        """Check ``container`` (id or name) soon, unless a check of it is under way. One
        whose restart by aegis is over is held while others are still under way (then
        ``release`` submits it)."""
        until = self.supervisor.restarts.held_until(container)
        with self._lock:
            if until is not None:
                self._held.setdefault(container, until)
                return
            if container in self._running:
                return
            self._running.add(container)
        try:
            self._executor.submit(self._check, container, now)
        except RuntimeError:  # closed: the stream ended, and its reconnection sweeps all
            with self._lock:
                self._running.discard(container)

    def release(self, now: datetime) -> None:
        """Submit the held checks whose wait is over: the other restarts have been made,
        or the longest wait has passed."""
        with self._lock:
            held = list(self._held)
        for container in held:
            if self.supervisor.restarts.held_until(container) is None:
                with self._lock:
                    self._held.pop(container, None)
                self.submit(container, now)

    def next_release(self) -> float | None:
        """The latest moment (monotonic) the first held check waits to, if any."""
        with self._lock:
            return min(self._held.values(), default=None)

    def look_ahead(self, container_id: str) -> None:
        """Inspect ``container_id`` now, for the check its strike timer brings soon."""
        with self._lock:
            if container_id in self._ahead:
                return
            try:
                self._ahead[container_id] = self._executor.submit(self._inspect,
                                                                  container_id)
            except RuntimeError:  # closed: the stream ended
                return

    def changed(self, container_id: str) -> None:
        """An event of ``container_id`` arrived: an inspect ahead of it is stale."""
        with self._lock:
            ahead = self._ahead.pop(container_id, None)
        if ahead is not None:
            ahead.cancel()

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

    def _client(self) -> Any:
        try:
            return self._clients.get_nowait()
        except queue.Empty:
            return self.client_factory()

    def _inspect(self, container_id: str) -> tuple[float, Sighting] | None:
        asked = time.monotonic()  # the engine's answer tells the state at this time or later
        client = self._client()
        try:
            return asked, sighting_from_inspect(client.api.inspect_container(container_id))
        except docker_errors():  # the check inspects again
            return None
        finally:
            self._clients.put(client)

    def _taken_ahead(self, container: str) -> Sighting | None:
        """The inspect of ``container`` taken ahead, when it still tells its state: it
        waits for one under way, and drops one not started (the check inspects now)."""
        with self._lock:
            ahead = self._ahead.pop(container, None)
        if ahead is None or ahead.cancel():
            return None
        try:
            taken = ahead.result()
        except Exception:  # as if there were none: the check inspects
            return None
        if taken is None or time.monotonic() - taken[0] > LOOKAHEAD_MAX_AGE_S:
            return None
        return taken[1]

    def _check(self, container: str, now: datetime) -> None:
        timer = None
        try:
            seen = self._taken_ahead(container)
            client = self._client()
            try:
                twin = self.supervisor.with_client(client)
                twin.check(container, now, seen)
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
