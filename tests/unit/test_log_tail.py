"""The container's last log lines as aegis keeps them (aegis/supervision/docker.py): each
line cut at 300 characters, secrets masked as everywhere in aegis, terminal codes removed;
what an event's details and an incident's log line carry, old lines without it included;
and what is said when the log driver keeps nothing to read."""

from __future__ import annotations

from datetime import UTC, datetime

from aegis.core.config import load_settings
from aegis.core.logs import secret_values
from aegis.storage.outbox import IncidentStep
from aegis.supervision.docker import (
    LOG_LINE_CHARS,
    LogTail,
    Sighting,
    log_line,
    log_tail,
    sighting_from_inspect,
)
from aegis.supervision.repository import LogLine, log_from_json, log_to_json

WEBHOOK = ("https://discord.com/api/webhooks/112233445566778899/"
           "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789_-abcdefghij")
AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_a_line_longer_than_300_characters_is_cut_to_300_keeping_its_start() -> None:
    text = "ERROR " + "x" * 500
    kept = log_line(text)
    assert len(kept) == LOG_LINE_CHARS == 300
    assert kept.startswith("ERROR xxx")
    assert kept.endswith("…")
    assert log_line("y" * 300) == "y" * 300  # at the limit: whole
    assert log_line("short line\r") == "short line"


def test_a_line_is_redacted_as_the_rest_of_aegis_before_it_is_cut() -> None:
    settings = load_settings({"AEGIS_HOST": "web-01", "DISCORD_WEBHOOK_URL": WEBHOOK})
    secrets = secret_values(settings)
    assert log_line(f"posting to {WEBHOOK}", secrets) == "posting to https://discord.com/***"
    assert log_line("connect postgres://app:s3cret@db:5432/app failed") == \
        "connect postgres://app:***@db:5432/app failed"
    assert log_line("login with password=hunter2 ok") == "login with password=*** ok"
    # a secret across the cut is masked whole, not left half shown
    cut = log_line("x" * 280 + " password=hunter2hunter2hunter2")
    assert "hunter" not in cut
    assert len(cut) <= LOG_LINE_CHARS


def test_terminal_colours_and_control_characters_are_removed() -> None:
    assert log_line("\x1b[31mERROR\x1b[0m db down\x07 \x1b]0;title\x07x\ty") == \
        "ERROR db down x\ty"


def test_a_container_without_logs_to_read_says_so_without_asking_the_engine() -> None:
    seen = Sighting(id="c" * 64, name="quiet", image="img", labels={}, status="running",
                    health="unhealthy", has_healthcheck=True, log_driver="none")
    # no client at all: the driver alone tells it
    assert log_tail(None, seen) == LogTail(
        unavailable="log driver none: the engine keeps no logs to read")


def test_the_driver_is_read_from_an_inspect() -> None:
    attrs = {"Id": "c" * 64, "Name": "/web",
             "HostConfig": {"LogConfig": {"Type": "syslog", "Config": {}}}}
    assert sighting_from_inspect(attrs).log_driver == "syslog"
    assert sighting_from_inspect({"Id": "c" * 64}).log_driver == ""


def test_details_carry_the_lines_or_why_there_are_none() -> None:
    assert LogTail(lines=("a", "b")).details() == {"log_tail": ["a", "b"]}
    assert LogTail().details() == {"log_tail": []}
    assert LogTail(unavailable="log driver none: x").details() == {
        "log_tail_unavailable": "log driver none: x"}
    assert LogTail.from_details({"log_tail": ["a"]}) == LogTail(lines=("a",))
    assert LogTail.from_details({"log_tail_unavailable": "why"}) == LogTail(unavailable="why")
    assert LogTail.from_details({"probe": "x"}) is None


def test_an_incident_line_keeps_its_log_tail_and_old_lines_still_load() -> None:
    lines = (LogLine(AT, IncidentStep.RESTARTED, "r", probe="p",
                     log_tail=LogTail(lines=("boom", ""))),
             LogLine(AT, IncidentStep.ESCALATED, "e",
                     log_tail=LogTail(unavailable="log driver none: x")),
             LogLine(AT, IncidentStep.STRUCK, "s"))
    stored = log_to_json(lines)
    assert stored[0]["log_tail"] == ["boom", ""]
    assert stored[1]["log_tail_unavailable"] == "log driver none: x"
    assert "log_tail" not in stored[2]
    assert "log_tail_unavailable" not in stored[2]
    assert log_from_json(stored) == lines
    # a row written before aegis read logs
    old = [{"at": AT.isoformat(), "step": "escalated", "text": "e", "probe": "p",
            "alerted": True}]
    assert log_from_json(old)[0].log_tail is None
