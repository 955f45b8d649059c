from datetime import UTC, datetime

import pytest

from aegis.scheduling import triggers
from aegis.scheduling.scheduler import StartPlan, count_slots, next_slot, plan_start


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


FIVE_MIN = triggers.every(minutes=5)
DAILY_6 = triggers.daily("06:00")


@pytest.mark.parametrize(("trigger", "last", "now", "grace_s", "expected"), [
    # no history: an interval job runs its current slot, a daily job waits
    (FIVE_MIN, None, "2026-01-01 10:02:00", 300,
     StartPlan(run_slot=t("2026-01-01 10:00:00"))),
    (DAILY_6, None, "2026-01-01 06:01:00", 300, StartPlan()),
    # nothing missed
    (FIVE_MIN, "2026-01-01 10:00:00", "2026-01-01 10:04:59", 300, StartPlan()),
    # the latest slot within grace, nothing older missed: catch it up
    (FIVE_MIN, "2026-01-01 10:00:00", "2026-01-01 10:06:00", 300,
     StartPlan(run_slot=t("2026-01-01 10:05:00"))),
    # within grace, with older slots missed: run the latest, one 'missed' row for the rest
    (FIVE_MIN, "2026-01-01 10:00:00", "2026-01-01 11:01:00", 300,
     StartPlan(run_slot=t("2026-01-01 11:00:00"), missed_first=t("2026-01-01 10:05:00"),
               missed_last=t("2026-01-01 10:55:00"), missed_count=11)),
    # beyond grace: nothing runs, the whole gap is one 'missed' row
    (DAILY_6, "2026-01-01 06:00:00", "2026-01-03 07:00:00", 300,
     StartPlan(missed_first=t("2026-01-02 06:00:00"), missed_last=t("2026-01-03 06:00:00"),
               missed_count=2)),
    (DAILY_6, "2026-01-01 06:00:00", "2026-01-02 06:04:00", 300,
     StartPlan(run_slot=t("2026-01-02 06:00:00"))),
    (DAILY_6, "2026-01-01 06:00:00", "2026-01-02 06:06:00", 300,
     StartPlan(missed_first=t("2026-01-02 06:00:00"), missed_last=t("2026-01-02 06:00:00"),
               missed_count=1)),
])
def test_plan_start(trigger, last, now, grace_s, expected):
    assert plan_start(trigger, t(last) if last else None, t(now), grace_s) == expected


def test_next_slot_coalesces_when_the_loop_fell_behind():
    # the loop ran the 10:00 slot at 10:17: the next one to wait for is 10:15 (due now),
    # not 10:05 and 10:10 one after the other
    assert next_slot(FIVE_MIN, t("2026-01-01 10:00:00"), t("2026-01-01 10:17:00")) == \
        t("2026-01-01 10:15:00")
    assert next_slot(FIVE_MIN, t("2026-01-01 10:00:00"), t("2026-01-01 10:00:01")) == \
        t("2026-01-01 10:05:00")


def test_count_slots():
    assert count_slots(FIVE_MIN, t("2026-01-01 00:00:00"), t("2026-01-01 23:55:00")) == 288
    assert count_slots(triggers.cron("0 * * * *"), t("2026-01-01 00:00:00"),
                       t("2026-01-01 23:00:00")) == 24
    assert count_slots(DAILY_6, t("2026-01-02 06:00:00"), t("2026-01-01 06:00:00")) == 0
