from dataclasses import dataclass
from datetime import datetime

import pytest

from aegis.scheduling import triggers
from aegis.scheduling.job_settings import MisfirePolicy
from aegis.scheduling.scheduler import RUN_ALL_LIMIT, SlotPlan, plan_due, plan_start
from aegis.scheduling.triggers import Trigger, count_slots
from tests.support.clock import t

RUN_ONCE, SKIP, RUN_ALL = MisfirePolicy.RUN_ONCE, MisfirePolicy.SKIP, MisfirePolicy.RUN_ALL


def ts(*texts: str) -> tuple[datetime, ...]:
    return tuple(t(text) for text in texts)


FIVE_MIN = triggers.every(minutes=5)
DAILY_6 = triggers.daily("06:00")
BERLIN_0230 = triggers.daily("02:30", timezone="Europe/Berlin")


@pytest.mark.parametrize(("trigger", "last", "now", "grace_s", "expected"), [
    # no history: an interval job runs its current slot, a daily job waits
    (FIVE_MIN, None, "2026-01-01 10:02:00", 300, SlotPlan(run=ts("2026-01-01 10:00:00"))),
    (DAILY_6, None, "2026-01-01 06:01:00", 300, SlotPlan()),
    # nothing missed
    (FIVE_MIN, "2026-01-01 10:00:00", "2026-01-01 10:04:59", 300, SlotPlan()),
    # the latest slot within grace, nothing older missed: catch it up
    (FIVE_MIN, "2026-01-01 10:00:00", "2026-01-01 10:06:00", 300,
     SlotPlan(run=ts("2026-01-01 10:05:00"))),
    # within grace, with older slots missed: run the latest, one 'missed' row for the rest
    (FIVE_MIN, "2026-01-01 10:00:00", "2026-01-01 11:01:00", 300,
     SlotPlan(run=ts("2026-01-01 11:00:00"), missed_first=t("2026-01-01 10:05:00"),
              missed_last=t("2026-01-01 10:55:00"), missed_count=11)),
    # beyond grace: nothing runs, the whole gap is one 'missed' row
    (DAILY_6, "2026-01-01 06:00:00", "2026-01-03 07:00:00", 300,
     SlotPlan(missed_first=t("2026-01-02 06:00:00"), missed_last=t("2026-01-03 06:00:00"),
              missed_count=2)),
    (DAILY_6, "2026-01-01 06:00:00", "2026-01-02 06:04:00", 300,
     SlotPlan(run=ts("2026-01-02 06:00:00"))),
    (DAILY_6, "2026-01-01 06:00:00", "2026-01-02 06:06:00", 300,
     SlotPlan(missed_first=t("2026-01-02 06:00:00"), missed_last=t("2026-01-02 06:00:00"),
              missed_count=1)),
    # a Berlin 02:30 job down over the night 02:30 did not exist: its slot was 01:00 UTC
    (BERLIN_0230, "2026-03-28 01:30:00", "2026-03-29 01:04:00", 300,
     SlotPlan(run=ts("2026-03-29 01:00:00"))),
])
def test_plan_start_run_once(
        trigger: Trigger, last: str | None, now: str, grace_s: float, expected: SlotPlan) -> None:
    assert plan_start(trigger, t(last) if last else None, t(now), grace_s) == expected
    assert plan_start(trigger, t(last) if last else None, t(now), grace_s, RUN_ONCE) == expected


@dataclass(frozen=True)
class StartCase:
    """A job's trigger, its last recorded slot, the daemon's start, the grace and the
    policy; and the plan expected."""

    trigger: Trigger
    last: str | None
    now: str
    grace_s: float
    misfire: MisfirePolicy
    expected: SlotPlan


BY_POLICY: list[tuple[Trigger, str | None, str, float, MisfirePolicy, SlotPlan]] = [
    # skip: nothing that fell due while no daemon ran is run, even within the grace
    (FIVE_MIN, "2026-01-01 10:00:00", "2026-01-01 10:06:00", 300, SKIP,
     SlotPlan(missed_first=t("2026-01-01 10:05:00"), missed_last=t("2026-01-01 10:05:00"),
              missed_count=1)),
    (FIVE_MIN, "2026-01-01 10:00:00", "2026-01-01 11:01:00", 3600, SKIP,
     SlotPlan(missed_first=t("2026-01-01 10:05:00"), missed_last=t("2026-01-01 11:00:00"),
              missed_count=12)),
    # ... but a job with no history missed nothing: an interval job runs its current slot
    (FIVE_MIN, None, "2026-01-01 10:02:00", 300, SKIP, SlotPlan(run=ts("2026-01-01 10:00:00"))),
    # run_all: every slot within the grace, oldest first; older ones are one 'missed' row
    (DAILY_6, "2026-01-01 06:00:00", "2026-01-04 07:00:00", 2 * 86400, RUN_ALL,
     SlotPlan(run=ts("2026-01-03 06:00:00", "2026-01-04 06:00:00"),
              missed_first=t("2026-01-02 06:00:00"), missed_last=t("2026-01-02 06:00:00"),
              missed_count=1)),
    (FIVE_MIN, "2026-01-01 10:00:00", "2026-01-01 10:16:00", 3600, RUN_ALL,
     SlotPlan(run=ts("2026-01-01 10:05:00", "2026-01-01 10:10:00", "2026-01-01 10:15:00"))),
    # run_all is bounded: the latest RUN_ALL_LIMIT slots run, the rest are 'missed'
    (FIVE_MIN, "2026-01-01 00:00:00", "2026-01-01 12:00:00", 86400, RUN_ALL,
     SlotPlan(run=tuple(t(f"2026-01-01 {h:02d}:{m:02d}:00") for h, m in
                        [(10, 5 * i) for i in range(1, 12)] + [(11, 5 * i) for i in range(12)]
                        + [(12, 0)]),
              missed_first=t("2026-01-01 00:05:00"), missed_last=t("2026-01-01 10:00:00"),
              missed_count=120)),
    # run_all with nothing within the grace runs nothing
    (DAILY_6, "2026-01-01 06:00:00", "2026-01-03 07:00:00", 300, RUN_ALL,
     SlotPlan(missed_first=t("2026-01-02 06:00:00"), missed_last=t("2026-01-03 06:00:00"),
              missed_count=2)),
]


@pytest.mark.parametrize("case", [StartCase(*case) for case in BY_POLICY])
def test_plan_start_by_policy(case: StartCase) -> None:
    plan = plan_start(case.trigger, t(case.last) if case.last else None, t(case.now),
                      case.grace_s, case.misfire)
    assert plan == case.expected
    assert len(plan.run) <= RUN_ALL_LIMIT


@pytest.mark.parametrize(("first", "now", "grace_s", "misfire", "expected"), [
    # on time: the slot waited for runs, whatever the policy
    ("2026-01-01 10:00:00", "2026-01-01 10:00:00.004", 300, RUN_ONCE,
     SlotPlan(run=ts("2026-01-01 10:00:00"))),
    ("2026-01-01 10:00:00", "2026-01-01 10:00:00.004", 300, SKIP,
     SlotPlan(run=ts("2026-01-01 10:00:00"))),
    ("2026-01-01 10:00:00", "2026-01-01 10:00:00.004", 300, RUN_ALL,
     SlotPlan(run=ts("2026-01-01 10:00:00"))),
    # the loop ran at 10:17 for the 10:00 slot: the latest (10:15) runs once, the three it
    # slept through are one 'missed' row
    ("2026-01-01 10:00:00", "2026-01-01 10:17:00", 300, RUN_ONCE,
     SlotPlan(run=ts("2026-01-01 10:15:00"), missed_first=t("2026-01-01 10:00:00"),
              missed_last=t("2026-01-01 10:10:00"), missed_count=3)),
    ("2026-01-01 10:00:00", "2026-01-01 10:17:00", 300, SKIP,
     SlotPlan(run=ts("2026-01-01 10:15:00"), missed_first=t("2026-01-01 10:00:00"),
              missed_last=t("2026-01-01 10:10:00"), missed_count=3)),
    # run_all runs the ones within the grace, oldest first
    ("2026-01-01 10:00:00", "2026-01-01 10:17:00", 600, RUN_ALL,
     SlotPlan(run=ts("2026-01-01 10:10:00", "2026-01-01 10:15:00"),
              missed_first=t("2026-01-01 10:00:00"), missed_last=t("2026-01-01 10:05:00"),
              missed_count=2)),
    # a single slot reached past its grace is missed
    ("2026-01-01 10:00:00", "2026-01-01 10:04:59", 60, RUN_ONCE,
     SlotPlan(missed_first=t("2026-01-01 10:00:00"), missed_last=t("2026-01-01 10:00:00"),
              missed_count=1)),
])
def test_plan_due(
        first: str, now: str, grace_s: float, misfire: MisfirePolicy, expected: SlotPlan) -> None:
    assert plan_due(FIVE_MIN, t(first), t(now), grace_s, misfire) == expected


def test_count_slots() -> None:
    assert count_slots(FIVE_MIN, t("2026-01-01 00:00:00"), t("2026-01-01 23:55:00")) == 288
    assert count_slots(triggers.cron("0 * * * *"), t("2026-01-01 00:00:00"),
                       t("2026-01-01 23:00:00")) == 24
    assert count_slots(DAILY_6, t("2026-01-02 06:00:00"), t("2026-01-01 06:00:00")) == 0
    # an hourly cron in Berlin on the night 02:00 does not exist: 23 slots that day
    hourly = triggers.cron("0 * * * *", timezone="Europe/Berlin")
    assert count_slots(hourly, t("2026-03-28 23:00:00"), t("2026-03-29 21:00:00")) == 23
