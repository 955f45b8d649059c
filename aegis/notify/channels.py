"""Notification channels: what a post looks like and how it reaches Discord or Apprise.

Rendering and Discord's size limits are pure functions; ``DiscordTarget`` and
``AppriseTarget`` post one message and classify the answer as delivered, worth a retry,
or permanently refused. Nothing here raises on a failed post and no error text carries
a webhook URL or token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests

from aegis.core.config import Settings
from aegis.core.redact import MASK, redact, redact_url
from aegis.storage.outbox import OutboxRow

# Discord's documented limits (https://discord.com/developers/docs/resources/message).
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
EMBEDS_TOTAL_MAX = 6000

ELLIPSIS = "…"
POST_TIMEOUT_S = 10.0
COLOURS = {"low": 0x95A5A6, "medium": 0x3498DB, "high": 0xE67E22, "critical": 0xE74C3C}
# An incident's living message takes the colour of where it stands.
STATE_COLOURS = {"struck": 0xE67E22, "restarted": 0xE67E22, "restart_failed": 0xE67E22,
                 "escalated": 0xE74C3C, "acknowledged": 0x3498DB, "recovered": 0x2ECC71,
                 "reset": 0x95A5A6}
# Discord's code for a message that no longer exists (deleted by a person).
UNKNOWN_MESSAGE = 10008
# Nobody is pinged, whatever a container name, log line or probe output contains.
NO_MENTIONS: dict[str, list[str]] = {"parse": []}
# Characters that format, link or mention in Discord's markdown (and in most markdown),
# and the markers that do so only at the start of a line: heading, quote, list.
_MARKDOWN_CHARS = re.compile(r"([\\*_~`|\[\]<>])")
_LINE_MARKERS = re.compile(r"^(\s*)([#+-])", re.M)
_NUMBERED = re.compile(r"^(\s*\d+)\.(?=\s)", re.M)
SETUP_HINT = {
    "alerts": "set DISCORD_WEBHOOK_URL or AEGIS_NOTIFY_URLS",
    "journal": "set DISCORD_JOURNAL_WEBHOOK_URL or AEGIS_JOURNAL_NOTIFY_URLS",
}


# --- messages ---


@dataclass(frozen=True)
class Message:
    """One post, built from one outbox row or a group of them."""

    title: str
    description: str
    importance: str
    fields: tuple[tuple[str, str], ...]
    footer: str
    timestamp: datetime
    state: str | None = None  # an incident's (its colour), or None


def render(rows: Sequence[OutboxRow], *, instance: str,
           repeats: Mapping[int, tuple[int, datetime]] | None = None) -> Message:
    """The message for ``rows`` (oldest first). ``repeats`` maps a row id to how many
    identical alerts were summarised since that alert was last posted, and when."""
    repeats = repeats or {}
    hosts = sorted({row.host for row in rows})
    footer = f"aegis on {', '.join(hosts)} · sent by {instance}"
    worst = max(rows, key=lambda row: list(COLOURS).index(row.importance)).importance
    if len(rows) == 1:
        row = rows[0]
        fields = [("host", row.host),
                  *((k, v) for k, v in row.fields.items() if (k, v) != ("host", row.host))]
        if row.id in repeats:
            count, since = repeats[row.id]
            fields.append(("repeated", f"{count} more time(s) since {since:%Y-%m-%d %H:%M} UTC, "
                                       "not posted separately"))
        return Message(title=row.title, description=row.body, importance=row.importance,
                       fields=tuple(fields), footer=footer, timestamp=row.created_at,
                       state=row.state)
    # Identical alerts in one group are listed once with a count.
    counted: dict[tuple[str, str, str], list[OutboxRow]] = {}
    for row in rows:
        counted.setdefault((row.host, row.title, row.body), []).append(row)
    lines = []
    for (host, title, body), same in counted.items():
        times = f" x{len(same)}" if len(same) > 1 else ""
        first_line = body.strip().splitlines()[0] if body.strip() else ""
        detail = f" — {escape_markdown(first_line)}" if first_line else ""
        lines.append(f"- **{escape_markdown(title)}**{times} ({same[0].importance}, "
                     f"{escape_markdown(host)}, {same[0].created_at:%H:%M:%S} UTC)"
                     f"{detail}")
    first, last = rows[0].created_at, rows[-1].created_at
    return Message(
        title=f"{len(rows)} alerts from {', '.join(hosts)}",
        description="\n".join(lines), importance=worst,
        fields=(("hosts", ", ".join(hosts)),
                ("window", f"{first:%H:%M:%S} to {last:%H:%M:%S} UTC")),
        footer=footer, timestamp=first)


def escape_markdown(text: str) -> str:
    """``text`` shown as written where markdown is rendered: a container name such as
    ``web__api__1``, a probe output with ``**`` or backticks, ``<@123>`` or a masked link
    formats, links and mentions nothing. Each such character gets a backslash."""
    text = _MARKDOWN_CHARS.sub(r"\\\1", text)
    text = _NUMBERED.sub(r"\1\\.", text)
    return _LINE_MARKERS.sub(r"\1\\\2", text)


def plain_text(message: Message) -> str:
    """The body Apprise services receive: description, fields as lines, footer."""
    parts = [message.description] if message.description else []
    parts.extend(f"{escape_markdown(name)}: {escape_markdown(value)}"
                 for name, value in message.fields)
    parts.append(message.footer)
    return "\n".join(parts)


# --- Discord payloads within the documented limits ---


def utf16_len(text: str) -> int:
    """Length as Discord's (JavaScript) limits count it; never less than ``len``."""
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis; never rejected."""
    if utf16_len(text) <= limit:
        return text
    kept = text.encode("utf-16-le")[: 2 * (limit - 1)].decode("utf-16-le", errors="ignore")
    return kept + ELLIPSIS


def _embed_chars(embed: Mapping[str, Any]) -> int:
    total = utf16_len(embed.get("title") or "") + utf16_len(embed.get("description") or "")
    total += sum(utf16_len(f["name"]) + utf16_len(f["value"]) for f in embed.get("fields", []))
    total += utf16_len((embed.get("footer") or {}).get("text") or "")
    total += utf16_len((embed.get("author") or {}).get("name") or "")
    return total


def discord_embed(message: Message) -> dict[str, Any]:
    """One embed for ``message``, every part within its limit and all within 6000. The
    title and fields (names, hosts, images: never markdown of aegis's own) are escaped;
    the description is markdown as its author wrote it; the footer is never rendered."""
    fields = [{"name": clip(escape_markdown(name) or "-", FIELD_NAME_MAX),
               "value": clip(escape_markdown(value.strip()) or "-", FIELD_VALUE_MAX),
               "inline": len(value) < 40}
              for name, value in message.fields]
    if len(fields) > FIELDS_MAX:
        hidden = len(fields) - (FIELDS_MAX - 1)
        fields = [*fields[: FIELDS_MAX - 1],
                  {"name": "more", "value": f"{hidden} more field(s) not shown", "inline": False}]
    embed: dict[str, Any] = {
        "title": clip(escape_markdown(message.title) or "aegis", TITLE_MAX),
        "color": STATE_COLOURS.get(message.state or "",
                                   COLOURS.get(message.importance, COLOURS["medium"])),
        "fields": fields,
        "footer": {"text": clip(message.footer, FOOTER_MAX)},
        "timestamp": message.timestamp.isoformat(),
    }
    if message.description.strip():
        embed["description"] = clip(message.description, DESCRIPTION_MAX)
    # Over the total: shorten the description, then drop fields from the end.
    excess = _embed_chars(embed) - EMBEDS_TOTAL_MAX
    if excess > 0 and "description" in embed:
        keep = max(1, utf16_len(embed["description"]) - excess)
        embed["description"] = clip(embed["description"], keep)
    while _embed_chars(embed) > EMBEDS_TOTAL_MAX and embed["fields"]:
        embed["fields"].pop()
    return embed


def discord_payload(message: Message) -> dict[str, Any]:
    """The JSON body of one webhook post, built with ``discord-webhook``."""
    from discord_webhook import DiscordWebhook

    webhook = DiscordWebhook(url="https://discord.invalid/", username="aegis",
                             allowed_mentions=NO_MENTIONS, embeds=[discord_embed(message)])
    payload: dict[str, Any] = webhook.json
    payload["allowed_mentions"] = NO_MENTIONS  # even if the library drops a falsy value
    return payload


# --- outcomes ---


@dataclass(frozen=True)
class Outcome:
    """How one post went: delivered, retry (later), failed (permanently), or gone (the
    message an edit was for no longer exists)."""

    result: str
    reason: str = ""
    retry_after_s: float | None = None
    # Discord said the bucket is empty: wait this long before the next post.
    pause_s: float | None = None
    message_id: str | None = None  # the message posted or edited, when the answer says

    @property
    def delivered(self) -> bool:
        return self.result == "delivered"


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def classify_discord(status: int, headers: Mapping[str, str], body: str) -> Outcome:
    """The outcome of a webhook answer: 2xx delivered; 429 retry after ``retry_after``;
    5xx retry; any other 4xx is permanent, with Discord's own message as the reason."""
    lowered = {k.lower(): v for k, v in headers.items()}
    reset_after_s = _float(lowered.get("x-ratelimit-reset-after"))
    if 200 <= status < 300:
        empty = lowered.get("x-ratelimit-remaining") == "0"
        return Outcome("delivered", pause_s=reset_after_s if empty else None)
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        answer = {}
    answer = answer if isinstance(answer, dict) else {}
    message = str(answer.get("message") or body[:200] or "no body").strip()
    if status == 429:
        retry_after_s = (_float(answer.get("retry_after"))
                         or _float(lowered.get("retry-after")) or reset_after_s or 1.0)
        scope = "global " if answer.get("global") else ""
        return Outcome("retry", f"HTTP 429 {scope}rate limited, retry after {retry_after_s:g}s",
                       retry_after_s=retry_after_s)
    if status >= 500:
        return Outcome("retry", f"HTTP {status}: {message}")
    code = f" (code {answer['code']})" if "code" in answer else ""
    if status == 404 and answer.get("code") == UNKNOWN_MESSAGE:
        return Outcome("gone", f"HTTP 404: {message}{code}")
    return Outcome("failed", f"HTTP {status}: {message}{code}")


def _message_id(body: str) -> str | None:
    """The id of the message a webhook's answer (``?wait=true``) describes."""
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        return None
    found = answer.get("id") if isinstance(answer, dict) else None
    return str(found) if found else None


# --- targets ---


class Target(Protocol):
    id: str
    label: str
    edits: bool  # can edit a message it posted (``edit``)

    def send(self, message: Message) -> Outcome: ...

    def edit(self, message_id: str, message: Message) -> Outcome: ...


def target_id(url: str) -> str:
    """A stable name for a destination that reveals nothing of its URL."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def url_secrets(url: str) -> list[str]:
    """The URL and every long piece of it (tokens, ids, paths), for redacting errors."""
    pieces = [url, url.split("://", 1)[-1]]
    rest = url.split("://", 1)[-1]
    pieces.extend(p for p in re.split(r"[/:@?&=#]", rest) if len(p) >= 12)
    if "/" in rest:
        pieces.append("/" + rest.split("/", 1)[1])
    return pieces


@dataclass
class DiscordTarget:
    url: str
    timeout_s: float = POST_TIMEOUT_S
    id: str = field(init=False)
    label: str = field(init=False)

    edits: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        self.id = target_id(self.url)
        self.label = f"discord {redact_url(self.url)}"

    def send(self, message: Message) -> Outcome:
        """Post ``message`` with ``?wait=true``: the answer carries the new message's id."""
        from discord_webhook import DiscordWebhook

        payload = discord_payload(message)
        webhook = DiscordWebhook(url=self.url, timeout=self.timeout_s, username="aegis",
                                 allowed_mentions=payload["allowed_mentions"],
                                 embeds=payload["embeds"], wait=True)
        return self._answer(webhook.api_post_request)

    def edit(self, message_id: str, message: Message) -> Outcome:
        """Replace the message ``message_id`` this webhook posted (PATCH
        /webhooks/{id}/{token}/messages/{message_id}); ``gone`` when it was deleted."""
        payload = discord_payload(message)
        body = {"embeds": payload["embeds"], "allowed_mentions": payload["allowed_mentions"]}
        parts = urlsplit(self.url)  # /messages/ID on the path, before any ?thread_id=
        url = urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/messages/{message_id}"))
        return self._answer(lambda: requests.patch(url, json=body, timeout=self.timeout_s))

    def _answer(self, request: Any) -> Outcome:
        try:
            response = request()
        except requests.Timeout:
            return Outcome("retry", f"no answer within {self.timeout_s:g}s")
        except requests.RequestException as exc:
            return Outcome("retry", "connection failed: "
                           + redact(_first_line(exc), url_secrets(self.url)))
        text = response.text[:2000]
        outcome = classify_discord(response.status_code, dict(response.headers), text)
        return Outcome(outcome.result, redact(outcome.reason, url_secrets(self.url)),
                       outcome.retry_after_s, outcome.pause_s,
                       _message_id(text) if outcome.delivered else None)


@dataclass
class AppriseTarget:
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

        secrets = url_secrets(self.url)
        with apprise.LogCapture(level=logging.WARNING) as captured:  # type: ignore[no-untyped-call]
            client = apprise.Apprise()
            if not client.add(self.url):
                return Outcome("failed", "not a valid Apprise URL")
            kind = "success" if message.state == "recovered" else \
                _APPRISE_TYPE.get(message.importance, "info")
            ok = client.notify(title=message.title, body=plain_text(message),
                               body_format=apprise.NotifyFormat.MARKDOWN, notify_type=kind)
            log_text = captured.getvalue()
        if ok:
            return Outcome("delivered")
        lines = [line.split(" - ", 2)[-1] for line in log_text.strip().splitlines()]
        reason = redact(lines[-1] if lines else "the service refused the message", secrets)
        status = re.search(r"error=(\d{3})", log_text)
        if status and 400 <= int(status.group(1)) < 500 and status.group(1) != "429":
            return Outcome("failed", reason)
        return Outcome("retry", reason)


    def edit(self, message_id: str, message: Message) -> Outcome:
        return Outcome("failed", "Apprise services cannot edit a message")


_APPRISE_TYPE = {"low": "info", "medium": "info", "high": "warning", "critical": "failure"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def targets_for(settings: Settings) -> dict[str, list[Target]]:
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
    return {"alerts": alerts, "journal": journal}
