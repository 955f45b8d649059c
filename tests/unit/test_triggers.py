from collections.abc import Callable
from datetime import datetime

import pytest

from aegis.scheduling import triggers
from aegis.scheduling.triggers import Every, Trigger, daily, spread
from tests.support.clock import t


@pytest.mark.parametrize(("trigger", "moment", "expected_next", "expected_latest"), [
    # aligned intervals: slots on the clock, whatever the moment
    (triggers.every(minutes=5), "2026-01-01 10:02:17", "2026-01-01 10:05:00",
     "2026-01-01 10:00:00"),
    (triggers.every(minutes=5), "2026-01-01 10:05:00", "2026-01-01 10:10:00",
     "2026-01-01 10:05:00"),
    (triggers.every(seconds=1), "2026-01-01 10:00:00.5", "2026-01-01 10:00:01",
     "2026-01-01 10:00:00"),
    (triggers.every(hours=1), "2026-12-31 23:59:59", "2027-01-01 00:00:00",
     "2026-12-31 23:00:00"),
    (triggers.every(minutes=5), "2028-02-29 23:58:00", "2028-03-01 00:00:00",
     "2028-02-29 23:55:00"),
    # daily
    (triggers.daily("06:00"), "2026-01-01 05:59:59", "2026-01-01 06:00:00",
     "2025-12-31 06:00:00"),
    (triggers.daily("06:00"), "2026-01-01 06:00:00", "2026-01-02 06:00:00",
     "2026-01-01 06:00:00"),
    (triggers.daily("00:30"), "2026-02-28 23:00:00", "2026-03-01 00:30:00",
     "2026-02-28 00:30:00"),
    (triggers.daily("22:00"), "2028-02-28 22:00:01", "2028-02-29 22:00:00",
     "2028-02-28 22:00:00"),
    # weekly: 2026-01-05 is a Monday
    (triggers.weekly("monday", "06:00"), "2026-01-05 06:00:00", "2026-01-12 06:00:00",
     "2026-01-05 06:00:00"),
    (triggers.weekly("sun", "23:00"), "2026-01-05 00:00:00", "2026-01-11 23:00:00",
     "2026-01-04 23:00:00"),
    # cron, UTC
    (triggers.cron("30 0 * * *"), "2026-01-01 00:29:59", "2026-01-01 00:30:00",
     "2025-12-31 00:30:00"),
    (triggers.cron("30 0 * * *"), "2026-01-01 00:30:00", "2026-01-02 00:30:00",
     "2026-01-01 00:30:00"),
    (triggers.cron("0 12 L * *"), "2026-02-10 00:00:00", "2026-02-28 12:00:00",
     "2026-01-31 12:00:00"),
    (triggers.cron("0 0 29 2 *"), "2026-03-01 00:00:00", "2028-02-29 00:00:00",
     "2024-02-29 00:00:00"),
    (triggers.cron("*/15 * * * *"), "2026-01-31 23:59:00", "2026-02-01 00:00:00",
     "2026-01-31 23:45:00"),
])
def test_trigger_slots(
        trigger: Trigger, moment: str, expected_next: str, expected_latest: str) -> None:
    assert trigger.next_after(t(moment)) == t(expected_next)
    assert trigger.latest_at_or_before(t(moment)) == t(expected_latest)


def test_once_fires_once() -> None:
    trigger = triggers.once(t("2026-01-01 12:00:00"))
    assert trigger.next_after(t("2026-01-01 11:00:00")) == t("2026-01-01 12:00:00")
    assert trigger.next_after(t("2026-01-01 12:00:00")) is None
    assert trigger.latest_at_or_before(t("2026-01-01 11:59:59")) is None
    assert trigger.latest_at_or_before(t("2026-01-02 00:00:00")) == t("2026-01-01 12:00:00")


def test_intervals_do_not_drift() -> None:
    trigger = triggers.every(minutes=5)
    slot = t("2026-01-01 00:00:00")
    for _ in range(288 * 3):
        slot = trigger.next_after(slot)
    assert slot == t("2026-01-04 00:00:00")


@pytest.mark.parametrize(("trigger", "words"), [
    (triggers.every(minutes=5), "every 5 minutes"),
    (triggers.every(seconds=1), "every second"),
    (triggers.every(hours=1), "every hour"),
    (triggers.every(seconds=90), "every 90 seconds"),
    (triggers.daily("06:00"), "daily at 06:00 UTC"),
    (triggers.weekly("fri", "17:30"), "weekly on Friday at 17:30 UTC"),
    (triggers.cron("30 0 * * *"), "cron 30 0 * * * UTC"),
    (triggers.daily("06:00", timezone="Europe/Berlin"), "daily at 06:00 Europe/Berlin"),
    (triggers.cron("0 9 * * 1-5", timezone="America/New_York"),
     "cron 0 9 * * 1-5 America/New_York"),
])
def test_describe(trigger: Trigger, words: str) -> None:
    assert trigger.describe() == words


@pytest.mark.parametrize("bad", [
    lambda: triggers.every(seconds=0),
    lambda: triggers.daily("25:00"),
    lambda: triggers.daily("6h"),
    lambda: triggers.weekly("someday", "06:00"),
    lambda: triggers.cron("* * *"),
    lambda: triggers.cron("61 * * * *"),
])
def test_bad_triggers_are_refused(bad: Callable[[], object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        bad()


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        triggers.every(minutes=5).next_after(datetime(2026, 1, 1))


def test_an_interval_moved_into_its_period() -> None:
    trigger = Every(60, offset_s=37)
    assert trigger.latest_at_or_before(t("2026-01-01 00:00:36")) == t("2025-12-31 23:59:37")
    assert trigger.latest_at_or_before(t("2026-01-01 00:00:37")) == t("2026-01-01 00:00:37")
    assert trigger.next_after(t("2026-01-01 00:00:37")) == t("2026-01-01 00:01:37")
    assert trigger.describe() == "every minute, 37s into it"
    with pytest.raises(ValueError, match="within its period"):
        Every(60, offset_s=60)


def test_spread_is_a_stable_offset_of_intervals_only() -> None:
    first = spread(Every(300), "db.dump")
    assert first == spread(Every(300), "db.dump")
    assert isinstance(first, Every)
    assert first.offset_s == int(first.offset_s)
    assert 0 <= first.offset_s < 300
    assert spread(Every(1), "db.dump") == Every(1)
    daily_trigger = daily("03:00")
    assert spread(daily_trigger, "db.dump") is daily_trigger
