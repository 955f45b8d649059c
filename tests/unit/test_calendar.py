"""Time zones and daylight saving, as pure functions: the wall-clock rule, calendar
triggers across transitions in four zones, day bounds, the silence watch's clock, and the
AEGIS_TIMEZONE setting."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from aegis.core.clock import day_bounds, instant, offset_text, wall_time, zone
from aegis.core.config import load_settings
from aegis.core.errors import ConfigError, UsageError
from aegis.scheduling import triggers
from aegis.scheduling.deadlines import changes, silent_after
from aegis.scheduling.job_settings import MisfirePolicy, job_overrides
from aegis.scheduling.registry import Registry, overridden
from aegis.scheduling.repository import Watch
from aegis.scheduling.triggers import Trigger
from tests.support.clock import t

BERLIN, NEW_YORK = zone("Europe/Berlin"), zone("America/New_York")
LORD_HOWE, APIA = zone("Australia/Lord_Howe"), zone("Pacific/Apia")


def wall(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(("local", "tz", "expected"), [
    # an ordinary time
    ("2026-03-28 02:30", BERLIN, "2026-03-28 01:30"),
    # spring forward: 02:00-03:00 does not exist; every time in it is the jump, 03:00 CEST
    ("2026-03-29 02:00", BERLIN, "2026-03-29 01:00"),
    ("2026-03-29 02:30", BERLIN, "2026-03-29 01:00"),
    ("2026-03-29 02:59:59", BERLIN, "2026-03-29 01:00"),
    ("2026-03-29 03:00", BERLIN, "2026-03-29 01:00"),
    ("2026-03-29 01:59", BERLIN, "2026-03-29 00:59"),
    # fall back: 02:00-03:00 happens twice; the first occurrence (CEST) counts
    ("2026-10-25 02:30", BERLIN, "2026-10-25 00:30"),
    ("2026-10-25 03:00", BERLIN, "2026-10-25 02:00"),
    ("2026-11-01 01:30", NEW_YORK, "2026-11-01 05:30"),
    ("2026-03-08 02:30", NEW_YORK, "2026-03-08 07:00"),
    # a 30-minute shift: 02:00-02:30 skipped in October, 01:30-02:00 repeated in April
    ("2026-10-04 02:15", LORD_HOWE, "2026-10-03 15:30"),
    ("2026-04-05 01:45", LORD_HOWE, "2026-04-04 14:45"),
    # a whole day skipped: 2011-12-30 never happened in Samoa
    ("2011-12-30 06:00", APIA, "2011-12-30 10:00"),
    ("2011-12-31 00:00", APIA, "2011-12-30 10:00"),
    ("2011-12-29 23:59", APIA, "2011-12-30 09:59"),
])
def test_a_wall_clock_time_is_one_instant(local: str, tz: ZoneInfo, expected: str) -> None:
    assert instant(wall(local), tz) == t(expected)


def night(trigger: triggers.Trigger, start: str, end: str) -> list[datetime]:
    """Every slot of ``trigger`` in [start, end), by next_after from just before start."""
    slots: list[datetime] = []
    slot = trigger.next_after(t(start) - timedelta(microseconds=1))
    while slot is not None and slot < t(end):
        slots.append(slot)
        slot = trigger.next_after(slot)
    return slots


@pytest.mark.parametrize(("trigger", "start", "end", "expected"), [
    # Berlin, spring forward (2026-03-29): 02:30 does not exist, it runs at 03:00 CEST
    (triggers.daily("02:30", timezone="Europe/Berlin"), "2026-03-27", "2026-03-31",
     ["2026-03-27 01:30", "2026-03-28 01:30", "2026-03-29 01:00", "2026-03-30 00:30"]),
    # Berlin, fall back (2026-10-25): 02:30 happens twice, it runs at the first
    (triggers.daily("02:30", timezone="Europe/Berlin"), "2026-10-23", "2026-10-27",
     ["2026-10-23 00:30", "2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30"]),
    # New York, spring forward (2026-03-08) and fall back (2026-11-01)
    (triggers.daily("02:30", timezone="America/New_York"), "2026-03-07", "2026-03-10",
     ["2026-03-07 07:30", "2026-03-08 07:00", "2026-03-09 06:30"]),
    (triggers.daily("01:30", timezone="America/New_York"), "2026-10-31", "2026-11-03",
     ["2026-10-31 05:30", "2026-11-01 05:30", "2026-11-02 06:30"]),
    # Lord Howe: 30-minute shifts (2026-04-05 back, 2026-10-04 forward)
    (triggers.daily("01:45", timezone="Australia/Lord_Howe"), "2026-04-03", "2026-04-06",
     ["2026-04-03 14:45", "2026-04-04 14:45", "2026-04-05 15:15"]),
    (triggers.daily("02:15", timezone="Australia/Lord_Howe"), "2026-10-02", "2026-10-05",
     ["2026-10-02 15:45", "2026-10-03 15:30", "2026-10-04 15:15"]),
    # Apia skipped 2011-12-30: that day's 06:00 runs once, at the first instant after
    (triggers.daily("06:00", timezone="Pacific/Apia"), "2011-12-28", "2012-01-01",
     ["2011-12-28 16:00", "2011-12-29 16:00", "2011-12-30 10:00", "2011-12-30 16:00",
      "2011-12-31 16:00"]),
    # weekly, Sunday 02:30 in Berlin, across the spring night
    (triggers.weekly("sunday", "02:30", timezone="Europe/Berlin"), "2026-03-20", "2026-04-06",
     ["2026-03-22 01:30", "2026-03-29 01:00", "2026-04-05 00:30"]),
    # cron in a local zone: the skipped hour's slots are one run at the jump ...
    (triggers.cron("0,30 * * * *", timezone="Europe/Berlin"), "2026-03-28 23:00",
     "2026-03-29 02:01",
     ["2026-03-28 23:00", "2026-03-28 23:30", "2026-03-29 00:00", "2026-03-29 00:30",
      "2026-03-29 01:00", "2026-03-29 01:30", "2026-03-29 02:00"]),
    # ... and the repeated hour's slots run once, the first time
    (triggers.cron("*/30 1-2 * * *", timezone="America/New_York"), "2026-11-01 04:00",
     "2026-11-01 09:00",
     ["2026-11-01 05:00", "2026-11-01 05:30", "2026-11-01 07:00", "2026-11-01 07:30"]),
    # intervals count real seconds: an hourly interval ignores the change
    (triggers.every(hours=1), "2026-10-24 23:00", "2026-10-25 03:00",
     ["2026-10-24 23:00", "2026-10-25 00:00", "2026-10-25 01:00", "2026-10-25 02:00"]),
])
def test_slots_across_transitions(
        trigger: Trigger, start: str, end: str, expected: list[str]) -> None:
    slots = night(trigger, start, end)
    assert slots == [t(text) for text in expected]
    for slot in slots:  # each slot is its own latest, and the one before is strictly older
        assert trigger.latest_at_or_before(slot) == slot
        assert trigger.latest_at_or_before(slot + timedelta(seconds=59)) == slot
        assert triggers.slot_before(trigger, slot) < slot  # type: ignore[operator]


def test_latest_slot_in_the_repeated_hour_is_found_from_the_second_occurrence() -> None:
    every_30 = triggers.cron("*/30 * * * *", timezone="America/New_York")
    # 06:40 UTC is 01:40 EST, the second 01:40: the 01:30 and 01:00 slots ran an hour ago
    # (as EDT); the latest slot at or before it is 01:30 EDT, and the next is 02:00 EST
    assert every_30.latest_at_or_before(t("2026-11-01 06:40")) == t("2026-11-01 05:30")
    assert every_30.next_after(t("2026-11-01 06:40")) == t("2026-11-01 07:00")


@pytest.mark.parametrize(("day", "tz", "start", "end", "hours"), [
    (date(2026, 3, 1), zone("UTC"), "2026-03-01 00:00", "2026-03-02 00:00", 24),
    (date(2026, 3, 29), BERLIN, "2026-03-28 23:00", "2026-03-29 22:00", 23),
    (date(2026, 10, 25), BERLIN, "2026-10-24 22:00", "2026-10-25 23:00", 25),
    (date(2026, 4, 5), LORD_HOWE, "2026-04-04 13:00", "2026-04-05 13:30", 24.5),
    (date(2011, 12, 30), APIA, "2011-12-30 10:00", "2011-12-30 10:00", 0),
])
def test_day_bounds(day: date, tz: ZoneInfo, start: str, end: str, hours: float) -> None:
    assert day_bounds(day, tz) == (t(start), t(end))
    assert (t(end) - t(start)).total_seconds() == hours * 3600


def test_later_on_clock_counts_wall_time_for_calendar_triggers_and_seconds_for_intervals() -> None:
    evening = triggers.daily("22:00", timezone="Europe/Berlin")
    # 22:00 CEST on the night the clocks go back, plus 24h30m: 22:30 CET the next day
    assert triggers.later_on_clock(evening, t("2026-10-24 20:00"), 24.5 * 3600) == \
        t("2026-10-25 21:30")
    assert triggers.later_on_clock(triggers.every(minutes=5), t("2026-10-24 20:00"),
                                   24.5 * 3600) == t("2026-10-25 20:30")


def watch(last_ok: str | None, *, silent: str | None = None, finished: str | None = None,
          paused: bool = False) -> Watch:
    return Watch("evening_summary", paused, t("2026-10-01 00:00"),
                 t(silent) if silent else None, t(last_ok) if last_ok else None,
                 t(finished) if finished else None)


def test_the_silence_watch_decides_on_the_jobs_clock() -> None:
    registry = Registry(zone=BERLIN)
    job = registry.add("evening_summary", lambda ctx: None, triggers.daily("22:00"),
                       expect_every_s=24.5 * 3600)
    # the 2026-10-24 22:00 CEST run succeeded; the next night is 25 hours long
    ok = watch("2026-10-24 20:00", finished="2026-10-24 20:00:03")
    assert silent_after(job.trigger, 24.5 * 3600, ok) == t("2026-10-25 21:30")
    assert changes([job], {job.id: ok}, t("2026-10-25 21:29")) == ([], [])
    assert changes([job], {job.id: ok}, t("2026-10-25 21:31")) == ([(job, ok)], [])
    paused = watch("2026-10-24 20:00", paused=True)
    assert changes([job], {job.id: paused}, t("2026-10-30 00:00")) == ([], [])
    # silent since 21:31; a success after that is a resumption, one before it is not
    resumed = watch("2026-10-25 21:00", silent="2026-10-25 21:31",
                    finished="2026-10-25 21:40")
    assert changes([job], {job.id: resumed}, t("2026-10-25 21:41")) == ([], [(job, resumed)])
    stale = watch("2026-10-24 20:00", silent="2026-10-25 21:31",
                  finished="2026-10-24 20:00:03")
    assert changes([job], {job.id: stale}, t("2026-10-26 00:00")) == ([], [])


def test_the_registry_puts_calendar_triggers_on_aegis_timezone_unless_the_job_says() -> None:
    registry = Registry(zone=BERLIN)
    default = registry.add("a", lambda ctx: None, triggers.daily("06:00"))
    own = registry.add("b", lambda ctx: None, triggers.daily("06:00", timezone="Asia/Tokyo"))
    job_level = registry.add("c", lambda ctx: None, triggers.cron("0 6 * * *"),
                             timezone="America/New_York")
    interval = registry.add("d", lambda ctx: None, triggers.every(minutes=5))
    assert default.trigger.describe() == "daily at 06:00 Europe/Berlin"
    assert own.trigger.describe() == "daily at 06:00 Asia/Tokyo"
    assert (job_level.zone, job_level.trigger.describe()) == (NEW_YORK,
                                                               "cron 0 6 * * * America/New_York")
    assert (interval.zone, interval.trigger) == (BERLIN, triggers.every(minutes=5))
    with pytest.raises(UsageError, match="'Mars/Olympus' is not a time zone"):
        registry.add("e", lambda ctx: None, triggers.daily("06:00"), timezone="Mars/Olympus")
    with pytest.raises(UsageError, match="misfire"):
        registry.add("f", lambda ctx: None, triggers.daily("06:00"), misfire="sometimes")
    with pytest.raises(UsageError, match="max_runtime and expect_every must be > 0"):
        registry.add("g", lambda ctx: None, triggers.daily("06:00"), max_runtime_s=-1)


def test_job_overrides_keep_or_change_the_zone_and_switch_deadlines_off() -> None:
    registry = Registry(zone=BERLIN)
    job = registry.add("evening_summary", lambda ctx: None, triggers.daily("22:00"),
                       expect_every_s=24.5 * 3600, max_runtime_s=300)
    settings = load_settings({"AEGIS_JOB__EVENING_SUMMARY__AT": "21:00",
                              "AEGIS_JOB__EVENING_SUMMARY__MISFIRE": "run_all",
                              "AEGIS_JOB__EVENING_SUMMARY__EXPECT_EVERY": "off"})
    changed = overridden(job, job_overrides(settings)["evening_summary"])
    assert changed.trigger.describe() == "daily at 21:00 Europe/Berlin"
    assert (changed.misfire, changed.expect_every_s, changed.max_runtime_s) == (
        MisfirePolicy.RUN_ALL, None, 300)
    moved = overridden(job, job_overrides(load_settings({
        "AEGIS_JOB__EVENING_SUMMARY__TIMEZONE": "America/New_York"}))["evening_summary"])
    assert (moved.zone, moved.trigger.describe()) == (NEW_YORK,
                                                       "daily at 22:00 America/New_York")


@pytest.mark.parametrize(("raw", "key"), [
    ("Europe/Berlin", "Europe/Berlin"), (" America/New_York ", "America/New_York"),
    ("utc", "UTC"), ("UTC", "UTC"), ("Etc/GMT+5", "Etc/GMT+5"),
])
def test_aegis_timezone_accepts_iana_names(raw: str, key: str) -> None:
    settings = load_settings({"AEGIS_TIMEZONE": raw})
    assert settings.timezone == key
    assert settings.zone.key == key


@pytest.mark.parametrize("raw", ["Mars/Olympus", "Europe", "/etc/passwd", "../etc/passwd",
                                 "CET+1"])
def test_an_unknown_zone_is_a_configuration_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"AEGIS_TIMEZONE": raw})
    assert str(caught.value).startswith("AEGIS_TIMEZONE")
    assert "is not a time zone" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_default_zone_is_utc() -> None:
    assert load_settings({}).zone.key == "UTC"


def test_offset_text() -> None:
    assert offset_text(t("2026-07-01 12:00").astimezone(BERLIN)) == "+02:00"
    assert offset_text(t("2026-07-01 12:00").astimezone(NEW_YORK)) == "-04:00"
    assert offset_text(t("2026-07-01 12:00").astimezone(LORD_HOWE)) == "+10:30"
    assert offset_text(t("2026-07-01 12:00")) == "+00:00"


# --- the worked tables of docs/jobs.md ---

DOCS = Path(__file__).resolve().parents[2] / "docs" / "jobs.md"
DOC_TRIGGERS = ('daily("01:30")', 'daily("02:30")', 'daily("03:00")',
                'cron("0,30 1-3 * * *")', 'every(hours=1)')
DOC_NIGHTS = {"2026-03-29": "the clocks go forward, 02:00 CET becomes 03:00 CEST",
              "2026-10-25": "the clocks go back, 03:00 CEST becomes 02:00 CET"}


def doc_trigger(text: str) -> triggers.Trigger:
    name, _, args = text.partition("(")
    if name == "every":
        return triggers.every(hours=1)
    made = triggers.daily(args.strip('")')) if name == "daily" else \
        triggers.cron(args.strip('")'))
    return triggers.in_zone(made, BERLIN)


def night_rows(text: str, day: date) -> list[str]:
    """One row per slot of the trigger ``text`` from 00:00 to 05:00 Berlin time."""
    trigger = doc_trigger(text)
    start, _ = day_bounds(day, BERLIN)
    end = instant(datetime.combine(day, datetime.min.time()) + timedelta(hours=5), BERLIN)
    walls: dict[datetime, list[str]] = {}
    if isinstance(trigger, triggers.WallClock):
        moment = datetime.combine(day, datetime.min.time())
        limit = moment.replace(hour=5)
        while (moment := trigger.wall_after(moment)) < limit:
            note = ""
            if wall_time(instant(moment, BERLIN), BERLIN) != moment:
                note = " (skipped)"
            elif moment.replace(tzinfo=BERLIN, fold=1).utcoffset() != \
                    moment.replace(tzinfo=BERLIN).utcoffset():
                note = " (first of two)"
            walls.setdefault(instant(moment, BERLIN), []).append(f"{moment:%H:%M}{note}")
    slots = sorted(walls) if walls else night(trigger, start.strftime("%Y-%m-%d %H:%M"),
                                               end.strftime("%Y-%m-%d %H:%M"))
    rows = []
    for index, slot in enumerate(slots):
        local = slot.astimezone(BERLIN)
        name = f"`{text}`" if index == 0 else ""
        rows.append(f"| {name} | {', '.join(walls.get(slot, ['—']))} | {slot:%m-%d %H:%M} | "
                    f"{local:%H:%M} {local.tzname()} |")
    return rows


def night_block(day_text: str) -> str:
    day = date.fromisoformat(day_text)
    lines = [f"<!-- dst-night:{day_text}:start -->",
             f"**{day:%A %d %B %Y}**, Europe/Berlin: {DOC_NIGHTS[day_text]}. Slots from "
             "00:00 to 05:00 Berlin time:", "",
             "| trigger | wall-clock slot | `scheduled_for` (UTC) | runs at (Berlin) |",
             "|---|---|---|---|"]
    for text in DOC_TRIGGERS:
        lines += night_rows(text, day)
    lines.append(f"<!-- dst-night:{day_text}:end -->")
    return "\n".join(lines)


@pytest.mark.parametrize("day_text", sorted(DOC_NIGHTS))
def test_the_worked_tables_in_the_docs_are_what_the_code_computes(day_text: str) -> None:
    """To refresh them after a change: AEGIS_REGENERATE_DOCS=1 pytest -k worked_tables."""
    start_mark = f"<!-- dst-night:{day_text}:start -->"
    end_mark = f"<!-- dst-night:{day_text}:end -->"
    docs = DOCS.read_text(encoding="utf-8")
    start, end = docs.index(start_mark), docs.index(end_mark) + len(end_mark)
    if os.environ.get("AEGIS_REGENERATE_DOCS") == "1":
        DOCS.write_text(docs[:start] + night_block(day_text) + docs[end:], encoding="utf-8")
        pytest.skip("docs/jobs.md regenerated: nothing compared")
    assert docs[start:end] == night_block(day_text), "docs/jobs.md is stale; see docstring"
