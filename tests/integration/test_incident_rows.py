"""An incident's row and messages in PostgreSQL: ``aegis ack`` ends the incident's log and
edits its living message; the message ids go with the last outbox row of their thread;
a decision spooled by an earlier version (without the incident's columns) replays."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

from aegis import api
from aegis.core.clock import utcnow
from aegis.storage.outbox import Channel, IncidentStep, Notification, Outbox
from aegis.supervision.containers import acknowledge
from aegis.supervision.docker import Sighting
from aegis.supervision.protocol.strikes import Action, Phase, ShownState, SupervisionMode
from aegis.supervision.protocol.triage import TriageClass
from aegis.supervision.repository import Containers, ContainerUpdate, LogLine, replay_decision
from tests.support.cli import run_cli
from tests.support.rows import sql_rows


def escalated_row(app: api.Aegis, name: str = "web", *, alerted: bool = True) -> None:
    """A container escalated in incident 2, whose escalation posted its message."""
    now = utcnow()
    containers = Containers(app.db)
    row = containers.first_row("test-host", Sighting(
        id="c" * 64, name=name, image="web:1", status="running", health="unhealthy",
        has_healthcheck=True, labels={"com.docker.compose.project": "shop",
                                      "com.docker.compose.service": "web"}), True, now)
    assert row is not None
    log = (LogLine(now - timedelta(minutes=3), IncidentStep.STRUCK),
           LogLine(now - timedelta(minutes=1), IncidentStep.ESCALATED,
                   "still unhealthy one strike interval after the restart", alerted=alerted))
    params = replace(
        ContainerUpdate.keeping(row, now), supervision=SupervisionMode.SUPERVISED,
        state=ShownState.ESCALATED, phase=Phase.ESCALATED, strikes=3, incident=2,
        strike_at=now, restarts=(), label_problems=(), last_action=Action.ESCALATE,
        last_action_at=now, last_reason="x", incident_class=TriageClass.BROKEN_PROBE,
        incident_log=log, affected=("worker",), docker_restarts=())
    assert containers.save(params)


def test_aegis_containers_json_shows_the_class_and_the_dependants(
        aegis_env: dict[str, str], app: api.Aegis) -> None:
    escalated_row(app)
    result = run_cli("containers", "--json", env=aegis_env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)[0]
    assert {key: shown[key] for key in ("name", "state", "triage_class", "folded_into",
                                        "affected")} == {
        "name": "web", "state": "escalated", "triage_class": "broken_probe",
        "folded_into": None, "affected": ["worker"]}


def test_ack_ends_the_incident_and_edits_its_living_message(app: api.Aegis) -> None:
    escalated_row(app)
    assert acknowledge(app, "web", utcnow(), by="alice")
    row = sql_rows(app.db.dsn, "SELECT phase, incident_log FROM containers")[0]
    assert row["phase"] == "ok"
    assert [s["step"] for s in row["incident_log"]] == ["struck", "escalated", "acknowledged"]
    assert row["incident_log"][-1]["text"] == "by alice"
    sent = sql_rows(app.db.dsn, "SELECT dedup_key, thread, state, edit_only, title, body, "
                                "fields FROM outbox")
    assert len(sent) == 1
    edit = sent[0]
    assert (edit["dedup_key"], edit["thread"], edit["state"], edit["edit_only"]) == (
        "ack:test-host:web:2", "incident:test-host:web:2", "acknowledged", True)
    assert edit["title"] == "web acknowledged on test-host"
    assert edit["body"].startswith("**Acknowledged** after 3 min, 0 restarts.")
    assert "Also affected: worker" in edit["body"]
    assert "aegis ack" not in edit["body"]
    assert edit["fields"]["class"] == "broken_probe"
    assert not acknowledge(app, "web", utcnow())  # nothing open any more


def test_ack_of_an_incident_without_a_message_queues_none(aegis_env: dict[str, str],
                                                          app: api.Aegis) -> None:
    escalated_row(app, alerted=False)  # posts style, or Discord not configured then
    result = run_cli("ack", "web", env=aegis_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "web: escalation acknowledged; remediation re-armed\n"
    assert sql_rows(app.db.dsn, "SELECT 1 FROM outbox") == []


def test_living_message_ids_go_with_the_last_row_of_their_thread(app: api.Aegis) -> None:
    for thread, state in (("incident:h:a:1", "escalated"), ("incident:h:a:1", "recovered"),
                          ("incident:h:b:1", "escalated")):
        app.store.record_event("test_step", state, notify=Notification(
            Channel.ALERTS, state, dedup_key=f"{thread}:{state}", thread=thread,
            state=IncidentStep(state)))
    outbox = Outbox(app.db)
    now = utcnow()
    for thread in ("incident:h:a:1", "incident:h:b:1"):
        outbox.keep_thread_message(thread, "target", f"id-{thread[-3]}", now)
    sql_rows(app.db.dsn, "UPDATE outbox SET status = 'delivered', created_at = now() - "
                         "interval '20 days' WHERE thread = 'incident:h:a:1' RETURNING id")
    sql_rows(app.db.dsn, "UPDATE outbox SET created_at = now() - interval '20 days' "
                         "WHERE state = 'escalated' AND thread = 'incident:h:b:1' RETURNING id")
    outbox.prune(now - timedelta(days=14), now - timedelta(days=400), 1000)
    # a's rows are all gone, so is its message id; b's escalation is pending: kept
    assert sql_rows(app.db.dsn, "SELECT thread FROM outbox_messages") == [
        {"thread": "incident:h:b:1"}]


def test_a_decision_spooled_before_the_incident_columns_replays(app: api.Aegis) -> None:
    now = utcnow()
    params: dict[str, Any] = {
        "host": "test-host", "name": "old", "version": 0, "container_id": "d" * 64,
        "image": "old:1", "compose_project": None, "compose_service": None,
        "status": "running", "health": "unhealthy", "has_healthcheck": True,
        "supervision": "supervised", "state": "striking", "phase": "striking", "strikes": 1,
        "incident": 1, "strike_at": now.isoformat(), "healthy_since": None, "restarts": [],
        "maintenance_label": False, "label_problems": [], "last_action": "strike1",
        "last_action_at": now.isoformat(), "last_reason": "unhealthy",
        "next_check_at": None, "seen_at": now.isoformat(), "stopped_by_user": False,
        "stop_requested_at": None}
    with app.db.transaction() as tx:
        replay_decision(tx, {"kind": "container_decision", "params": params, "events": []})
    assert sql_rows(app.db.dsn, "SELECT name, phase, incident_log, affected FROM "
                                "containers") == [
        {"name": "old", "phase": "striking", "incident_log": [], "affected": []}]
