"""``Supervision``: the supervision of one aegis, as the daemon runs it. The events
watcher is one of its services (``docker_events``), the reconciliation sweep its
``docker_health_check`` job, and the two share what one supervision knows (the rows last
known for a database outage, the restarts under way, the engine's availability).
``supervise_once`` is one sweep, for the job and for ``aegis run --once``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aegis.core.clock import utcnow
from aegis.core.config import RemediationMode
from aegis.core.logs import get_logger
from aegis.storage.runtime import Runtime
from aegis.supervision.docker import DockerClients, docker_client, docker_errors
from aegis.supervision.supervisor import BackgroundRestarts, SupervisionState, Supervisor
from aegis.supervision.watcher import Watcher


class Supervision:
    """The supervision of one aegis: the events watcher (a daemon service), the
    reconciliation sweep (the ``docker_health_check`` job) and what the two share (the
    rows kept for a database outage, the restarts under way, the engine's availability),
    so two aegis apps in one process share nothing::

        supervision = Supervision()
        registry.add("docker_health_check", ... supervision.sweep(ctx.app, ctx.now) ...)
        registry.add_service("docker_events", supervision.watch, drain=supervision.drain)
    """

    def __init__(self, client_factory: Callable[[], Any] | None = None) -> None:
        """``client_factory``: how its Docker clients are made (by default a
        ``DockerClients``: the API version negotiated once)."""
        self.client_factory = client_factory or DockerClients()
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
        until = self.waiting_until
        if until is not None and stop.wait(max(0.0, until - time.monotonic())):
            return
        Watcher(runtime, client_factory=self.client_factory, state=self.state).run(stop)

    def drain(self, grace_s: float) -> bool:
        """Wait up to ``grace_s`` for restarts under way (finished, then recorded)."""
        return self.state.restarts.wait_idle(grace_s)


def supervise_once(runtime: Runtime, now: datetime | None = None, *,
                   client_factory: Callable[[], Any] = docker_client,
                   state: SupervisionState | None = None,
                   parallel_restarts: bool = False) -> dict[str, Any]:
    """One reconciliation sweep through a client from ``client_factory`` (closed
    afterwards); records the engine's availability. With ``parallel_restarts``, the
    sweep's restarts run side by side (one thread and client from ``client_factory``
    each) and it returns when they are over; else one after another in this thread."""
    now = now or utcnow()
    state = state or SupervisionState()
    client = None
    try:
        client = client_factory()
        client.ping()
    except docker_errors() as exc:
        if client is not None:
            client.close()
        state.engine.note(runtime, False, str(exc), now)
        return {"docker_available": False, "error": str(exc)}
    try:
        state.engine.note(runtime, True, None, now)
        background = BackgroundRestarts(client_factory) if parallel_restarts else None
        supervisor = Supervisor(runtime, client, state=state, background=background)
        return {"docker_available": True, **supervisor.reconcile(now, wait=True)}
    finally:
        client.close()
