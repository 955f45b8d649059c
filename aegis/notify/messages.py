"""The message a post carries: one outbox row, or a group of them, rendered once for every
destination. Discord shapes it into an embed (aegis/notify/discord.py) and Apprise into
plain text (aegis/notify/apprise.py); what it says, and the colour it shows, are decided
here. Text aegis did not write as markdown is escaped, so a name or a log line formats,
links and mentions nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from aegis.storage.events import Importance
from aegis.storage.outbox import IncidentStep, OutboxRow

GREY = 0x95A5A6
BLUE = 0x3498DB
ORANGE = 0xE67E22
RED = 0xE74C3C
GREEN = 0x2ECC71
IMPORTANCE_COLOURS = {Importance.LOW: GREY, Importance.MEDIUM: BLUE, Importance.HIGH: ORANGE,
                      Importance.CRITICAL: RED}
# An incident's living message takes the colour of where it stands; a step not named here
# (a dependant folded in) keeps the colour of its importance.
STEP_COLOURS = {IncidentStep.STRUCK: ORANGE, IncidentStep.RESTARTED: ORANGE,
                IncidentStep.RESTART_FAILED: ORANGE, IncidentStep.RECREATED: ORANGE,
                IncidentStep.STACK_RESTARTED: ORANGE, IncidentStep.ESCALATED: RED,
                IncidentStep.ACKNOWLEDGED: BLUE, IncidentStep.RECOVERED: GREEN,
                IncidentStep.RESET: GREY}
# Characters that format, link or mention in Discord's markdown (and in most markdown),
# and the markers that do so only at the start of a line: heading, quote, list.
_MARKDOWN_CHARS = re.compile(r"([\\*_~`|\[\]<>])")
_LINE_MARKERS = re.compile(r"^(\s*)([#+-])", re.M)
_NUMBERED = re.compile(r"^(\s*\d+)\.(?=\s)", re.M)


@dataclass(frozen=True)
class Message:
    """One post, built from one outbox row or a group of them."""

    title: str
    description: str
    importance: Importance
    fields: tuple[tuple[str, str], ...]
    footer: str
    timestamp: datetime
    # Where an incident stands; None for a message of no incident.
    state: IncidentStep | None = None

    @property
    def colour(self) -> int:
        """An incident's step's colour, else its importance's."""
        if self.state in STEP_COLOURS:
            return STEP_COLOURS[self.state]
        return IMPORTANCE_COLOURS[self.importance]


def render(rows: Sequence[OutboxRow], *, instance: str,
           repeats: Mapping[int, tuple[int, datetime]] | None = None) -> Message:
    """The message for ``rows`` (oldest first). ``repeats`` maps a row id to how many
    identical alerts were summarised since that alert was last posted, and when."""
    hosts = sorted({row.host for row in rows})
    footer = f"aegis on {', '.join(hosts)} · sent by {instance}"
    if len(rows) == 1:
        return _one(rows[0], footer, (repeats or {}).get(rows[0].id))
    return _group(rows, hosts, footer)


def _one(row: OutboxRow, footer: str, repeated: tuple[int, datetime] | None) -> Message:
    """One row's message: its own title, body and fields, under its host."""
    fields = [("host", row.host),
              *((k, v) for k, v in row.fields.items() if (k, v) != ("host", row.host))]
    if repeated is not None:
        count, since = repeated
        fields.append(("repeated", f"{count} more time(s) since {since:%Y-%m-%d %H:%M} UTC, "
                                   "not posted separately"))
    return Message(title=row.title, description=row.body, importance=row.importance,
                   fields=tuple(fields), footer=footer, timestamp=row.created_at,
                   state=row.state)


def _group(rows: Sequence[OutboxRow], hosts: list[str], footer: str) -> Message:
    """A group's message: a line per alert (identical ones once, with a count), as
    important as the worst of them."""
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
    worst = max((row.importance for row in rows), key=lambda importance: importance.rank)
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
