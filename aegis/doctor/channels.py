"""The notification channels: configured, and how their messages fare in the outbox."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from aegis import api
from aegis.core.config import Settings
from aegis.core.errors import AegisError
from aegis.core.redact import redact, redact_urls
from aegis.doctor.checks import FAIL, OK, WARN, Check
from aegis.notify.channels import SETUP_HINT
from aegis.notify.discord import is_webhook_url
from aegis.storage.outbox import Channel, Outbox, OutboxStatus

PENDING_WARN_S = 600.0


def _targets(settings: Settings, channel: str) -> list[str]:
    if channel == Channel.ESCALATION:
        return [_discord(url) if is_webhook_url(url) else _apprise(url)
                for url in settings.escalation_urls]
    if channel == Channel.ALERTS:
        discord, urls = settings.discord_webhook_url, settings.notify_urls
    else:
        discord, urls = settings.discord_journal_webhook_url, settings.journal_notify_urls
    targets = [_discord(discord)] if discord else []
    targets += [_apprise(url) for url in urls]
    return targets


def _discord(url: str) -> str:
    return f"discord ({urlsplit(url).hostname})"


def _apprise(url: str) -> str:
    return f"apprise {url.split('://', 1)[0]}://"


def _unconfigured(name: str, channel: Channel) -> Check:
    if channel == Channel.ESCALATION:
        # a second route is optional: without one, an escalation is the alert alone
        return Check(name, OK, "off (AEGIS_ESCALATE_AFTER unset)")
    return Check(name, WARN, "not configured: its messages stay in the outbox",
                 SETUP_HINT[channel])


def check_channel(settings: Settings, channel: Channel, app: api.Aegis | None,
                  now: datetime) -> Check:
    name = f"channel:{channel}"
    targets = _targets(settings, channel)
    if not targets:
        return _unconfigured(name, channel)
    configured = ", ".join(targets)
    if app is None:
        return Check(name, WARN, f"{configured}; outbox not readable (database unreachable)",
                     "fix the database check first")
    try:
        health = Outbox(app.db).channel_health(channel)
    except AegisError as exc:
        return Check(name, WARN, f"{configured}; outbox not readable: {redact(str(exc))}",
                     "fix the database check first")
    last = health.last_delivered_at
    delivered = f"last delivery {last:%Y-%m-%d %H:%M:%S}Z" if last else "nothing delivered yet"
    retry = f"fix it, then run `aegis notify test --channel {channel}`"
    if health.latest_status in (OutboxStatus.FAILED, OutboxStatus.UNDELIVERABLE):
        error = redact_urls(redact(health.latest_error or "no reason recorded"))
        return Check(name, FAIL, f"{configured}; {delivered}; latest message "
                     f"{health.latest_status}: {error[:200]}", retry)
    pending, oldest = health.pending, health.oldest_pending_at
    if pending and oldest is not None and (now - oldest).total_seconds() > PENDING_WARN_S:
        age_min = (now - oldest).total_seconds() / 60
        return Check(name, WARN, f"{configured}; {delivered}; {pending} pending, oldest "
                     f"{age_min:.0f} min", "is the daemon running? " + retry)
    return Check(name, OK, f"{configured}; {delivered}; {pending} pending")
