"""Storms on the real database, steps routed as the supervisor routes them: the opening
that makes the threshold starts one storm with every recent incident in it and queues
its post; later openings join it and later steps edit it, each in order; an incident with
a message of its own keeps it; one older than the storm is left alone; an aegis
restarted meanwhile (a new watch) carries on; the last closing step ends it; a decision
spooled while PostgreSQL was down is routed when it is written back. And the
Docker engine's outage, noted with a clock the test sets: no message for a blip, one
message for a long outage however often it is noted and across a restart, resolved
when the engine answers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from aegis import api
from aegis.core.config import Settings
from aegis.storage.outbox import Channel, IncidentStep, Notification
from aegis.storage.store import event_record
from aegis.supervision.docker import EngineAvailability
from aegis.supervision.persist import replay_routed
from aegis.supervision.repository import LogLine
from aegis.supervision.storms import MemberStep, Routed, StormWatch, route
from tests.support.rows import event_counts, sql_rows
from tests.support.seeds import add_container

T0 = datetime(2026, 3, 29, 9, 41, 5, tzinfo=UTC)


def opened(url: str, name: str, at: datetime, *, alerted: bool = False) -> MemberStep:
    """A container's incident opened at ``at`` (its row as the decision saved it), and
    the step that opened it."""
    line: dict[str, Any] = {"at": at.isoformat(), "step": "struck", "text": "unhealthy"}
    if alerted:
        line["alerted"] = True
    add_container(url, name, health="unhealthy", phase="striking", state="striking",
                  strikes=1, incident=1, incident_log=Jsonb([line]))
    return MemberStep(name, 1, LogLine(at, IncidentStep.STRUCK, "unhealthy"), opening=True)


def routed(app: api.Aegis, step: MemberStep, watch: StormWatch | None = None,
           settings: Settings | None = None) -> Routed:
    with app.db.transaction() as tx:
        return route(tx, settings or app.settings, step, watch)


def storm_rows(url: str) -> list[dict[str, Any]]:
    return sql_rows(url, "SELECT id, dedup_key, title, edit_only, thread, state, status, "
                         "merged_into FROM outbox WHERE thread LIKE 'storm:%%' ORDER BY id")


def test_a_storm_starts_at_the_threshold_and_lives_until_its_last_incident_closes(
        app: api.Aegis, database_url: str) -> None:
    url, watch = database_url, StormWatch()
    names = ["web", "api", "worker", "db"]
    for n, name in enumerate(names):
        assert routed(app, opened(url, name, T0 + timedelta(seconds=n)), watch).keep_own
    assert storm_rows(url) == []
    assert sql_rows(url, "SELECT * FROM storms") == []

    fifth = routed(app, opened(url, "cache", T0 + timedelta(seconds=10)), watch)

    assert not fifth.keep_own
    assert [event.event_type for event in fifth.events] == ["storm_started"]
    storm = sql_rows(url, "SELECT id, members, ended_at FROM storms")
    assert [m["name"] for m in storm[0]["members"]] == [*names, "cache"]
    thread = f"storm:test-host:{storm[0]['id']}"
    assert [{key: row[key] for key in ("dedup_key", "thread", "edit_only", "state", "title")}
            for row in storm_rows(url)] == [{
        "dedup_key": f"{thread}:1", "thread": thread, "edit_only": False, "state": "struck",
        "title": "test-host: 5 containers unhealthy since 09:41: web, api, worker, db, cache"}]

    # a sixth joins; a member restarted edits the message, and has none of its own
    assert not routed(app, opened(url, "queue", T0 + timedelta(seconds=50)), watch).keep_own
    restart = MemberStep("web", 1, LogLine(T0 + timedelta(seconds=60), IncidentStep.RESTARTED))
    assert not routed(app, restart, watch).keep_own
    # an incident older than the storm keeps its own message and is not in it
    add_container(url, "old", phase="escalated", incident=3)
    old = MemberStep("old", 3, LogLine(T0 + timedelta(seconds=61), IncidentStep.RECOVERED))
    assert routed(app, old, watch).keep_own
    rows = storm_rows(url)
    assert [row["dedup_key"] for row in rows] == [f"{thread}:{n}" for n in (1, 2, 3)]
    assert [row["edit_only"] for row in rows] == [False, True, True]
    # nothing sent them yet: the post waits, the older edit goes with the newer one
    assert [row["status"] for row in rows] == ["pending", "delivered", "pending"]
    assert rows[1]["merged_into"] == rows[2]["id"]
    assert rows[1]["title"].startswith("test-host: 6 containers unhealthy since 09:41: ")
    assert rows[2]["state"] == "restarted"

    # aegis restarted: a new watch asks the database, finds the storm, and closes it
    again = StormWatch()
    recovered = [*names, "cache", "queue"]
    for n, name in enumerate(recovered):
        closing = MemberStep(name, 1, LogLine(T0 + timedelta(minutes=6, seconds=n),
                                              IncidentStep.RECOVERED))
        result = routed(app, closing, again)
        assert not result.keep_own
    assert [event.event_type for event in result.events] == ["storm_ended"]
    rows = storm_rows(url)
    assert len(rows) == 3 + len(recovered)
    assert rows[-1]["title"] == "test-host: storm over after 6 min, 6 containers"
    assert (rows[-1]["edit_only"], rows[-1]["state"]) == (False, "recovered")
    # the post and the end wait for the sender; every edit between went with the end
    assert [row["status"] for row in rows] == ["pending", *["delivered"] * (len(rows) - 2),
                                               "pending"]
    assert sql_rows(url, "SELECT count(*) AS open FROM storms WHERE ended_at IS NULL") == [
        {"open": 0}]
    assert event_counts(url)["storm_started"] == event_counts(url)["storm_ended"] == 1
    # with the storm over, a new opening asks once, then the watch knows again
    assert routed(app, opened(url, "late", T0 + timedelta(minutes=30)), again).keep_own
    assert not again.worth_asking(
        app.settings, MemberStep("late", 1, LogLine(T0, IncidentStep.RESTARTED)))


def test_an_incident_with_its_own_message_keeps_it_and_is_listed(
        app: api.Aegis, database_url: str) -> None:
    url = database_url
    # an incident that posted its message before the storm (an escalation Docker's own
    # give-up opened, say)
    assert routed(app, opened(url, "first", T0, alerted=True)).keep_own
    for n in range(1, 5):
        routed(app, opened(url, f"c{n}", T0 + timedelta(seconds=n)))
    assert len(sql_rows(url, "SELECT id FROM storms")) == 1
    restart = MemberStep("first", 1, LogLine(T0 + timedelta(seconds=30),
                                             IncidentStep.RESTARTED), own_message=True)
    assert routed(app, restart).keep_own  # its own message is edited too
    assert len(storm_rows(url)) == 2


def test_no_storm_when_switched_off(app: api.Aegis, database_url: str) -> None:
    off = replace(app.settings, storm_threshold=0)
    for n in range(8):
        assert routed(app, opened(database_url, f"c{n}", T0), settings=off).keep_own
    assert sql_rows(database_url, "SELECT * FROM storms") == []


# --- the engine's outage ---


def outage_rows(url: str) -> list[dict[str, Any]]:
    return sql_rows(url, "SELECT title, thread, edit_only FROM outbox WHERE thread LIKE "
                         "'docker:%%' ORDER BY id")


def test_the_engine_unreachable_is_one_message_once_then_its_resolution(
        app: api.Aegis, database_url: str) -> None:
    interval = timedelta(seconds=app.settings.strike_interval_s)
    engine = EngineAvailability()
    engine.note(app, True, None, T0)
    # a blip shorter than a strike interval: no message
    engine.note(app, False, "connection refused", T0)
    engine.note(app, False, "connection refused", T0 + interval / 2)
    engine.note(app, True, None, T0 + interval * 0.9)
    assert outage_rows(database_url) == []

    down = T0 + timedelta(hours=1)
    for seconds in (0, 5, 30):
        engine.note(app, False, "connection refused", down + timedelta(seconds=seconds))
    assert outage_rows(database_url) == []
    engine.note(app, False, "connection refused", down + interval + timedelta(seconds=1))
    engine.note(app, False, "connection refused", down + interval + timedelta(seconds=5))
    restarted = EngineAvailability()  # aegis restarted during the outage
    restarted.note(app, False, "connection refused", down + interval * 3)
    rows = outage_rows(database_url)
    assert [row["title"] for row in rows] == [
        "Docker engine on test-host unreachable since 10:41:05 UTC"]

    restarted.note(app, True, None, down + interval * 4)
    restarted.note(app, True, None, down + interval * 5)
    rows = outage_rows(database_url)
    assert [row["title"] for row in rows] == [
        "Docker engine on test-host unreachable since 10:41:05 UTC",
        "Docker engine on test-host answers again"]
    assert rows[0]["thread"] == rows[1]["thread"]
    counts = event_counts(database_url)
    assert counts["docker_outage"] == 1
    assert counts["docker_unavailable"] == counts["docker_available"] == 2


def test_a_decision_spooled_during_an_outage_is_routed_when_written_back(
        app: api.Aegis, database_url: str) -> None:
    for n in range(5):
        routed(app, opened(database_url, f"c{n}", T0 + timedelta(seconds=n)))
    recovered_at = T0 + timedelta(minutes=2)
    log = [{"at": T0.isoformat(), "step": "struck", "text": "unhealthy"},
           {"at": recovered_at.isoformat(), "step": "recovered", "text": "healthy",
            "alerted": True}]
    params: dict[str, Any] = {
        "host": "test-host", "name": "c0", "version": 0, "container_id": "d" * 64,
        "image": "c:1", "compose_project": None, "compose_service": None,
        "status": "running", "health": "healthy", "has_healthcheck": True,
        "supervision": "supervised", "state": "ok", "phase": "ok", "strikes": 0,
        "incident": 1, "strike_at": None, "healthy_since": recovered_at.isoformat(),
        "restarts": [], "maintenance_label": False, "label_problems": [],
        "last_action": "recover", "last_action_at": recovered_at.isoformat(),
        "last_reason": "healthy", "next_check_at": None, "seen_at": recovered_at.isoformat(),
        "stopped_by_user": False, "stop_requested_at": None, "incident_log": log}
    event = app.store.new_event("container_recovered", "c0 recovered", importance="medium",
                                timestamp=recovered_at)
    own = Notification(Channel.ALERTS, "c0 recovered on test-host",
                       dedup_key="recovery:test-host:c0:1", thread="incident:test-host:c0:1")
    step = MemberStep("c0", 1, LogLine(recovered_at, IncidentStep.RECOVERED, "healthy"))
    record = {"kind": "container_decision", "params": params,
              "events": [event_record(event, own)], "storm_step": step.to_json()}

    with app.db.transaction() as tx:
        replay_routed(app.settings)(tx, record)

    assert sql_rows(database_url, "SELECT phase FROM containers WHERE name = 'c0'") == [
        {"phase": "ok"}]
    assert event_counts(database_url)["container_recovered"] == 1
    assert sql_rows(database_url, "SELECT id FROM outbox WHERE thread LIKE 'incident:%%'") == []
    rows = storm_rows(database_url)
    assert len(rows) == 2
    assert rows[1]["title"].startswith("test-host: 4 containers unhealthy since 09:41: ")


def test_a_storm_kept_open_by_an_escalation_no_longer_gathers_incidents(
        app: api.Aegis, database_url: str) -> None:
    url = database_url
    for n in range(5):
        routed(app, opened(url, f"c{n}", T0 + timedelta(seconds=n)))
    escalated = MemberStep("c0", 1, LogLine(T0 + timedelta(minutes=2), IncidentStep.ESCALATED))
    assert not routed(app, escalated).keep_own
    for n in range(1, 5):  # all but the escalated one recover; nobody acknowledges it
        routed(app, MemberStep(f"c{n}", 1, LogLine(T0 + timedelta(minutes=3),
                                                   IncidentStep.RECOVERED)))
    # within the window of its latest opening, an incident joins; later, it is its own
    assert not routed(app, opened(url, "near", T0 + timedelta(seconds=50))).keep_own
    later = T0 + timedelta(hours=5)
    assert routed(app, opened(url, "d0", later)).keep_own
    for n in range(1, 4):
        assert routed(app, opened(url, f"d{n}", later + timedelta(seconds=n))).keep_own
    # five of them together are a storm of their own beside the old one
    assert not routed(app, opened(url, "d4", later + timedelta(seconds=4))).keep_own
    storms = sql_rows(url, "SELECT members FROM storms WHERE ended_at IS NULL ORDER BY id")
    assert [[m["name"] for m in storm["members"]] for storm in storms] == [
        ["c0", "c1", "c2", "c3", "c4", "near"], ["d0", "d1", "d2", "d3", "d4"]]
    # each member's step moves its own storm
    assert not routed(app, MemberStep("c0", 1, LogLine(later, IncidentStep.ACKNOWLEDGED),
                                      )).keep_own
    assert not routed(app, MemberStep("near", 1, LogLine(later, IncidentStep.RECOVERED),
                                      )).keep_own
    assert sql_rows(url, "SELECT count(*) AS open FROM storms WHERE ended_at IS NULL") == [
        {"open": 1}]
