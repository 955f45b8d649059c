"""morning_status and evening_summary against a real PostgreSQL: a seeded day, an injected
``now``, the exact numbers and sections of the digest and of the events."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from aegis import api
from aegis.core.config import DigestScope, Settings
from aegis.core.errors import UsageError
from aegis.reports.digest import collect_day
from aegis.reports.journal import write_atomic
from aegis.reports.markdown import render_day
from aegis.scheduling.registry import Registry
from aegis.scheduling.repository import Runs, RunTrigger, WantedSlot
from jobs import evening_summary, memory_cleanup, morning_status
from tests.support.rows import events_of_type, execute_many, sql_rows
from tests.support.scheduling import job_context
from tests.support.seeds import DAY, hour, seed_day

DOCS = Path(__file__).resolve().parents[2] / "docs" / "journal.md"
SAMPLE_START = "<!-- sample-digest:start -->"
SAMPLE_END = "<!-- sample-digest:end -->"


class RecordingLog:
    """A structlog-shaped logger that keeps what it was told."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _log(self, level: str, event: str, **kw: Any) -> None:
        self.lines.append((level, event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self._log("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._log("error", event, **kw)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [kw for _, name, kw in self.lines if name == event]


def section(text: str, title: str) -> list[str]:
    lines = text.split("\n")
    start = lines.index(f"## {title}") + 2
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return [line for line in lines[start:end] if line]


@pytest.fixture
def aegis_env(aegis_env: dict[str, str]) -> dict[str, str]:
    """The seeded day is a fleet's: most tests here read the fleet digest."""
    return {**aegis_env, "AEGIS_DIGEST_SCOPE": "fleet"}


@pytest.mark.parametrize(("scope", "digest_scope"),
                         [(DigestScope.HOST, "host"), (DigestScope.FLEET, "cluster")])
def test_the_three_jobs_register_as_daily_jobs(scope: DigestScope, digest_scope: str) -> None:
    registry = Registry(settings=Settings(digest_scope=scope))
    for module in (morning_status, evening_summary, memory_cleanup):
        module.register(registry)
    described = {job.id: (job.trigger.describe(), job.scope) for job in registry}
    assert described == {"morning_status": ("daily at 06:00 UTC", "cluster"),
                         "evening_summary": ("daily at 22:00 UTC", digest_scope),
                         "memory_cleanup": ("daily at 00:30 UTC", "cluster")}


def test_a_host_digest_counts_what_its_host_recorded(app: api.Aegis) -> None:
    """AEGIS_DIGEST_SCOPE=host: host-b's daemon writes host-b's day, under its own key."""
    seed_day(app.db.dsn)
    execute_many(app.db.dsn, "INSERT INTO tasks (job_id, host, status, created_at) "
            "VALUES (%s, %s, 'pending', %s)", [("backup", "host-a", hour(20)),
                                               ("backup", "host-b", hour(20))])
    settings = replace(app.settings, host="host-b", digest_scope=DigestScope.HOST)
    with api.connect(settings, migrate=False) as host_b:
        result = evening_summary.evening_summary(job_context(host_b, "evening_summary", hour(22),
                                                         hour(22), RecordingLog()))
    text = (app.settings.journal_dir / "2026-03-01.md").read_text(encoding="utf-8")

    assert text.split("\n")[2] == "UTC day 2026-03-01 00:00 to 2026-03-02 00:00, host host-b."
    assert section(text, "Summary") == [
        "- Runs: 0 completed, 0 failed, 0 still running, 0 missed",
        "- Tasks pending at the end of the day: 4",  # its own and the three unassigned
        "- Events: 4 recorded, 1 critical",
        "- Decisions: 1 restarted, 1 escalated, 1 acknowledged",
        "- Open escalations: 0",  # db was acknowledged
    ]
    assert "host-a" not in text
    assert "host-c" not in text
    assert (result["scope"], result["host"]) == ("host", "host-b")
    [message] = sql_rows(app.db.dsn, "SELECT title FROM outbox WHERE dedup_key = %s",
                         "evening_summary:2026-03-01:host-b")
    assert message["title"] == "aegis digest 2026-03-01 (host-b)"


def test_a_fleet_digest_is_written_once_whichever_hosts_run_it(app: api.Aegis) -> None:
    """Two daemons of a fleet claim the same 22:00 slot of the cluster job: one runs it."""
    registry = Registry(settings=app.settings)
    evening_summary.register(registry)
    job = registry.get("evening_summary")
    won = [len(Runs(app.db).claim(
               [WantedSlot(job.id, job.scope_key(host), RunTrigger.SCHEDULE, hour(22))],
               host=host, now=hour(22), instance_id=host, live_since=hour(21)))
           for host in ("host-a", "host-b")]
    assert won == [1, 0]


def test_evening_summary_writes_the_digest_with_the_exact_numbers(app: api.Aegis) -> None:
    seed_day(app.db.dsn)
    log = RecordingLog()
    result = evening_summary.evening_summary(job_context(app, "evening_summary", hour(22),
                                                     hour(22) + timedelta(seconds=2), log))
    path = app.settings.journal_dir / "2026-03-01.md"
    text = path.read_text(encoding="utf-8")

    assert section(text, "Summary") == [
        "- Runs: 8 completed, 4 failed, 1 still running, 1 missed",
        "- Tasks pending at the end of the day: 3",
        "- Events: 17 recorded, 3 critical",
        "- Decisions: 3 restarted, 2 escalated, 1 acknowledged",
        "- Open escalations: 2",
    ]
    assert section(text, "Key decisions") == [
        "- 03:06 restarted **web** on host-a — probe: curl exit 7, connection refused",
        "- 05:00 restarted **web** on host-a — probe: curl exit 7 \\| again",
        "- 05:12 escalated **web** on host-a — still unhealthy after the restart",
        "- 07:00 restarted **api** on host-b — probe: HTTP 503",
        "- 08:00 escalated **db** on host-b — restart budget spent (3 in the last hour)",
        "- 09:00 acknowledged **db** on host-b — acknowledged by alice",
    ]
    assert section(text, "Errors") == [
        "- Job **docker_health_check** failed 3 times; last: timeout: still running after 60s",
        "- Job **health_check** failed once; last: StoreError: connection refused",
        "- Channel **alerts**: 1 undelivered message; last: HTTP 404: Unknown Webhook",
        "- 05:12 critical container_escalated on host-a: web still unhealthy after restart",
        "- 08:00 critical container_escalated on host-b: db restart budget spent",
        "- 10:00 critical db_unreachable on host-a: the database did not answer: timeout",
    ]
    assert section(text, "Tomorrow's priorities") == [
        "- Open escalation: **web** on host-a since 2026-03-01 05:12 — still unhealthy after "
        "the restart",
        "- Open escalation: **cache** on host-c since 2026-02-28 23:54 — yesterday",
        "- Flapping: **web** on host-a restarted 2 times today",
        "- Job **docker_health_check** failed 3 times today",
    ]
    assert "| docker_health_check | 3 | 2 | 1 | 0 | 0 | 0 | 0 |" in section(text, "Runs")
    assert "evening_summary" not in section(text, "Runs")[2:]

    assert result["runs_completed"] == 8
    assert result["events"] == 17
    assert result["path"] == str(path)
    [recorded] = events_of_type(app.db.dsn, "evening_summary")[1:]  # after the seeded earlier one
    assert recorded["importance"] == "medium"
    assert recorded["details"]["critical_events"] == 3
    assert recorded["details"]["open_escalations"] == 2
    assert recorded["details"]["jobs_failing_repeatedly"] == ["docker_health_check"]
    assert recorded["summary"] == ("digest 2026-03-01: 8 runs completed, 4 failed, 3 tasks "
                                   "pending; 17 events (3 critical); 2 open escalations")
    assert log.named("evening_summary_generated") == [
        {"tasks_completed": 8, "events": 17, "date": "2026-03-01", "path": str(path)}]


def test_evening_summary_sends_the_digest_once_to_the_journal_channel(app: api.Aegis) -> None:
    seed_day(app.db.dsn)
    execute_many(app.db.dsn, "DELETE FROM outbox WHERE dedup_key = %s",
            [("evening_summary:2026-03-01",)])
    ctx = job_context(app, "evening_summary", hour(22), hour(22), RecordingLog())
    evening_summary.evening_summary(ctx)
    evening_summary.evening_summary(ctx)
    rows = sql_rows(app.db.dsn, "SELECT channel, title, body FROM outbox WHERE dedup_key = %s",
                    "evening_summary:2026-03-01")
    assert len(rows) == 1
    assert rows[0]["channel"] == "journal"
    assert rows[0]["title"] == "aegis digest 2026-03-01"
    assert rows[0]["body"] == (app.settings.journal_dir / "2026-03-01.md").read_text()


def test_a_rerun_for_the_same_date_gives_a_byte_identical_file(app: api.Aegis) -> None:
    seed_day(app.db.dsn)
    path = app.settings.journal_dir / "2026-03-01.md"
    evening_summary.evening_summary(job_context(app, "evening_summary", hour(22), hour(22),
                                            RecordingLog()))
    first = path.read_bytes()
    # A manual rerun an hour later, after the first run recorded its event and message.
    evening_summary.evening_summary(job_context(app, "evening_summary", hour(23), hour(23),
                                            RecordingLog(), date="2026-03-01"))
    assert path.read_bytes() == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["2026-03-01.md"]
    assert len(events_of_type(app.db.dsn, "evening_summary")) == 3  # the seeded one and two runs


def test_a_caught_up_slot_reports_on_its_own_day(app: api.Aegis) -> None:
    seed_day(app.db.dsn)
    result = evening_summary.evening_summary(
        job_context(app, "evening_summary", hour(22), hour(25.5), RecordingLog()))
    assert result["date"] == "2026-03-01"


def test_a_bad_date_argument_fails_the_run_before_writing(app: api.Aegis) -> None:
    with pytest.raises(UsageError, match="not a date"):
        evening_summary.evening_summary(job_context(app, "evening_summary", hour(22), hour(22),
                                                RecordingLog(), date="2026-02-30"))
    assert not app.settings.journal_dir.exists()
    assert events_of_type(app.db.dsn, "evening_summary") == []


def test_an_unwritable_journal_is_recorded_and_fails_the_run(app: api.Aegis) -> None:
    journal_dir = app.settings.journal_dir
    journal_dir.parent.mkdir(parents=True, exist_ok=True)
    journal_dir.write_text("a file where the folder should be")
    log = RecordingLog()
    with pytest.raises(FileExistsError):
        evening_summary.evening_summary(job_context(app, "evening_summary", hour(22), hour(22),
                                                    log))
    [recorded] = events_of_type(app.db.dsn, "evening_summary")
    assert recorded["details"]["path"] is None
    assert "journal_error" in recorded["details"]
    assert log.named("journal_write_failed")


def test_an_empty_day_still_has_every_section(app: api.Aegis) -> None:
    text = render_day(collect_day(app, date(2026, 1, 1)))
    assert section(text, "Runs") == ["No job runs."]
    assert section(text, "Events") == ["No events."]
    assert section(text, "Key decisions") == ["No restarts, escalations or acknowledgements."]
    assert section(text, "Errors") == ["None."]
    assert section(text, "Tomorrow's priorities") == ["Nothing needs attention."]


def test_morning_status_reports_yesterday_and_the_fleet_now(app: api.Aegis) -> None:
    seed_day(app.db.dsn)
    now = hour(30) + timedelta(minutes=1)  # 06:01 the next day
    execute_many(app.db.dsn, "INSERT INTO daemons (instance_id, host, pid, version, started_at, "
            "last_heartbeat_at, status) VALUES (%s, %s, 1, '0', %s, %s, %s)",
            [("a1", "host-a", hour(0), now - timedelta(seconds=5), "running"),
             ("b1", "host-b", hour(0), now - timedelta(hours=2), "running"),
             ("b0", "host-b", hour(-5), hour(-1), "stopped")])
    execute_many(app.db.dsn, "INSERT INTO containers (host, name, maintenance_until) "
            "VALUES (%s, %s, %s)", [("host-a", "db", now + timedelta(hours=1)),
                                    ("host-a", "old", now - timedelta(hours=1))])
    log = RecordingLog()
    result = morning_status.morning_status(job_context(app, "morning_status", hour(30), now, log))

    assert result["date"] == "2026-03-01"
    assert result["jobs"]["docker_health_check"] == {"ok": 3, "failed": 2, "timeout": 1}
    assert result["jobs"]["backup"] == {"missed": 1, "running": 1}
    assert result["events"] == 18  # the status counts the earlier digest event too
    assert result["events_by_importance"] == {"critical": 3, "high": 3, "medium": 5, "low": 7}
    assert result["events_by_type"]["container_restarted"] == 3
    assert result["pending_tasks"] == 2  # the one started at 00:30 is running by now
    assert result["open_escalations"] == ["web@host-a", "cache@host-c"]
    assert result["maintenance"] == ["db@host-a"]  # "old"'s maintenance has ended
    # Since yesterday 00:00: web's latest event is its escalation; api recovered, db was
    # acknowledged.
    # host-b's heartbeat is two hours old with no clean stop: silent (AEGIS_PEER_TIMEOUT 3m);
    # host-c is known from an escalation only. host-a has two containers rows.
    assert result["hosts"] == {
        "host-a": {"daemon": "running", "troubled_containers": 1, "open_escalations": 1,
                   "supervised": 2, "unhealthy": 0},
        "host-b": {"daemon": "silent", "troubled_containers": 0, "open_escalations": 0,
                   "supervised": 0, "unhealthy": 0},
        "host-c": {"daemon": "unknown", "troubled_containers": 0, "open_escalations": 1,
                   "supervised": 0, "unhealthy": 0},
    }
    assert log.named("morning_status_generated")[0]["pending_tasks"] == 2
    [recorded] = events_of_type(app.db.dsn, "morning_status")
    assert recorded["importance"] == "medium"
    assert recorded["summary"] == ("status 2026-03-01: 9 runs ok, 4 failed, 18 events; "
                                   "2 tasks pending, 2 open escalations")
    [message] = sql_rows(app.db.dsn, "SELECT channel, body FROM outbox WHERE dedup_key = %s",
                         "morning_status:2026-03-01")
    assert message["channel"] == "journal"
    assert "Pending tasks: 2. Open escalations: 2." in message["body"]
    assert "**Fleet**: 3 hosts (1 silent, 1 unknown, 1 running)" in message["body"]
    assert "- host-b: daemon silent (heartbeat 7200s ago, 0)" in message["body"]


def test_write_atomic_replaces_the_file_and_never_leaves_half_a_file(tmp_path: Path) -> None:
    target = tmp_path / "journal" / "2026-03-01.md"
    write_atomic(target, "first\n")
    write_atomic(target, "second\n")
    assert target.read_text() == "second\n"
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "half \ud800 written")  # fails while writing the temporary file
    assert target.read_text() == "second\n"
    assert [p.name for p in target.parent.iterdir()] == ["2026-03-01.md"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def sample_block(app: api.Aegis) -> str:
    seed_day(app.db.dsn)
    return render_day(collect_day(app, DAY))


def test_the_sample_in_docs_is_what_the_code_renders(app: api.Aegis) -> None:
    """docs/journal.md shows the digest of the seeded day above. To refresh it after a
    change to the digest: AEGIS_REGENERATE_DOCS=1 pytest -k sample_in_docs."""
    rendered = f"{SAMPLE_START}\n```markdown\n{sample_block(app)}```\n{SAMPLE_END}"
    docs = DOCS.read_text(encoding="utf-8")
    start, end = docs.index(SAMPLE_START), docs.index(SAMPLE_END) + len(SAMPLE_END)
    if os.environ.get("AEGIS_REGENERATE_DOCS") == "1":
        DOCS.write_text(docs[:start] + rendered + docs[end:], encoding="utf-8")
        docs = DOCS.read_text(encoding="utf-8")
        start, end = docs.index(SAMPLE_START), docs.index(SAMPLE_END) + len(SAMPLE_END)
    assert docs[start:end] == rendered, "docs/journal.md is stale; see this test's docstring"


def test_digest_details_are_json(app: api.Aegis) -> None:
    seed_day(app.db.dsn)
    details = collect_day(app, DAY).details()
    assert json.loads(json.dumps(details)) == details
    assert details["runs"] == {"ok": 8, "failed": 3, "timeout": 1, "missed": 1, "skipped": 0,
                               "interrupted": 0, "running": 1}
