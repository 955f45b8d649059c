"""docker_health_check: the reconciliation sweep of the three-strike protocol, every 5
minutes on every host, plus the Docker events watcher that acts between sweeps."""

from typing import Any

from aegis import triggers
from aegis.registry import JobContext, Registry
from aegis.supervisor import supervise_once
from aegis.watcher import run_watcher


def docker_health_check(ctx: JobContext) -> dict[str, Any]:
    """Reconcile every container against one Docker listing: strikes, restarts,
    escalations the event stream may have missed."""
    if ctx.settings.remediation == "off":
        return {"remediation": "off"}
    result = supervise_once(ctx.app, ctx.now)
    if result.get("docker_available"):
        actions = {k: v for k, v in result.items()
                   if k in ("strike1", "restart", "escalate", "recover", "reset")}
        summary = (f"{result['supervised']} supervised of {result['containers']} containers, "
                   f"{result['unhealthy']} unhealthy"
                   + "".join(f", {count} {action}" for action, count in actions.items()))
        ctx.store.record_event("docker_health_check", summary, importance="low",
                               source="docker_health_check", details=result)
        ctx.log.info("docker_health_check_complete", **result)
    return result


def register(registry: Registry) -> None:
    registry.add("docker_health_check", docker_health_check, triggers.every(minutes=5),
                 scope="host", timeout_s=240)
    registry.add_service("docker_events", run_watcher)
