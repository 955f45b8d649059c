"""What every destination of a channel is: a ``Target`` posts (and, if it can, edits) one
message and answers with an ``Outcome``, never raising. Discord's and Apprise's are in
their own modules; which a channel has is aegis/notify/channels.py's.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from aegis.notify.messages import Message


class Result(StrEnum):
    """How a destination answered one post or edit."""

    DELIVERED = "delivered"
    # Not now: a timeout, a 5xx, a 429 (after its retry_after).
    RETRY = "retry"
    # Refused for good.
    FAILED = "failed"
    # The message an edit was for no longer exists (deleted by a person).
    GONE = "gone"


@dataclass(frozen=True)
class Outcome:
    """How one post or edit went, and why."""

    result: Result
    reason: str = ""
    retry_after_s: float | None = None
    # Discord said the bucket is empty: wait this long before the next post.
    pause_s: float | None = None
    # The message posted or edited, when the answer says.
    message_id: str | None = None

    @property
    def delivered(self) -> bool:
        return self.result == Result.DELIVERED

    @property
    def should_retry(self) -> bool:
        return self.result == Result.RETRY

    @property
    def refused(self) -> bool:
        """Refused for good: failed, or the edited message is gone."""
        return self.result in (Result.FAILED, Result.GONE)


class Target(Protocol):
    id: str
    label: str
    # Whether it can edit a message it posted (``edit``).
    edits: bool

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
