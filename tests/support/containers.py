"""Test containers: busybox (tests/images) running a shell script, with a health check
given through the Docker SDK. Every container a test runs is made here, by ``Containers``,
from the scripts and probes below, and waited on with the helpers at the end.

Each script runs until the container is stopped. Sleeping in the background and waiting
lets a trapped TERM end a script at once, so a stop or a restart takes well under a strike
interval (and costs one ``sleep`` a second, not ten, on a machine running many of them).
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from tests.support.waiting import wait_for

# --- scripts ---

# Ends the script at once on TERM, the container's stop signal (when it waits: in ``wait``,
# not in a foreground command).
EXIT_ON_TERM = "trap 'exit 0' TERM; "
# Runs until stopped; TERM ends it at once.
IDLE = f"{EXIT_ON_TERM}while :; do sleep 1 & wait; done"
# IDLE, never creating /healthy: never healthy under HEALTHCHECK.
NEVER_HEALTHY = IDLE
# Healthy under HEALTHCHECK after each start, until /healthy is removed.
HEALS = f"touch /healthy; {IDLE}"
# The first start creates /healthy; a start after that does not (the container's files
# outlive a restart).
HEALTHY_ON_FIRST_START = "[ -f /once ] || touch /healthy /once; "
# Healthy until /healthy is removed; stays broken through a restart.
BREAKS_FOR_GOOD = f"{HEALTHY_ON_FIRST_START}{IDLE}"
# Ignores TERM (as a shell that is PID 1 does without a trap): a stop or a restart takes
# the whole stop timeout, then the engine kills it.
IGNORES_TERM = "trap '' TERM; while :; do sleep 1 & wait; done"

# --- probes (the SDK's healthcheck dicts; times in nanoseconds) ---

# Every 0.5 s with a 2 s timeout, unhealthy at the first failure.
FAST_PROBE = {"interval": 500_000_000, "timeout": 2_000_000_000, "retries": 1}
# Healthy while /healthy exists, probed every 0.3 s.
HEALTHCHECK = {"test": ["CMD", "/bin/sh", "-c", "test -f /healthy"],
               "interval": 300_000_000, "timeout": 2_000_000_000, "retries": 1}
# Healthy while /ok exists.
OK_FILE = {**FAST_PROBE, "test": ["CMD-SHELL", "test -f /ok"]}
# Never healthy: the probe always fails.
FAILS = {**FAST_PROBE, "test": ["CMD-SHELL", "exit 1"]}
# Always healthy, probed every second.
PASSES = {"test": ["CMD", "true"], "interval": 1_000_000_000, "retries": 1}


class Containers:
    """Busybox containers on ``client``'s engine, each labelled ``aegis.test=<id>`` (the
    suite's own, which ``foreign_containers`` leaves out) unless ``test_label`` is off,
    with no network and SIGTERM as stop signal unless said otherwise. ``remove_all``
    removes every one made, and every one carrying the label (a container whose start
    failed included)."""

    def __init__(self, client: Any, image: str) -> None:
        self.client = client
        self.image = image
        self.test_id = uuid.uuid4().hex[:10]
        self.made: list[Any] = []

    def run(self, script: str, *, healthcheck: dict[str, Any] | None = HEALTHCHECK,
            labels: dict[str, str] | None = None, name: str | None = None,
            test_label: bool = True, **kwargs: Any) -> Any:
        """Start a container running ``script`` with ``healthcheck`` (None: none), named
        ``name`` (else ``aegis-test-<id>-<n>``); ``kwargs`` go to ``containers.run``."""
        kwargs.setdefault("network_mode", "none")  # no bridge needed, none assumed
        kwargs.setdefault("stop_signal", "SIGTERM")
        own = {"aegis.test": self.test_id} if test_label else {}
        container = self.client.containers.run(
            self.image, ["/bin/sh", "-c", script], detach=True,
            name=name or f"aegis-test-{self.test_id}-{len(self.made)}",
            labels={**own, **(labels or {})}, healthcheck=healthcheck, **kwargs)
        self.made.append(container)
        return container

    def output(self, command: list[str], **kwargs: Any) -> bytes:
        """What ``command`` printed, run to its end in a container removed afterwards."""
        kwargs.setdefault("network_mode", "none")
        kwargs.setdefault("labels", {"aegis.test": self.test_id})
        return bytes(self.client.containers.run(self.image, command, remove=True, **kwargs))

    def remove_all(self) -> None:
        import docker.errors

        labelled = self.client.containers.list(
            all=True, filters={"label": f"aegis.test={self.test_id}"})
        for container in {c.id: c for c in [*self.made, *labelled]}.values():
            with contextlib.suppress(docker.errors.NotFound):  # gone meanwhile
                container.remove(force=True)


# --- a container's state, as the engine reports it ---


def wait_health(client: Any, container: Any, want: str, timeout_s: float = 20) -> None:
    """Until ``container`` runs and its health is ``want`` (healthy, unhealthy)."""
    def in_state() -> bool:
        state = client.api.inspect_container(container.id)["State"]
        return (state.get("Health") or {}).get("Status") == want and state["Status"] == "running"

    wait_for(in_state, timeout_s, f"{container.name} to become {want}")


def wait_status(client: Any, container: Any, want: str, timeout_s: float = 20) -> None:
    """Until ``container``'s status is ``want`` (running, exited)."""
    wait_for(lambda: client.api.inspect_container(container.id)["State"]["Status"] == want,
             timeout_s, f"{container.name} to become {want}")


def make_unhealthy(client: Any, container: Any) -> None:
    """A container running HEALS or BREAKS_FOR_GOOD, once healthy, made unhealthy."""
    wait_health(client, container, "healthy")
    container.exec_run(["rm", "-f", "/healthy"])
    wait_health(client, container, "unhealthy")


def started_at(client: Any, container: Any) -> str:
    """When the engine last started ``container`` (its ISO-8601 text: a restart changes
    it)."""
    return str(client.api.inspect_container(container.id)["State"]["StartedAt"])


def foreign_containers(client: Any) -> list[str]:
    """Running containers on the engine that aegis could act on (they have a health check)
    and that the test suite did not make (no ``aegis.test`` label)."""
    import docker.errors

    foreign = []
    for summary in client.api.containers(filters={"status": "running"}):
        if "aegis.test" in (summary.get("Labels") or {}):
            continue
        with contextlib.suppress(docker.errors.NotFound):  # gone meanwhile
            config = client.api.inspect_container(summary["Id"])["Config"]
            probe = (config.get("Healthcheck") or {}).get("Test") or ["NONE"]
            if probe[0] != "NONE":
                foreign.append(summary["Names"][0].lstrip("/"))
    return sorted(foreign)
