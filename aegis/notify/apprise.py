"""Apprise: every other service (Telegram, Slack, ntfy, email, a JSON webhook...) through
one URL each. ``AppriseTarget`` posts a message's title and a markdown body; it cannot
edit a message, so the updates of a living message pass it by. A failure with an HTTP
4xx other than 429 is a refusal for good, any other is worth a retry; no error text
carries the URL.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from aegis.core.redact import MASK, redact
from aegis.notify.messages import Message, escape_markdown
from aegis.notify.targets import Outcome, Result, target_id, url_secrets
from aegis.storage.events import Importance
from aegis.storage.outbox import IncidentStep

# Apprise's notification type (its icon or colour where a service shows one).
NOTIFY_TYPES = {Importance.LOW: "info", Importance.MEDIUM: "info", Importance.HIGH: "warning",
                Importance.CRITICAL: "failure"}


def notify_type(message: Message) -> str:
    """A recovery is a success; anything else is typed by its importance."""
    if message.state == IncidentStep.RECOVERED:
        return "success"
    return NOTIFY_TYPES[message.importance]


def plain_text(message: Message) -> str:
    """The body Apprise services receive: description, fields as lines, footer."""
    parts = [message.description] if message.description else []
    parts.extend(f"{escape_markdown(name)}: {escape_markdown(value)}"
                 for name, value in message.fields)
    parts.append(message.footer)
    return "\n".join(parts)


def classify_apprise(log_text: str, secrets: list[str]) -> Outcome:
    """A failed notification, from what Apprise logged meanwhile: an HTTP 4xx other than 429
    is refused for good, anything else is worth a retry; the reason is its last line."""
    lines = [line.split(" - ", 2)[-1] for line in log_text.strip().splitlines()]
    reason = redact(lines[-1] if lines else "the service refused the message", secrets)
    status = re.search(r"error=(\d{3})", log_text)
    if status and 400 <= int(status.group(1)) < 500 and status.group(1) != "429":
        return Outcome(Result.FAILED, reason)
    return Outcome(Result.RETRY, reason)


@dataclass
class AppriseTarget:
    """One Apprise URL (``index``: its place in the channel's list, for its label)."""

    url: str
    index: int = 1
    id: str = field(init=False)
    label: str = field(init=False)
    edits: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.id = target_id(self.url)
        scheme = self.url.split("://", 1)[0] if "://" in self.url else "apprise"
        # Many Apprise URLs carry the token where a host would be: show the scheme only.
        self.label = f"apprise #{self.index} {scheme}://{MASK}"

    def send(self, message: Message) -> Outcome:
        import apprise

        with apprise.LogCapture(level=logging.WARNING) as captured:  # type: ignore[no-untyped-call]
            client = apprise.Apprise()
            if not client.add(self.url):
                return Outcome(Result.FAILED, "not a valid Apprise URL")
            delivered = client.notify(title=message.title, body=plain_text(message),
                                      body_format=apprise.NotifyFormat.MARKDOWN,
                                      notify_type=notify_type(message))
            log_text = captured.getvalue()
        if delivered:
            return Outcome(Result.DELIVERED)
        return classify_apprise(log_text, url_secrets(self.url))

    def edit(self, message_id: str, message: Message) -> Outcome:
        return Outcome(Result.FAILED, "Apprise services cannot edit a message")
