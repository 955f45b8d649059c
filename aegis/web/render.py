"""Turning page data into HTML: the Jinja2 templates of aegis/web/templates, escaping
everything they are given, and the one way the pages write a time.

Every value a template shows is escaped by Jinja2's autoescape (container names, labels,
probe output, job errors and event details all come from outside aegis); only the SVG of
aegis/web/charts.py, built from escaped parts, is marked safe. ``local_time`` renders every
time the pages show, in the zone the server is given.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from aegis.supervision.protocol.triage import MEANING, TriageClass
from aegis.version import __version__

TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


def local_time(moment: datetime | None, zone: tzinfo) -> str:
    """A time as the pages show it: in ``zone``, to the second, with the zone's name."""
    if moment is None:
        return "-"
    return moment.astimezone(zone).strftime(TIME_FORMAT)


def zone_name(zone: tzinfo) -> str:
    """The IANA name of ``zone`` (PostgreSQL's ``AT TIME ZONE`` takes it)."""
    return str(getattr(zone, "key", None) or zone.tzname(None) or "UTC")


def seconds_text(seconds: float | None) -> str:
    """A duration for people: 350 ms, 4.2 s, 12 min, 3.5 h, 2 d."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


def ago(moment: datetime | None, now: datetime) -> str:
    """How long before ``now`` (``in 5 min`` for a time still to come)."""
    if moment is None:
        return "-"
    delta_s = (now - moment).total_seconds()
    return f"{seconds_text(delta_s)} ago" if delta_s >= 0 else f"in {seconds_text(-delta_s)}"


def counted(number: int, noun: str) -> str:
    """``1 restart``, ``3 restarts``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def class_meaning(triage_class: str | None) -> str:
    """A triage class in the words of the alerts (``killed for lack of memory``)."""
    if not triage_class:
        return "-"
    try:
        return MEANING[TriageClass(triage_class)]
    except ValueError:  # a class of a later version
        return triage_class


def pretty_json(value: Any) -> str:
    """Event details as indented JSON (escaped by the template like any other text)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


class Templates:
    """The page templates, with times rendered in ``zone``."""

    def __init__(self, zone: tzinfo = UTC) -> None:
        self.zone = zone
        self.env = Environment(loader=PackageLoader("aegis.web", "templates"),
                               autoescape=select_autoescape(default=True),
                               undefined=StrictUndefined, trim_blocks=True,
                               lstrip_blocks=True)
        self.env.filters.update(when=lambda moment: local_time(moment, zone),
                                seconds=seconds_text, json=pretty_json, counted=counted,
                                sh=shlex.quote, meaning=class_meaning)
        self.env.globals.update(ago=ago, version=__version__, zone=zone_name(zone))

    def render(self, name: str, context: Mapping[str, Any]) -> bytes:
        return self.env.get_template(name).render(context).encode("utf-8")
