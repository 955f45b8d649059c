"""What an incident tells: which step calls for a message under each alert style, the
living message's thread and its flags for destinations that cannot edit, and what the
message says (host, compose, image, class, probe output, the container's last log lines,
steps, the ack line) and how the log lines give way to keep it within Discord's limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aegis.core.config import Settings, load_settings
from aegis.notify.discord import DESCRIPTION_MAX, discord_payload, utf16_len
from aegis.notify.messages import render
from aegis.storage.events import Importance
from aegis.storage.outbox import Channel, IncidentStep, Notification, OutboxRow, OutboxStatus
from aegis.supervision.docker import LogTail
from aegis.supervision.incidents import (
    BODY_MAX_CHARS,
    Incident,
    message_body,
    message_fields,
    step_message,
)
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


# --- the container's last log lines ---


def escalated_with(tail: LogTail | None, **kw: Any) -> Incident:
    return incident(**kw).with_line(LogLine(minutes_in(0), IncidentStep.STRUCK, "unhealthy")) \
        .with_line(LogLine(minutes_in(2), IncidentStep.ESCALATED, "still unhealthy",
                           log_tail=tail))


def test_the_last_log_lines_follow_the_probe_output_escaped() -> None:
    body = message_body(escalated_with(LogTail(lines=(
        "starting", "# not a heading", "**boom** <@123> boom-7f3a"))))
    lines = body.splitlines()
    probe = lines.index("Last health probe: curl: (7) Failed to connect")
    assert lines[probe + 1:probe + 5] == [
        "Last log lines:", "starting", "\\# not a heading", "\\*\\*boom\\*\\* \\<@123\\> boom-7f3a"]
    assert body.endswith("`aegis ack shop-web-1` or the container is healthy again.")


def test_without_log_lines_the_message_is_as_before() -> None:
    assert "Last log lines" not in message_body(escalated_with(None))
    assert "Last log lines: none written" in message_body(escalated_with(LogTail()))


def test_logs_that_cannot_be_read_are_said_instead() -> None:
    body = message_body(escalated_with(LogTail(
        unavailable="log driver none: the engine keeps no logs to read")))
    assert "Last log lines: log driver none: the engine keeps no logs to read" in body


def test_the_log_lines_read_at_the_restart_stay_in_later_edits() -> None:
    restarted = incident().with_line(LogLine(minutes_in(1), IncidentStep.RESTARTED, "r",
                                             log_tail=LogTail(lines=("before restart",))))
    row = ContainerRow(host="web-01", name="shop-web-1", incident=3, incident_log=restarted.log)
    body = message_body(Incident.of_row(row).with_line(
        LogLine(minutes_in(2), IncidentStep.ACKNOWLEDGED, "by ops")))
    assert "Last log lines:\nbefore restart" in body
    later = Incident.of_row(row).with_line(LogLine(
        minutes_in(3), IncidentStep.ESCALATED, "e", log_tail=LogTail(lines=("at escalation",))))
    assert "Last log lines:\nat escalation" in message_body(later)


def test_the_log_lines_give_way_first_so_the_message_fits_discord() -> None:
    """Twenty lines of 300 characters, each doubled by escaping, are far more than Discord
    shows: the oldest are left out (and said to be), the newest kept, and the headline,
    steps and ack line are whole in the embed Discord receives."""
    lines = tuple(f"{n:02d} " + "*" * 297 for n in range(20))
    current = escalated_with(LogTail(lines=lines),
                             probe_output="p" * 500)
    body = message_body(current)
    assert utf16_len(body) <= BODY_MAX_CHARS <= DESCRIPTION_MAX
    assert body.splitlines()[0] == "**Escalated**: still unhealthy."
    assert "12:00:00 struck: unhealthy\n12:02:00 escalated: still unhealthy" in body
    assert body.endswith("`aegis ack shop-web-1` or the container is healthy again.")
    shown = body.split("Last log lines:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    left_out = 20 - (len(shown) - 1)
    assert 0 < left_out < 20
    assert shown[0] == (f"({left_out} older lines left out to fit the message; the event's "
                        "details keep them)")
    assert shown[-1].startswith("19 ")  # the newest kept
    row = OutboxRow(id=1, channel=Channel.ALERTS, dedup_key="k", host="web-01",
                    title="shop-web-1 escalated on web-01", body=body,
                    importance=Importance.CRITICAL, fields=message_fields(current),
                    status=OutboxStatus.PENDING, attempts=0, next_attempt_at=T0,
                    created_at=T0, thread=current.thread, state=current.state)
    embed = discord_payload(render([row], instance="i"))["embeds"][0]
    assert embed["description"] == body  # not clipped


def test_emoji_count_twice_as_discord_counts_them() -> None:
    body = message_body(escalated_with(LogTail(lines=tuple("🔥" * 150 for _ in range(20)))))
    assert utf16_len(body) <= BODY_MAX_CHARS
    assert "older lines left out" in body


def test_no_room_at_all_leaves_the_log_lines_out() -> None:
    # steps that alone nearly fill the message: not even the heading fits
    current = incident()
    for minute in range(40):
        current = current.with_line(LogLine(minutes_in(minute), IncidentStep.FOLDED, "r" * 90))
    current = current.with_line(LogLine(minutes_in(41), IncidentStep.ESCALATED, "e",
                                        log_tail=LogTail(lines=("boom",))))
    body = message_body(current)
    assert "Last log lines" not in body
    assert "boom" not in body
