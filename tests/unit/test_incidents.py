"""What an incident tells: which step calls for a message under each alert style, the
living message's thread and its flags for destinations that cannot edit, and what the
message says (host, compose, image, class, probe output, steps, the ack line)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aegis.core.config import Settings, load_settings
from aegis.notify.discord import discord_payload
from aegis.notify.messages import render
from aegis.storage.outbox import Channel, IncidentStep, Notification, OutboxRow, OutboxStatus
from aegis.supervision.incidents import Incident, message_body, step_message
from aegis.supervision.protocol.triage import TriageClass
from aegis.supervision.repository import ContainerRow, LogLine

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
THREAD = load_settings({"AEGIS_HOST": "web-01"})
POSTS = load_settings({"AEGIS_HOST": "web-01", "AEGIS_ALERT_STYLE": "posts"})
FROM_RESTART = load_settings({"AEGIS_HOST": "web-01", "AEGIS_ALERT_FROM": "restart"})


def minutes_in(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def incident(**kw: Any) -> Incident:
    base: dict[str, Any] = {
        "host": "web-01", "name": "shop-web-1", "number": 3, "image": "shop:1.4",
        "compose_project": "shop", "compose_service": "web",
        "triage_class": TriageClass.UNHEALTHY,
        "probe_output": "curl: (7) Failed to connect"}
    return Incident(**{**base, **kw})


def walk(settings: Settings, steps: list[str]) -> list[tuple[str, Notification | None]]:
    """Each step through ``step_message``, carrying the incident: (step, its message)."""
    current = incident()
    told = []
    for minute, name in enumerate(steps):
        current = current.with_line(LogLine(minutes_in(minute), IncidentStep(name),
                                            f"because of {name}"))
        current, notify = step_message(settings, current, dedup_key=f"{name}:{minute}")
        told.append((name, notify))
    return told


def test_the_living_message_starts_at_the_escalation_and_every_later_step_edits_it() -> None:
    told = walk(THREAD, ["struck", "restarted", "escalated", "affected", "recovered"])
    assert [(name, n is not None) for name, n in told] == [
        ("struck", False), ("restarted", False), ("escalated", True), ("affected", True),
        ("recovered", True)]
    sent = [n for _, n in told if n is not None]
    assert {n.thread for n in sent} == {"incident:web-01:shop-web-1:3"}
    assert all(not n.groupable for n in sent)
    # Apprise, which cannot edit, hears of the escalation and of its end only
    assert [n.edit_only for n in sent] == [False, True, False]
    assert [n.state for n in sent] == ["escalated", "escalated", "recovered"]


def test_from_the_first_restart_the_message_starts_earlier() -> None:
    told = walk(FROM_RESTART, ["struck", "restarted", "escalated", "acknowledged"])
    assert [(name, n is not None) for name, n in told] == [
        ("struck", False), ("restarted", True), ("escalated", True), ("acknowledged", True)]
    restarted, escalated, acked = (told_ for _, told_ in told[1:] if told_ is not None)
    assert (restarted.edit_only, escalated.edit_only, acked.edit_only) == (True, False, True)


def test_a_recovery_without_an_escalation_tells_apprise_nothing() -> None:
    told = walk(FROM_RESTART, ["struck", "restarted", "recovered"])
    recovered = told[-1][1]
    assert recovered is not None
    assert recovered.edit_only
    assert walk(THREAD, ["struck", "restarted", "recovered"])[-1][1] is None  # never started


def test_posts_are_todays_escalation_and_recovery_posts() -> None:
    told = walk(POSTS, ["struck", "restarted", "escalated", "affected", "acknowledged"])
    assert [(name, n is not None) for name, n in told] == [
        ("struck", False), ("restarted", False), ("escalated", True), ("affected", False),
        ("acknowledged", False)]
    escalated = told[2][1]
    assert escalated is not None
    assert escalated.thread is None
    assert escalated.groupable
    assert walk(POSTS, ["struck", "escalated", "recovered"])[-1][1] is not None


def test_the_message_carries_host_compose_image_class_probe_and_the_ack_line() -> None:
    told = walk(THREAD, ["struck", "restarted", "escalated"])
    notify = told[-1][1]
    assert notify is not None
    assert notify.title == "shop-web-1 escalated on web-01"
    assert notify.fields == {"host": "web-01", "container": "shop-web-1",
                             "compose": "shop/web", "image": "shop:1.4", "class": "unhealthy",
                             "restarts": "1"}
    body = notify.body
    assert body.splitlines()[0] == "**Escalated**: because of escalated."
    assert "Last health probe: curl: (7) Failed to connect" in body
    assert "12:00:00 struck: because of struck\n12:01:00 restarted: because of restarted\n" \
           "12:02:00 escalated: because of escalated" in body
    assert body.endswith("`aegis ack shop-web-1` or the container is healthy again.")


def test_a_resolved_message_says_how_long_and_how_many_restarts_without_the_ack_line() -> None:
    current = incident(affected=("vpn-client", "downloader"))
    for minute, name in ((0, "struck"), (1, "restarted"), (2, "escalated"), (4, "recovered")):
        current = current.with_line(LogLine(minutes_in(minute), IncidentStep(name)))
    body = message_body(current)
    assert body.splitlines()[0] == "**Resolved** after 4 min, 1 restart."
    assert "Also affected: vpn-client, downloader" in body
    assert "aegis ack" not in body


@pytest.mark.parametrize(("triage_class", "line"), [
    ("broken_probe", "Class: the health check command is broken"),
    ("hung", "Class: the health check times out: the application hangs"),
    ("oom", "Class: killed for lack of memory"),
    ("crash_loop", "Class: crash loop under Docker's restart policy"),
])
def test_the_class_is_said_in_words(triage_class: str, line: str) -> None:
    body = message_body(incident(triage_class=TriageClass(triage_class)).with_line(
        LogLine(minutes_in(0), IncidentStep.ESCALATED)))
    assert line in body
    assert ("Memory:" in body) == (triage_class == "oom")


def test_an_oom_message_gives_the_limit_and_the_usage() -> None:
    memory = {"limit": 64 * 2**20, "max_usage": 64 * 2**20, "usage": 3 * 2**20}
    body = message_body(incident(triage_class=TriageClass.OOM, memory=memory).with_line(
        LogLine(minutes_in(0), IncidentStep.ESCALATED)))
    assert "Memory: limit 64 MiB, peak 64 MiB, now 3 MiB" in body


def test_the_probe_output_and_memory_stay_in_every_later_edit() -> None:
    """The escalation reads them; the acknowledgement, the recovery or a folded dependant
    is an edit made from the row alone, and still shows them."""
    memory = {"limit": 64 * 2**20, "usage": 3 * 2**20}
    escalated = incident(triage_class=TriageClass.OOM, memory=memory).with_line(
        LogLine(minutes_in(0), IncidentStep.ESCALATED, "OOM", probe="curl: (7)", memory=memory))
    row = ContainerRow(host="web-01", name="shop-web-1", incident=3, image="shop:1.4",
                       compose_project="shop", compose_service="web",
                       incident_class=TriageClass.OOM, incident_log=escalated.log)
    body = message_body(Incident.of_row(row).with_line(
        LogLine(minutes_in(2), IncidentStep.ACKNOWLEDGED, "by ops")))
    assert "Last health probe: curl: (7)" in body
    assert "Memory: limit 64 MiB" in body


def test_outside_text_is_shown_as_written_and_the_colour_follows_the_state() -> None:
    current = incident(name="web__api", probe_output="**boom** <@123>").with_line(
        LogLine(minutes_in(0), IncidentStep.ESCALATED, "`rm -rf`"))
    current, notify = step_message(THREAD, current, dedup_key="k")
    assert notify is not None
    assert "Last health probe: \\*\\*boom\\*\\* \\<@123\\>" in notify.body
    row = OutboxRow(id=1, channel=Channel.ALERTS, dedup_key="k", host="web-01",
                    title=notify.title, body=notify.body, importance=notify.importance,
                    fields=notify.fields, status=OutboxStatus.PENDING, attempts=0,
                    next_attempt_at=T0, created_at=T0,
                    thread=notify.thread, state=notify.state)
    embed = discord_payload(render([row], instance="i"))["embeds"][0]
    assert embed["color"] == 0xE74C3C  # escalated: red
    recovered = OutboxRow(**{**row.__dict__, "state": IncidentStep.RECOVERED})
    assert discord_payload(render([recovered], instance="i"))["embeds"][0]["color"] == 0x2ECC71
