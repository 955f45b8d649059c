"""``aegis doctor``: what is wrong with this installation, and the one-line fix for each.

Every check returns ok, warn or fail; none raises. The checks are read-only: the journal
probe writes and removes one temporary file, and the Docker check asks to restart a
container that cannot exist (to learn whether a proxy forbids restarts); nothing else is
asked or changed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aegis import api
from aegis.core.clock import utcnow
from aegis.core.config import Settings
from aegis.core.errors import AegisError
from aegis.doctor.channels import check_channel
from aegis.doctor.checks import FAIL, Check, not_checked
from aegis.doctor.database import database_checks, database_unreachable
from aegis.doctor.engine import engine_checks
from aegis.doctor.local import check_daemon, check_journal_dir, check_maintenance_windows
from aegis.storage.outbox import Channel


def run_checks(settings: Settings, clock: Callable[[], datetime] = utcnow) -> list[Check]:
    """Every check, in a fixed order."""
    results: list[Check] = []
    app: api.Aegis | None = None
    try:
        app = api.connect(settings, migrate=False, pool_size=1)
    except AegisError as exc:
        results.append(database_unreachable(settings, str(exc)))
    try:
        if app is not None:
            results.extend(database_checks(app, settings, clock))
        else:
            results += [not_checked("migrations"), not_checked("clock")]
        results.extend(engine_checks(settings))
        results.extend(check_channel(settings, channel, app, clock()) for channel in Channel)
        results.append(check_journal_dir(settings.journal_dir))
        results.append(check_daemon(settings, clock()))
        results.append(check_maintenance_windows(settings, clock()))
    finally:
        if app is not None:
            app.close()
    return results


def has_failures(checks: list[Check]) -> bool:
    return any(check.status == FAIL for check in checks)
