"""docker_health_check: the reconciliation sweep of the three-strike protocol, every 5
minutes on every host, plus the Docker events watcher that acts between sweeps. The two
share one ``Supervision`` (the rows kept for a database outage, the restarts under way),
made here for the registry being loaded."""

from typing import Any

from aegis.scheduling import triggers
from aegis.scheduling.registry import JobContext, Registry
from aegis.storage.events import EventType, Importance
from aegis.supervision.service import Supervision


def docker_health_check(ctx: JobContext, supervision: Supervision) -> dict[str, Any]:
    """Reconcile every container against one Docker listing: strikes, restarts,
    escalations the event stream may have missed."""
    if ctx.settings.remediation == "off":
        return {"remediation": "off"}
    result = supervision.sweep(ctx.app, ctx.now)
    if result.get("docker_available"):
        actions = {k: v for k, v in result.items()
                   if k in ("strike1", "restart", "escalate", "recover", "reset")}
        summary = (f"{result['supervised']} supervised of {result['containers']} containers, "
                   f"{result['unhealthy']} unhealthy"
                   + "".join(f", {count} {action}" for action, count in actions.items()))
        ctx.store.record_event(EventType.DOCKER_HEALTH_CHECK, summary, importance=Importance.LOW,
                               source="docker_health_check", details=result)
        ctx.log.info("docker_health_check_complete", **result)
    return result


def register(registry: Registry) -> None:
    supervision = Supervision()

    def sweep(ctx: JobContext) -> dict[str, Any]:
        return docker_health_check(ctx, supervision)

    registry.add("docker_health_check", sweep, triggers.every(minutes=5), scope="host",
                 timeout_s=240, description=(docker_health_check.__doc__ or "").split("\n")[0])
    registry.add_service("docker_events", supervision.watch, drain=supervision.drain)
