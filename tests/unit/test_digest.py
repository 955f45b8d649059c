"""The digest's pure parts: the day window (UTC, and a local day), date parsing, markdown
rendering, trimming, daemon health and retention cut-offs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from aegis.core.errors import UsageError
from aegis.reports.digest import (
    DayDigest,
    HostHealth,
    MorningStatus,
    day_window,
    parse_day,
)
from aegis.reports.markdown import render_day, render_status, trim
from aegis.reports.retention import retention_cutoffs
from aegis.scheduling.heartbeat import daemon_status
from aegis.scheduling.repository import JobFailures, RunCounts
from aegis.storage.events import (
    ContainerDecision,
    CriticalEvent,
    EventType,
    Flapping,
    OpenEscalation,
)

D = date(2026, 3, 1)


def moment(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 1, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(("day", "start", "end"), [
    (date(2026, 3, 1), datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)),
    (date(2026, 2, 28), datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
    (date(2024, 2, 29), datetime(2024, 2, 29, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
    (date(2026, 12, 31), datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    # A DST change day elsewhere is still 24 hours in UTC.
    (date(2026, 3, 29), datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC)),
])
def test_day_window_is_the_utc_day(day: date, start: datetime, end: datetime) -> None:
    assert day_window(day) == (start, end)
    assert end - start == timedelta(days=1)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-03-01", date(2026, 3, 1)), (" 2026-03-01 ", date(2026, 3, 1)),
    ("2026-03-02", date(2026, 3, 2)), ("1999-12-31", date(1999, 12, 31)),
])
def test_parse_day_accepts_past_and_present_dates(text: str, expected: date) -> None:
    assert parse_day(text, today=date(2026, 3, 2)) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("2026-02-30", "is not a date"), ("yesterday", "is not a date"), ("", "is not a date"),
    ("20260301", "is not a date"), ("2026-03-01T00:00", "is not a date"),
    ("2026-03-03", "is in the future"),
])
def test_parse_day_rejects_bad_and_future_dates(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        parse_day(text, today=date(2026, 3, 2))
    assert "\n" not in str(caught.value)


def digest(**changes: object) -> DayDigest:
    values: dict[str, object] = {
        "day": D,
        "jobs": (RunCounts("backup", ok=1, failed=2), RunCounts("health_check", ok=288)),
        "events_by_importance": (("critical", 1), ("high", 2), ("low", 10)),
        "events_by_type": (("noise", 10), ("container_restarted", 2), ("db_unreachable", 1)),
        "pending_tasks": 4,
        "decision_counts": (("container_restarted", 2),),
        "decisions": (ContainerDecision(moment(3, 4), EventType.CONTAINER_RESTARTED, "web|1",
                                        "host-a", "probe\noutput `rm -rf`"),
                      ContainerDecision(moment(4), EventType.CONTAINER_RESTARTED, "", "host-a",
                                        "x" * 500)),
        "job_failures": (JobFailures("backup", 2, "OSError: disk full"),),
        "delivery_failures": (),
        "critical_events": (CriticalEvent(moment(5), "db_unreachable", "host-a", "no answer"),),
        "open_escalations": (),
        "flapping": (Flapping("web|1", "host-a", 2),),
    }
    values.update(changes)
    return DayDigest(**values)  # type: ignore[arg-type]


def test_render_day_counts_and_sections() -> None:
    text = render_day(digest())
    assert text.startswith("# aegis digest — 2026-03-01\n\nUTC day 2026-03-01 00:00 to "
                           "2026-03-02 00:00, every host.\n")
    assert "2026-03-02 00:00, host host-a.\n" in render_day(digest(host="host-a"))
    assert "- Runs: 289 completed, 2 failed, 0 still running, 0 missed\n" in text
    assert "- Events: 13 recorded, 1 critical\n" in text
    assert "- Decisions: 2 restarted\n" in text
    assert "By importance: critical 1, high 2, low 10.\n" in text
    assert "| backup | 1 | 2 | 0 | 0 | 0 | 0 | 0 |\n" in text
    assert text.endswith("- Flapping: **web\\|1** on host-a restarted 2 times today\n"
                         "- Job **backup** failed 2 times today\n")


def test_untrusted_text_stays_on_one_line_and_is_cut() -> None:
    lines = render_day(digest()).split("\n")
    first, second = (line for line in lines if " restarted **" in line and "- 0" in line)
    assert first == "- 03:04 restarted **web\\|1** on host-a — probe output 'rm -rf'"
    assert second.startswith("- 04:00 restarted **?** on host-a — xxx")
    assert second.endswith("x…")
    assert len(second) < 220


def test_hidden_decisions_and_critical_events_are_counted() -> None:
    text = render_day(digest(decision_counts=(("container_restarted", 60),
                                              ("container_escalated", 3)),
                             events_by_importance=(("critical", 25),)))
    assert "- … and 61 more (`aegis events --type container_restarted`" in text
    assert "- … and 24 more critical events\n" in text


def test_rendering_is_deterministic() -> None:
    assert render_day(digest()) == render_day(digest())


def test_details_carry_the_numbers() -> None:
    details = digest().details()
    assert details["runs_completed"] == 289
    assert details["runs_failed"] == 2
    assert details["events"] == 13
    assert details["critical_events"] == 1
    assert details["jobs_failing_repeatedly"] == ["backup"]
    assert details["flapping_containers"] == 1


def status(**changes: object) -> MorningStatus:
    values: dict[str, object] = {
        "day": D, "as_of": moment(6) + timedelta(days=1),
        "jobs": (RunCounts("backup", ok=1, missed=1), RunCounts("health_check", ok=288)),
        "events_by_importance": (("low", 3),), "events_by_type": (("noise", 3),),
        "pending_tasks": 5,
        "open_escalations": (OpenEscalation("web", "host-a", moment(4), "budget spent"),),
        "maintenance": (("host-b", "db"),),
        "hosts": (HostHealth("host-a", "running", 4.0, 1, 1, version="1.4.0", supervised=12,
                             unhealthy=2),
                  HostHealth("host-b", "unknown", None, 0, 0),
                  HostHealth("host-c", "silent", 600.0, 0, 0, version="1.3.2", supervised=3)),
    }
    values.update(changes)
    return MorningStatus(**values)  # type: ignore[arg-type]


def test_render_status() -> None:
    text = render_status(status())
    assert text.startswith("Yesterday (2026-03-01): 289 runs ok, 0 failed, 0 timed out, "
                           "1 missed; 3 events (low 3).\nPending tasks: 5. Open escalations: 1.")
    assert "- backup: 0 failed, 0 timed out, 1 missed\n" in text
    assert "- **web** on host-a since 2026-03-01 04:00: budget spent\n" in text
    assert "**In maintenance**: **db** on host-b\n" in text
    assert "**Fleet**: 3 hosts (1 silent, 1 unknown, 1 running)\n" in text
    assert ("- host-a: daemon running (heartbeat 4s ago, 1.4.0), 12 supervised, 2 unhealthy "
            "now, 1 unwell since yesterday, 1 escalated\n") in text
    assert ("- host-b: daemon unknown, 0 supervised, 0 unhealthy now, 0 unwell since "
            "yesterday, 0 escalated\n") in text
    assert "- host-c: daemon silent (heartbeat 600s ago, 1.3.2), 3 supervised" in text


def test_render_status_of_one_host_has_no_fleet_section() -> None:
    text = render_status(status(hosts=(HostHealth("host-a", "running", 4.0, 0, 0,
                                                   version="1.4.0", supervised=12),)))
    assert "**Fleet**" not in text
    assert text.endswith("\n**Host**: host-a: daemon running (heartbeat 4s ago, 1.4.0), "
                         "12 supervised, 0 unhealthy now, 0 unwell since yesterday, "
                         "0 escalated\n")


@pytest.mark.parametrize(("maintenance", "shown"), [
    ((), "none"), ((("host-a", "db"), ("host-b", "web")), "**db** on host-a, **web** on host-b"),
])
def test_render_status_maintenance(maintenance: object, shown: str) -> None:
    assert f"**In maintenance**: {shown}\n" in render_status(status(maintenance=maintenance))


@pytest.mark.parametrize("limit", [100, 500, 4096])
def test_trim_fits_the_limit_at_a_line_boundary(limit: int) -> None:
    text = "\n".join(f"line {i} " + "y" * 30 for i in range(400))
    trimmed = trim(text, limit)
    assert len(trimmed) <= limit
    assert trimmed.endswith("(trimmed; the journal file has the whole digest)")
    kept = trimmed.rsplit("\n…", 1)[0]
    assert text.startswith(kept)
    assert text[len(kept)] == "\n" or not kept


def test_trim_leaves_short_text_alone() -> None:
    assert trim("short\n", 4096) == "short\n"
    assert trim("x" * 10, 5) == "xxxxx"


NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(("status_value", "age_s", "expected"), [
    ("running", 5, "running"), ("running", 30, "running"), ("running", 31, "stale"),
    ("stopping", 1, "running"), ("stopped", 1, "stopped"), ("stopped", 9999, "stopped"),
])
def test_daemon_status(status_value: str, age_s: float, expected: str) -> None:
    assert daemon_status(status_value, NOW - timedelta(seconds=age_s), NOW, 10.0) == expected


def test_retention_cutoffs() -> None:
    cutoffs = retention_cutoffs(NOW, event_retention_s=30 * 86400,
                                job_runs_retention_s=90 * 86400, outbox_retention_s=3600,
                                container_retention_s=7 * 86400)
    assert cutoffs.events == datetime(2026, 1, 31, 6, 0, tzinfo=UTC)
    assert cutoffs.job_runs == datetime(2025, 12, 2, 6, 0, tzinfo=UTC)
    assert cutoffs.outbox == datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    assert cutoffs.containers == datetime(2026, 2, 23, 6, 0, tzinfo=UTC)


def test_a_local_day_is_bounded_and_shown_in_aegis_timezone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start, end = day_window(date(2026, 3, 29), berlin)  # the clocks went forward
    assert (start, end) == (datetime(2026, 3, 28, 23, 0, tzinfo=UTC),
                            datetime(2026, 3, 29, 22, 0, tzinfo=UTC))
    text = render_day(digest(day=date(2026, 3, 29), zone=berlin, decisions=(
        ContainerDecision(datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
                          EventType.CONTAINER_RESTARTED, "web", "host-a", "probe"),)))
    assert text.startswith("# aegis digest — 2026-03-29\n\nEurope/Berlin day 2026-03-29 "
                           "00:00 to 2026-03-30 00:00, every host.\n")
    assert "- 03:30 restarted **web** on host-a — probe\n" in text  # 01:30 UTC is 03:30 CEST
    assert digest(zone=berlin).details()["timezone"] == "Europe/Berlin"
    shown = render_status(status(zone=berlin, open_escalations=(
        OpenEscalation("web", "host-a", datetime(2026, 3, 1, 4, 0, tzinfo=UTC), "spent"),)))
    assert "- **web** on host-a since 2026-03-01 05:00: spent\n" in shown
