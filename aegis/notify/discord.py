"""Discord: a message as a webhook's JSON within Discord's documented limits, and
``DiscordTarget``, which posts it (``?wait=true``, so the answer carries the message's
id), edits a message it posted, and reads the answer: delivered, worth a retry (a 429
after its ``retry_after``, a 5xx, a timeout), gone (an edited message deleted by a
person) or refused for good. No error text carries the webhook's URL or token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from aegis.core.redact import redact, redact_url
from aegis.notify.messages import Message, escape_markdown
from aegis.notify.targets import Outcome, Result, target_id, url_secrets

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
# Discord's code for a message that no longer exists (deleted by a person).
UNKNOWN_MESSAGE = 10008
# Nobody is pinged, whatever a container name, log line or probe output contains.
NO_MENTIONS: dict[str, list[str]] = {"parse": []}


# An http(s) URL whose path is a webhook's: /api/webhooks/<id>/<token> (a version after
# /api allowed), on discord.com or anything that answers like it.
_WEBHOOK_PATH = re.compile(r"^/api(/v\d+)?/webhooks/\d+/[^/]+/?$")


def is_webhook_url(url: str) -> bool:
    """Whether ``url`` is a Discord webhook's (posted to as DISCORD_WEBHOOK_URL is)."""
    parts = urlsplit(url)
    return (parts.scheme in {"http", "https"} and bool(parts.hostname)
            and bool(_WEBHOOK_PATH.match(parts.path)))


# --- payloads within the documented limits ---


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
        "color": message.colour,
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
    # Set again: the library may drop a falsy value.
    payload["allowed_mentions"] = NO_MENTIONS
    return payload


# --- answers ---


def _seconds(value: Any) -> float | None:
    """A non-negative number of seconds from a header or an answer, or None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def classify_discord(status: int, headers: Mapping[str, str], body: str) -> Outcome:
    """The outcome of a webhook answer: 2xx delivered; 429 retry after ``retry_after``;
    5xx retry; any other 4xx is permanent, with Discord's own message as the reason."""
    lowered = {k.lower(): v for k, v in headers.items()}
    reset_after_s = _seconds(lowered.get("x-ratelimit-reset-after"))
    if 200 <= status < 300:
        empty = lowered.get("x-ratelimit-remaining") == "0"
        return Outcome(Result.DELIVERED, pause_s=reset_after_s if empty else None)
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        answer = {}
    answer = answer if isinstance(answer, dict) else {}
    message = str(answer.get("message") or body[:200] or "no body").strip()
    if status == 429:
        retry_after_s = (_seconds(answer.get("retry_after"))
                         or _seconds(lowered.get("retry-after")) or reset_after_s or 1.0)
        scope = "global " if answer.get("global") else ""
        return Outcome(Result.RETRY,
                       f"HTTP 429 {scope}rate limited, retry after {retry_after_s:g}s",
                       retry_after_s=retry_after_s)
    if status >= 500:
        return Outcome(Result.RETRY, f"HTTP {status}: {message}")
    code = f" (code {answer['code']})" if "code" in answer else ""
    if status == 404 and answer.get("code") == UNKNOWN_MESSAGE:
        return Outcome(Result.GONE, f"HTTP 404: {message}{code}")
    return Outcome(Result.FAILED, f"HTTP {status}: {message}{code}")


def _message_id(body: str) -> str | None:
    """The id of the message a webhook's answer (``?wait=true``) describes."""
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        return None
    found = answer.get("id") if isinstance(answer, dict) else None
    return str(found) if found else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


# --- the target ---


@dataclass
class DiscordTarget:
    """A Discord webhook: posts and edits the messages it posted."""

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
        # /messages/ID goes on the path, before any ?thread_id=.
        parts = urlsplit(self.url)
        url = urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/messages/{message_id}"))
        return self._answer(lambda: requests.patch(url, json=body, timeout=self.timeout_s))

    def _answer(self, request: Callable[[], requests.Response]) -> Outcome:
        """Make ``request`` and read its answer, with the webhook's secrets redacted."""
        try:
            response = request()
        except requests.Timeout:
            return Outcome(Result.RETRY, f"no answer within {self.timeout_s:g}s")
        except requests.RequestException as exc:
            return Outcome(Result.RETRY, "connection failed: "
                           + redact(_first_line(exc), url_secrets(self.url)))
        text = response.text[:2000]
        outcome = classify_discord(response.status_code, dict(response.headers), text)
        return Outcome(outcome.result, redact(outcome.reason, url_secrets(self.url)),
                       outcome.retry_after_s, outcome.pause_s,
                       _message_id(text) if outcome.delivered else None)
