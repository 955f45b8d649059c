"""A storm's pure parts: where it and its members stand, what its message says within
Discord's limits, when the watch asks the database, which step a decision adds; and the
Docker engine's outage: when it calls for its message, and what that says."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from aegis.core.config import AlertStyle, Settings, load_settings
from aegis.notify.discord import TITLE_MAX, discord_payload, utf16_len
from aegis.notify.messages import Message
from aegis.storage.events import Importance
from aegis.storage.outbox import IncidentStep
from aegis.supervision.incidents import BODY_MAX_CHARS
from aegis.supervision.outage import Outage, outage_message, resolved_message
from aegis.supervision.repository import LogLine
from aegis.supervision.storms import Member, MemberStep, Storm, StormWatch, listed, storm_message
from tests.support.discord import validate_discord_payload

T0 = datetime(2026, 3, 29, 9, 41, 5, tzinfo=UTC)
SETTINGS = Settings(host="web-01")


def member(name: str, step: IncidentStep = IncidentStep.STRUCK, **fields: object) -> Member:
    return Member(name=name, incident=1, step=step, at=T0, **fields)  # type: ignore[arg-type]


def storm(*members: Member, edits: int = 1, ended_at: datetime | None = None) -> Storm:
    return Storm(id=7, host="web-01", started_at=T0, members=members, edits=edits,
                 ended_at=ended_at)


def member_step(name: str, kind: IncidentStep, *, at: datetime = T0, **fields: bool) -> MemberStep:
    return MemberStep(name, 1, LogLine(at, kind, "why"), **fields)


# --- a storm and its members ---


@pytest.mark.parametrize(("steps", "state"), [
    ((IncidentStep.STRUCK, IncidentStep.RECOVERED), IncidentStep.STRUCK),
    ((IncidentStep.STRUCK, IncidentStep.RESTARTED), IncidentStep.RESTARTED),
    ((IncidentStep.RESTART_FAILED, IncidentStep.STRUCK), IncidentStep.RESTARTED),
    ((IncidentStep.ESCALATED, IncidentStep.RESTARTED), IncidentStep.ESCALATED),
    ((IncidentStep.ACKNOWLEDGED, IncidentStep.STRUCK), IncidentStep.STRUCK),
    ((IncidentStep.RECOVERED, IncidentStep.ACKNOWLEDGED, IncidentStep.RESET),
     IncidentStep.RECOVERED),
])
def test_a_storm_stands_where_its_worst_open_incident_does(
        steps: tuple[IncidentStep, ...], state: IncidentStep) -> None:
    assert storm(*(member(f"c{n}", kind) for n, kind in enumerate(steps))).state == state


def test_a_step_moves_its_member_and_counts_restarts() -> None:
    found = storm(member("a"), member("b"))
    restarted = member_step("a", IncidentStep.RESTARTED)
    moved = found.with_member(restarted.applied_to(found.member("a", 1)))
    assert moved.member("a", 1) == member("a", IncidentStep.RESTARTED, restarts=1)
    assert moved.member("b", 1) == member("b")
    assert not moved.over
    closed = moved
    for name in ("a", "b"):
        closed = closed.with_member(
            member_step(name, IncidentStep.RECOVERED).applied_to(closed.member(name, 1)))
    assert closed.over
    assert closed.state == IncidentStep.RECOVERED


def test_a_step_the_message_does_not_show_leaves_the_storm_as_it_was() -> None:
    found = storm(member("a", IncidentStep.ESCALATED))
    for kind in (IncidentStep.AFFECTED, IncidentStep.FOLDED):
        assert found.with_member(member_step("a", kind).applied_to(found.member("a", 1))) == found


def test_an_incident_that_joins_is_unhealthy_with_its_own_message_or_none() -> None:
    joined = member_step("late", IncidentStep.STRUCK, at=T0 + timedelta(seconds=90),
                  opening=True).applied_to(None)
    assert joined == Member("late", 1, IncidentStep.STRUCK, T0 + timedelta(seconds=90))


def test_members_survive_the_table_as_json() -> None:
    original = member("a", IncidentStep.RESTARTED, restarts=2, own_message=True)
    assert Member.from_json(original.to_json()) == original


# --- its message ---


def test_the_first_version_is_a_post_the_next_edit_it_and_the_end_is_announced() -> None:
    members = tuple(member(name) for name in ("web", "api", "worker", "db", "cache"))
    first = storm_message(SETTINGS, storm(*members))
    assert first is not None
    assert first.title == "web-01: 5 containers unhealthy since 09:41: web, api, worker, db, cache"
    assert (first.thread, first.dedup_key, first.edit_only) == ("storm:web-01:7",
                                                                "storm:web-01:7:1", False)
    assert first.importance == Importance.HIGH
    assert not first.groupable
    assert first.body.startswith("**5 containers unhealthy** on web-01 since 09:41:05 UTC")
    assert "Unhealthy (5): web, api, worker, db, cache" in first.body
    assert first.body.endswith("Take one over: `aegis ack NAME`")

    escalated = replace(storm(*members, edits=2),
                        members=(member("web", IncidentStep.ESCALATED), *members[1:]))
    edit = storm_message(SETTINGS, escalated)
    assert edit is not None
    assert edit.edit_only
    assert edit.dedup_key == "storm:web-01:7:2"
    assert edit.state == IncidentStep.ESCALATED
    assert edit.importance == Importance.CRITICAL
    assert "Escalated (1): web\nUnhealthy (4): api, worker, db, cache" in edit.body
    assert "until `aegis ack NAME` or it is healthy again" in edit.body

    over = storm(*(replace(m, step=IncidentStep.RECOVERED, restarts=1) for m in members),
                 edits=9, ended_at=T0 + timedelta(minutes=6))
    last = storm_message(SETTINGS, over)
    assert last is not None
    assert not last.edit_only
    assert last.title == "web-01: storm over after 6 min, 5 containers"
    assert last.body.startswith("**Resolved** after 6 min: 5 containers, 5 restarts.")
    assert last.state == IncidentStep.RECOVERED
    assert "aegis ack" not in last.body


def test_with_posts_a_storm_is_posted_at_its_start_and_end_only() -> None:
    posts = replace(SETTINGS, alert_style=AlertStyle.POSTS)
    members = (member("a"), member("b"))
    first = storm_message(posts, storm(*members))
    assert first is not None
    assert first.thread is None
    assert storm_message(posts, storm(*members, edits=2)) is None
    ended = storm(*(replace(m, step=IncidentStep.RECOVERED) for m in members), edits=3,
                  ended_at=T0)
    last = storm_message(posts, ended)
    assert last is not None
    assert last.thread is None


@pytest.mark.parametrize("count", [12, 400, 5000])
def test_a_thousand_names_fit_discords_limits(count: int) -> None:
    steps = [IncidentStep.STRUCK, IncidentStep.RESTARTED, IncidentStep.ESCALATED,
             IncidentStep.RECOVERED]
    members = tuple(member(f"shop-{'x' * 20}-{n}", steps[n % 4]) for n in range(count))
    notification = storm_message(SETTINGS, storm(*members))
    assert notification is not None
    assert utf16_len(notification.title) <= TITLE_MAX
    assert utf16_len(notification.body) <= BODY_MAX_CHARS
    assert notification.title.startswith(f"web-01: {count - count // 4} containers unhealthy")
    if count > 12:
        assert notification.title.endswith("more")
        assert "… and " in notification.body
    message = Message(title=notification.title, description=notification.body,
                      importance=notification.importance,
                      fields=tuple(notification.fields.items()), footer="aegis on web-01",
                      timestamp=T0, state=notification.state)
    assert validate_discord_payload(discord_payload(message)) == []


def test_names_are_listed_as_far_as_they_fit() -> None:
    assert listed(["a", "b", "c"], 100) == "a, b, c"
    assert listed(["alpha", "beta", "gamma", "delta", "epsilon"], 25) == (
        "alpha, beta, … and 3 more")
    assert listed(["a-very-long-name"], 5) == "… and 1 more"


def test_names_with_markup_are_escaped_in_the_body() -> None:
    notification = storm_message(SETTINGS, storm(member("web__api"), member("<@123>")))
    assert notification is not None
    assert "web\\_\\_api" in notification.body
    assert "\\<@123\\>" in notification.body


# --- the watch ---


def test_the_watch_asks_the_database_until_it_knows_then_only_at_the_threshold() -> None:
    watch = StormWatch()
    settings = replace(SETTINGS, storm_threshold=3, storm_window_s=60)
    assert watch.worth_asking(settings, member_step("a", IncidentStep.STRUCK, opening=True))
    watch.learn(False, [T0])
    second = member_step("b", IncidentStep.STRUCK, at=T0 + timedelta(seconds=10), opening=True)
    assert not watch.worth_asking(settings, second)
    assert not watch.worth_asking(settings, member_step("a", IncidentStep.RESTARTED))
    third = member_step("c", IncidentStep.STRUCK, at=T0 + timedelta(seconds=20), opening=True)
    assert watch.worth_asking(settings, third)
    watch.learn(True)
    assert watch.worth_asking(settings, member_step("a", IncidentStep.RECOVERED))


def test_openings_older_than_the_window_are_forgotten() -> None:
    watch = StormWatch()
    settings = replace(SETTINGS, storm_threshold=2, storm_window_s=60)
    watch.learn(False, [T0])
    late = member_step("b", IncidentStep.STRUCK, at=T0 + timedelta(seconds=61), opening=True)
    assert not watch.worth_asking(settings, late)


# --- the engine's outage ---


def test_an_outage_calls_for_its_message_once_after_a_strike_interval() -> None:
    outage = Outage(since=T0, error="connection refused")
    assert not outage.due(T0 + timedelta(seconds=59), 60)
    assert not outage.due(T0 + timedelta(seconds=60), 60)  # a blip of one interval
    assert outage.due(T0 + timedelta(seconds=61), 60)
    assert not replace(outage, alerted=True).due(T0 + timedelta(hours=1), 60)
    assert Outage.from_json(outage.to_json()) == outage
    assert Outage.from_json(None) is None
    assert Outage.from_json(True) is None


def test_the_outage_message_and_its_resolution_share_a_thread() -> None:
    outage = Outage(since=T0, error="dial unix /var/run/docker.sock: connect: *refused*")
    posted = outage_message("web-01", outage)
    assert posted.title == "Docker engine on web-01 unreachable since 09:41:05 UTC"
    assert "\\*refused\\*" in posted.body
    assert not posted.edit_only
    resolved = resolved_message("web-01", outage, T0 + timedelta(minutes=4, seconds=5))
    assert resolved.title == "Docker engine on web-01 answers again"
    assert resolved.body.startswith("**Resolved** after 4 min")
    assert "from 09:41:05 to 09:45:10 UTC" in resolved.body
    assert posted.thread == resolved.thread == "docker:web-01:2026-03-29T09:41:05+00:00"
    assert posted.dedup_key != resolved.dedup_key
    assert (posted.state, resolved.state) == (IncidentStep.ESCALATED, IncidentStep.RECOVERED)


# --- the settings ---


@pytest.mark.parametrize(("raw", "threshold"), [
    (None, 5), ("12", 12), ("off", 0), ("0", 0), ("OFF", 0)])
def test_the_threshold_is_a_count_or_off(raw: str | None, threshold: int) -> None:
    env = {} if raw is None else {"AEGIS_STORM_THRESHOLD": raw}
    settings = load_settings({**env, "AEGIS_STORM_WINDOW": "2m"})
    assert settings.storm_threshold == threshold
    assert settings.storm_window_s == 120.0
