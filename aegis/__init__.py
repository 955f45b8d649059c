"""aegis: an ops daemon for Docker hosts.

The public Python API (stable names; importing this package does no I/O)::

    import aegis

    with aegis.connect() as app:
        app.scheduler.add_job(my_job, id="my_job", trigger=aegis.every(minutes=10))
        app.scheduler.start()
        app.memory.record("deploy_finished", "web is live", importance="medium")
        app.state.set("last_deploy", "2026-11-22")
"""

from aegis.api import Aegis, Memory, State, connect, load_settings
from aegis.core.config import Settings
from aegis.core.errors import (
    AegisError,
    ConfigError,
    DatabaseUnavailable,
    SchemaTooNew,
    StoreError,
    UsageError,
)
from aegis.scheduling.control import JobInfo, SchedulerControl
from aegis.scheduling.registry import Job, JobContext, Registry
from aegis.scheduling.repository import JobRun
from aegis.scheduling.tasks import Task
from aegis.scheduling.triggers import cron, daily, every, once, weekly
from aegis.storage.events import Event, EventType, Importance
from aegis.storage.runtime import Runtime
from aegis.version import __version__

__all__ = [
    "Aegis",
    "AegisError",
    "ConfigError",
    "DatabaseUnavailable",
    "Event",
    "EventType",
    "Importance",
    "Job",
    "JobContext",
    "JobInfo",
    "JobRun",
    "Memory",
    "Registry",
    "Runtime",
    "SchedulerControl",
    "SchemaTooNew",
    "Settings",
    "State",
    "StoreError",
    "Task",
    "UsageError",
    "__version__",
    "connect",
    "cron",
    "daily",
    "every",
    "load_settings",
    "once",
    "weekly",
]
