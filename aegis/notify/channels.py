"""The channels' destinations: which targets each channel (alerts, journal, escalation)
posts to, from the settings, and what to set when it has none."""

from __future__ import annotations

from aegis.core.config import Settings
from aegis.notify.apprise import AppriseTarget
from aegis.notify.discord import DiscordTarget, is_webhook_url
from aegis.notify.targets import Target
from aegis.storage.outbox import Channel

SETUP_HINT = {
    Channel.ALERTS: "set DISCORD_WEBHOOK_URL or AEGIS_NOTIFY_URLS",
    Channel.JOURNAL: "set DISCORD_JOURNAL_WEBHOOK_URL or AEGIS_JOURNAL_NOTIFY_URLS",
    Channel.ESCALATION: "set AEGIS_ESCALATE_AFTER and AEGIS_ESCALATION_URLS",
}


def targets_for(settings: Settings) -> dict[Channel, list[Target]]:
    """Each channel's destinations, from the settings."""
    alerts: list[Target] = []
    journal: list[Target] = []
    if settings.discord_webhook_url:
        alerts.append(DiscordTarget(settings.discord_webhook_url))
    alerts.extend(AppriseTarget(url, i) for i, url in enumerate(settings.notify_urls, 1))
    if settings.discord_journal_webhook_url:
        journal.append(DiscordTarget(settings.discord_journal_webhook_url))
    journal.extend(AppriseTarget(url, i)
                   for i, url in enumerate(settings.journal_notify_urls, 1))
    return {Channel.ALERTS: alerts, Channel.JOURNAL: journal,
            Channel.ESCALATION: escalation_targets(settings.escalation_urls)}


def escalation_targets(urls: tuple[str, ...]) -> list[Target]:
    """AEGIS_ESCALATION_URLS: a Discord webhook URL posts as DISCORD_WEBHOOK_URL does,
    anything else goes through Apprise."""
    return [DiscordTarget(url) if is_webhook_url(url) else AppriseTarget(url, i)
            for i, url in enumerate(urls, 1)]


def unconfigured_reason(channel: Channel) -> str:
    """Why the messages of a channel with no destination are undeliverable."""
    return f"no {channel} channel is configured: {SETUP_HINT[channel]}"
