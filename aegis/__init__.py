"""aegis: an ops daemon for Docker hosts.

The public Python API (stable names; importing this package does no I/O)::

    import aegis

    with aegis.connect() as app:
        app.scheduler.add_job(my_job, id="my_job", trigger=aegis.every(minutes=10))
        app.scheduler.start()
        app.memory.record("deploy_finished", "web is live", importance="medium")
        app.state.set("last_deploy", "2026-11-22")
"""

__version__ = "0.1.0"

from aegis.api import Aegis, Memory, State, connect
from aegis.config import Settings, load_settings
from aegis.control import JobInfo, SchedulerControl
from aegis.errors import AegisError, ConfigError, DatabaseUnavailable, StoreError, UsageError
from aegis.registry import Job, JobContext, Registry
from aegis.runs import JobRun
from aegis.store import Event
from aegis.tasks import Task
from aegis.triggers import cron, daily, every, once, weekly

__all__ = [
    "Aegis",
    "AegisError",
    "ConfigError",
    "DatabaseUnavailable",
    "Event",
    "Job",
    "JobContext",
    "JobInfo",
    "JobRun",
    "Memory",
    "Registry",
    "SchedulerControl",
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
