"""The long-running loops of aegis itself, started by the daemon beside the scheduler.

Each area of aegis that needs a loop (the outbox sender, the HTTP endpoint...) adds one
line here; job modules add their own services through ``register(registry)``.
"""

from aegis.registry import Registry


def register_core_services(registry: Registry) -> None:
    """Add aegis's own services to ``registry``."""
    from aegis import http  # /healthz and /metrics; returns at once when AEGIS_HTTP_ADDR=off
    registry.add_service("http", http.serve)
    from aegis.sender import run_sender  # the outbox: notifications to Discord / Apprise
    registry.add_service("outbox_sender", run_sender)
