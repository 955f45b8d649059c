"""The status page's pure parts: the SVG charts, the way times and durations are written,
grouping a container's events into incidents, the labels in effect, the commands shown,
lateness, and the filters and cursors of the history pages."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from aegis.core.config import Settings
from aegis.scheduling.repository import JobRun, RunStatus, RunTrigger
from aegis.storage.events import Event, Importance
from aegis.storage.rows import as_row
from aegis.supervision.containers import HostWindows, view
from aegis.supervision.repository import ContainerRow
from aegis.web import charts, history, pages
from aegis.web.render import (
    Templates,
    ago,
    class_meaning,
    local_time,
    seconds_text,
    zone_name,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(("value", "top"), [
    (0, 1), (-3, 1), (0.7, 1), (1, 1), (1.2, 2), (3, 5), (7, 10), (10, 10), (11, 20),
    (480, 500), (0.013, 0.02), (0.919, 1),
])
def test_the_axis_top_is_one_two_or_five_times_a_power_of_ten(value: float, top: float) -> None:
    assert charts.nice_max(value) == pytest.approx(top)


def parsed(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def test_columns_draw_a_column_per_value_and_escape_every_text() -> None:
    svg = charts.columns(["11-21", HOSTILE], [
        charts.Series("restarts", "chart-restarts", (2.0, 0.0)),
        charts.Series(HOSTILE, "chart-escalations", (1.0, 4.0))], title=HOSTILE)
    root = parsed(svg)
    assert "<script" not in svg
    assert "<img" not in svg
    assert root.get("aria-label") == HOSTILE
    columns = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert [c.get("class") for c in columns] == ["chart-restarts", "chart-escalations",
                                                 "chart-escalations"]  # none for a zero
    assert [c.find(f"{SVG}title").text for c in columns] == [  # type: ignore[union-attr]
        "11-21: restarts 2", f"11-21: {HOSTILE} 1", f"{HOSTILE}: {HOSTILE} 4"]
    heights = [float(c.get("height", 0)) for c in columns]
    assert heights[2] == pytest.approx(charts.PLOT_H * 4 / 5)  # the axis tops at 5
    assert heights[0] == pytest.approx(heights[1] * 2)


def test_columns_of_nothing_say_so() -> None:
    svg = charts.columns(["a", "b"], [charts.Series("restarts", "chart-restarts", (0, 0))],
                         title="t", empty="no restart in 30 days")
    assert "no restart in 30 days" in svg
    assert all(r.find(f"{SVG}title") is None for r in parsed(svg).iter(f"{SVG}rect"))


def test_day_labels_are_counted_from_the_last_day() -> None:
    labels = [f"d{n}" for n in range(30)]
    svg = charts.columns(labels, [charts.Series("r", "chart-restarts", (1.0,) * 30)],
                         title="t", label_every=7)
    shown = [t.text for t in parsed(svg).iter(f"{SVG}text") if (t.text or "").startswith("d")]
    assert shown == ["d1", "d8", "d15", "d22", "d29"]


def test_bars_draw_a_bar_per_series_of_each_row_with_its_value() -> None:
    svg = charts.bars(["health_check", HOSTILE], [
        charts.Series("median", "chart-median", (0.004, 0.5)),
        charts.Series("worst", "chart-worst", (0.9, 2.0))], title="lateness",
        unit=seconds_text)
    root = parsed(svg)
    assert "<script" not in svg
    titles = [r.find(f"{SVG}title").text for r in root.iter(f"{SVG}rect")  # type: ignore[union-attr]
              if r.find(f"{SVG}title") is not None]
    assert titles == ["health_check: median 4 ms", "health_check: worst 900 ms",
                      f"{HOSTILE}: median 500 ms", f"{HOSTILE}: worst 2.0 s"]
    assert "no scheduled run" in charts.bars([], [], title="t", empty="no scheduled run")


@pytest.mark.parametrize(("zone", "shown"), [
    (UTC, "2026-11-22 12:00:00 UTC"),
    (ZoneInfo("Europe/Berlin"), "2026-11-22 13:00:00 CET"),
    (ZoneInfo("America/New_York"), "2026-11-22 07:00:00 EST"),
])
def test_every_time_is_written_in_the_zone_the_page_is_given(zone: ZoneInfo, shown: str) -> None:
    assert local_time(NOW, zone) == shown
    assert local_time(None, zone) == "-"


def test_the_templates_write_times_in_their_zone() -> None:
    templates = Templates(ZoneInfo("Europe/Berlin"))
    assert zone_name(templates.zone) == "Europe/Berlin"
    assert zone_name(UTC) == "UTC"
    html = templates.env.from_string("{{ t|when }}").render(t=NOW)
    assert html == "2026-11-22 13:00:00 CET"


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0.0042, "4 ms"), (0.5, "500 ms"), (4.21, "4.2 s"), (119, "119.0 s"),
    (600, "10 min"), (3 * 3600, "3.0 h"), (5 * 86400, "5 d"),
])
def test_durations_for_people(seconds: float | None, text: str) -> None:
    assert seconds_text(seconds) == text


def test_ago_and_in() -> None:
    assert ago(NOW - timedelta(seconds=4), NOW) == "4.0 s ago"
    assert ago(NOW + timedelta(minutes=5), NOW) == "in 5 min"
    assert ago(None, NOW) == "-"


def event(event_type: str, minutes: int, incident: object = None,
          triage_class: str | None = None) -> Event:
    details = {"container": "web"} if incident is None else {"container": "web",
                                                               "incident": incident}
    if triage_class is not None:
        details["class"] = triage_class
    return Event(event_type=event_type, summary=event_type, importance=Importance.MEDIUM,
                 host="h", source="supervisor", timestamp=NOW + timedelta(minutes=minutes),
                 details=details, id=minutes)


def test_a_containers_events_are_grouped_into_incidents_newest_first() -> None:
    newest_first = [event("container_unhealthy", 9, 2), event("container_bad_label", 8),
                    event("container_recovered", 7, 1), event("container_escalated", 3, 1),
                    event("container_restarted", 2, 1), event("container_unhealthy", 1, 1),
                    event("container_maintenance", 0, "not a number")]
    incidents, others = pages.incidents_of(newest_first)
    assert [i.number for i in incidents] == [2, 1]
    assert incidents[0].closed_at is None  # still open
    assert [e.event_type for e in incidents[1].events] == [
        "container_unhealthy", "container_restarted", "container_escalated",
        "container_recovered"]
    assert incidents[1].opened_at == NOW + timedelta(minutes=1)
    assert incidents[1].closed_at == NOW + timedelta(minutes=7)
    assert [e.event_type for e in others] == ["container_bad_label", "container_maintenance"]


def test_the_labels_in_effect_say_what_each_does() -> None:
    settings = Settings(strike_interval_s=60.0, max_restarts_per_hour=3)
    found = {line.key: line for line in pages.labels_in_effect(
        {"aegis.strike-interval": "30s", "aegis.max-restarts": HOSTILE,
         "aegis.enabel": "true", "aegis.role": "daemon"}, settings)}
    assert found["aegis.strike-interval"].effect == "30s between strikes"
    # a value that does not parse is treated as unset: the setting applies
    assert found["aegis.max-restarts"].value == HOSTILE
    assert found["aegis.max-restarts"].effect == "3 restarts an hour (AEGIS_MAX_RESTARTS)"
    assert found["aegis.protect"].value is None
    assert found["aegis.enabel"].effect == "does nothing (did you mean aegis.enable?)"
    assert found["aegis.role"].effect == "not aegis's: left alone"


def test_docker_autoheal_labels_are_in_effect_only_with_its_compatibility_on() -> None:
    labels = {"autoheal": "true", "autoheal.stop.timeout": "20", "aegis.stop-timeout": "45s"}
    found = {line.key: line for line in pages.labels_in_effect(labels, Settings())}
    assert found["aegis.enable"].effect.endswith("outside the scope (by autoheal)")
    assert found["autoheal"].effect == "docker-autoheal's, read as aegis.enable"
    # aegis's own label wins over docker-autoheal's
    assert found["aegis.stop-timeout"].effect == "45s to stop before a kill"
    assert found["autoheal.stop.timeout"].effect == (
        "docker-autoheal's, read as aegis.stop-timeout (aegis.stop-timeout is set: it wins "
        "when valid)")
    off = {line.key: line for line in pages.labels_in_effect(
        labels, Settings(autoheal_compat=False, default_stop_timeout_s=30.0))}
    assert off["aegis.enable"].effect == "supervised by scope (all)"
    assert off["autoheal"].effect == "not aegis's: left alone"
    assert {line.key: line for line in pages.labels_in_effect({}, Settings(
        default_stop_timeout_s=30.0))}["aegis.stop-timeout"].effect == (
        "the container's own stop timeout, else 30s (AEGIS_DEFAULT_STOP_TIMEOUT)")


def test_an_incident_reads_its_class_from_its_latest_event_that_names_one() -> None:
    incidents, _ = pages.incidents_of([
        event("container_escalated", 3, 1, triage_class="oom"),
        event("container_unhealthy", 1, 1, triage_class="unhealthy"),
        event("container_recovered", 0, 0)])
    assert [(i.number, i.triage_class) for i in incidents] == [(1, "oom")]
    assert class_meaning("oom") == "killed for lack of memory"
    assert class_meaning("broken_probe") == "the health check command is broken"
    assert class_meaning("a_later_class") == "a_later_class"
    assert class_meaning(None) == "-"


def container_row(**columns: object) -> ContainerRow:
    row: dict[str, object] = {
        "name": "web", "container_id": "abc", "image": "img", "health": "unhealthy",
        "strikes": 3, "phase": "escalated", "supervision": "supervised",
        "maintenance_label": False, "maintenance_until": None, "last_action": "escalate",
        "last_action_at": NOW, "restarts": [], "host": "h", "last_reason": "r",
        "strike_at": NOW, "incident": 1, "incident_class": "unhealthy", "folded_into": None,
        "affected": []}
    row.update(columns)
    return as_row(ContainerRow, row)


@pytest.mark.parametrize(("columns", "commands"), [
    ({}, ["aegis ack web", "aegis maintenance web --for 1h",
          "aegis events --container web --since 7d"]),
    ({"phase": "ok", "maintenance_until": NOW + timedelta(hours=1)},
     ["aegis maintenance web --off", "aegis events --container web --since 7d"]),
    ({"name": HOSTILE, "phase": "striking"},
     [f"aegis maintenance '{HOSTILE}' --for 1h",
      f"aegis events --container '{HOSTILE}' --since 7d"]),
])
def test_the_commands_to_act_on_a_container_are_quoted_for_a_shell(
        columns: dict[str, object], commands: list[str]) -> None:
    row = container_row(**columns)
    assert pages.commands(row.name, pages.line(row, NOW)) == commands
    assert view(row, NOW).name == row.name


def test_a_container_in_its_label_window_is_shown_in_maintenance_with_its_end() -> None:
    row = container_row(phase="ok", strikes=0,
                        labels={"aegis.maintenance-window": "0 11 * * */2h"})
    shown = view(row, NOW, HostWindows.of(Settings(host="h")))  # 12:00 UTC: under way
    assert (shown.state, shown.window, shown.window_start, shown.window_end) == (
        "maintenance", "aegis.maintenance-window of web", NOW - timedelta(hours=1),
        NOW + timedelta(hours=1))
    later = view(row, NOW + timedelta(hours=1), HostWindows.of(Settings(host="h")))
    assert (later.state, later.window_start) == ("ok", NOW + timedelta(hours=23))
    assert view(row, NOW).state == "ok"  # no windows asked for


def job_run(trigger: str, status: str, late_s: float | None) -> JobRun:
    started = None if late_s is None else NOW + timedelta(seconds=late_s)
    return JobRun(id=1, job_id="j", scope_key="h", host="h", trigger=RunTrigger(trigger),
                  scheduled_for=NOW, started_at=started, finished_at=started,
                  status=RunStatus(status),
                  error=None, result=None, instance_id=None)


@pytest.mark.parametrize(("trigger", "status", "late_s", "lateness"), [
    ("schedule", "ok", 0.25, 0.25), ("catch_up", "failed", 30.0, 30.0),
    ("schedule", "ok", -0.001, 0.0), ("manual", "ok", 5.0, None),
    ("schedule", "missed", 90.0, None), ("schedule", "skipped", 1.0, None),
    ("schedule", "running", None, None),
])
def test_lateness_is_how_long_after_its_slot_a_run_started(
        trigger: str, status: str, late_s: float | None, lateness: float | None) -> None:
    assert history.lateness_s(job_run(trigger, status, late_s)) == lateness


def test_event_filters_take_the_cli_s_forms_and_refuse_bad_ones() -> None:
    found = history.event_filters({"type": ["container_restarted, container_escalated",
                                            "daemon_started"],
                                   "importance": ["high"], "container": [" web "]})
    assert found.types == ["container_restarted", "container_escalated", "daemon_started"]
    assert (found.since, found.importance, found.container) == ("24h", "high", "web")
    with pytest.raises(pages.PageError, match="importance: 'urgent' is not one of"):
        history.event_filters({"importance": ["urgent"]})
    with pytest.raises(pages.PageError, match="container: longer than"):
        history.event_filters({"container": ["x" * 201]})


def test_a_page_cursor_is_the_sort_key_of_the_last_row() -> None:
    link = history.next_link("/events", {"type": ["a", "b"], "container": ""}, NOW, 42)
    assert link.startswith("/events?type=a&type=b&before=")
    query = {"before": [link.split("before=")[1].replace("%3A", ":").replace("%2B", "+")
                        .replace("%7E", "~")]}
    assert history.cursor(query) == (NOW, 42)
    assert history.cursor({}) is None
    for bad in ("yesterday", "2026-11-22T12:00:00~x", "2026-11-22T12:00:00~1",
                f"{NOW.isoformat()}~{2 ** 63}", f"{NOW.isoformat()}~-1"):
        with pytest.raises(pages.PageError, match="before: not a page cursor"):
            history.cursor({"before": [bad]})
