"""health_check: is the database answering? Every 5 minutes, on every host."""

from typing import Any

from aegis.core.errors import StoreError
from aegis.scheduling import triggers
from aegis.scheduling.registry import JobContext, Registry
from aegis.storage.events import EventType, Importance


def health_check(ctx: JobContext) -> dict[str, Any]:
    """Run SELECT 1; record db_healthy and last_health_check, and a critical event when the
    database is unreachable (spooled until it answers again)."""
    try:
        ctx.app.db.probe()
        healthy, error = True, None
    except StoreError as exc:
        healthy, error = False, str(exc)
    store = ctx.app.store
    store.set_state("last_health_check", ctx.now.isoformat())
    store.set_state("db_healthy", healthy)
    if healthy:
        ctx.log.info("health_check_complete", db_healthy=True)
    else:
        ctx.log.error("health_check_db_failed", error=error)
        store.record_event(EventType.DB_UNREACHABLE, f"the database did not answer: {error}",
                           importance=Importance.CRITICAL, source="health_check",
                           details={"error": error})
    return {"db_healthy": healthy, "error": error}


def register(registry: Registry) -> None:
    registry.add("health_check", health_check, triggers.every(minutes=5), scope="host",
                 timeout_s=60)
