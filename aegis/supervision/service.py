"""The supervision of one aegis: the Docker events watcher (a daemon service), the
reconciliation sweep (the ``docker_health_check`` job) and what the two share, owned by
one ``Supervision`` object, so two aegis apps in one process share nothing.

    supervision = Supervision()
    registry.add("docker_health_check", ... supervision.sweep(ctx.app, ctx.now) ...)
    registry.add_service("docker_events", supervision.watch, drain=supervision.drain)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aegis.core.clock import utcnow
from aegis.core.config import RemediationMode
from aegis.storage.runtime import Runtime
from aegis.supervision.docker import docker_client, docker_errors
from aegis.supervision.supervisor import SupervisionState, Supervisor
from aegis.supervision.watcher import Watcher


class Supervision:
    def __init__(self, client_factory: Callable[[], Any] = docker_client) -> None:
        self.client_factory = client_factory
        self.state = SupervisionState()

    def sweep(self, runtime: Runtime, now: datetime | None = None) -> dict[str, Any]:
        """One reconciliation sweep over one container listing (see ``supervise_once``)."""
        return supervise_once(runtime, now, client_factory=self.client_factory,
                              state=self.state)

    def watch(self, runtime: Runtime, stop: threading.Event) -> None:
        """The ``docker_events`` service: off when AEGIS_REMEDIATION=off."""
        if runtime.settings.remediation == RemediationMode.OFF:
            return
        Watcher(runtime, client_factory=self.client_factory, state=self.state).run(stop)

    def drain(self, grace_s: float) -> bool:
        """Wait up to ``grace_s`` for restarts under way (finished, then recorded)."""
        return self.state.restarts.wait_idle(grace_s)


def supervise_once(runtime: Runtime, now: datetime | None = None, client: Any = None, *,
                   client_factory: Callable[[], Any] = docker_client,
                   state: SupervisionState | None = None) -> dict[str, Any]:
    """One reconciliation sweep; records the engine's availability. Uses ``client`` when
    given, else a fresh one from ``client_factory`` (closed afterwards)."""
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
        return {"docker_available": True,
                **Supervisor(runtime, client, state=state).reconcile(now)}
    finally:
        if own_client:
            client.close()
