"""The scheduler: the ``schedule`` library decides when a slot is due, Postgres decides
whether this daemon runs it.

Each aegis job is a ``schedule.Job`` whose next run comes from its trigger (aligned
intervals, daily, weekly, cron in a time zone, once; slots are UTC instants) instead of
schedule's own arithmetic; ``run_pending`` then claims due slots and hands them to the
Runner. Slots that fell due without running are planned by the job's misfire policy.

A slot is claimed CLAIM_AHEAD_S before it is due (``claim_ahead``), so that the claim's
commit is not part of the job's start: on an idle host, whose cores sleep between ticks,
one round trip to the database takes milliseconds.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import schedule

from aegis.core.clock import utcnow
from aegis.core.errors import DatabaseUnavailable, StoreError
from aegis.core.logs import get_logger
from aegis.scheduling.heartbeat import live_since
from aegis.scheduling.job_settings import MisfirePolicy
from aegis.scheduling.registry import Job, JobContext, Registry
from aegis.scheduling.repository import (
    AdvertisedJob,
    JobRun,
    MissedGap,
    RunEnd,
    Runs,
    RunStatus,
    RunTrigger,
    WantedSlot,
)
from aegis.scheduling.runs import Execution, Runner
from aegis.scheduling.triggers import Every, Trigger, count_slots, slot_before
from aegis.storage.runtime import Runtime

# misfire="run_all" runs at most this many missed slots of a job at once
RUN_ALL_LIMIT = 24
# A slot is claimed this long before it is due (its job not running then, not paused).
CLAIM_AHEAD_S = 0.1
# A slot claimed ahead that did not come due here this long after its time (its job paused
# or removed meanwhile, or planned away by its misfire policy) is closed as skipped.
UNUSED_CLAIM_S = 5.0


# --- pure planning ---


@dataclass(frozen=True)
class SlotPlan:
    """What to do with slots of a job that fell due without running: run these, oldest
    first and one after another, and record the others as one 'missed' gap."""

    run: tuple[datetime, ...] = ()
    missed_first: datetime | None = None
    missed_last: datetime | None = None
    missed_count: int = 0


def plan_start(trigger: Trigger, last_slot: datetime | None, now: datetime,
               misfire_grace_s: float,
               misfire: MisfirePolicy = MisfirePolicy.RUN_ONCE) -> SlotPlan:
    """Catch-up at start, for the slots after ``last_slot`` that fell due while no daemon
    ran: with run_once the latest runs if within the grace, with skip none does, with
    run_all each within the grace does (the latest RUN_ALL_LIMIT); the others become one
    'missed' record. A job with no history missed nothing: it waits for its next slot,
    an interval job runs its current one."""
    latest = trigger.latest_at_or_before(now)
    if latest is None or (last_slot is not None and latest <= last_slot):
        return SlotPlan()
    if last_slot is None:
        current = isinstance(trigger, Every) and _within(latest, now, misfire_grace_s)
        return SlotPlan(run=(latest,) if current else ())
    first = trigger.next_after(last_slot)
    assert first is not None
    if misfire == MisfirePolicy.RUN_ALL:
        run = _all_within_grace(trigger, first, latest, now, misfire_grace_s)
    elif misfire == MisfirePolicy.RUN_ONCE:
        run = _latest_within_grace(latest, now, misfire_grace_s)
    else:
        run = ()
    return _plan_gap(trigger, first, latest, run)


def plan_due(trigger: Trigger, first: datetime, now: datetime, misfire_grace_s: float,
             misfire: MisfirePolicy = MisfirePolicy.RUN_ONCE) -> SlotPlan:
    """The loop reached ``first``, the slot it waited for: on time that slot alone is due,
    after a stalled loop later ones are too. The latest runs if within the grace (with
    run_all, each within it does), the others become one 'missed' record: a late loop runs
    a job once rather than once per slot it slept through."""
    latest = max(first, trigger.latest_at_or_before(now) or first)
    if misfire == MisfirePolicy.RUN_ALL:
        run = _all_within_grace(trigger, first, latest, now, misfire_grace_s)
    else:
        run = _latest_within_grace(latest, now, misfire_grace_s)
    return _plan_gap(trigger, first, latest, run)


def _plan_gap(trigger: Trigger, first: datetime, latest: datetime,
              run: tuple[datetime, ...]) -> SlotPlan:
    """Run ``run`` of the gap of slots ``first`` to ``latest``; the slots before them are
    one 'missed' record."""
    missed_last = slot_before(trigger, run[0]) if run else latest
    if missed_last is None or missed_last < first:
        return SlotPlan(run=run)
    return SlotPlan(run, first, missed_last, count_slots(trigger, first, missed_last))


def _latest_within_grace(latest: datetime, now: datetime,
                         grace_s: float) -> tuple[datetime, ...]:
    return (latest,) if _within(latest, now, grace_s) else ()


def _all_within_grace(trigger: Trigger, first: datetime, latest: datetime, now: datetime,
                      grace_s: float) -> tuple[datetime, ...]:
    """The slots of the gap within the grace, oldest first (the latest RUN_ALL_LIMIT)."""
    found: list[datetime] = []
    slot: datetime | None = latest
    while (slot is not None and slot >= first and _within(slot, now, grace_s)
           and len(found) < RUN_ALL_LIMIT):
        found.append(slot)
        slot = slot_before(trigger, slot)
    return tuple(reversed(found))


def _within(slot: datetime, now: datetime, grace_s: float) -> bool:
    return (now - slot).total_seconds() <= grace_s


@dataclass(frozen=True)
class Slot:
    """One slot of a job to claim and run."""

    job: Job
    at: datetime
    trigger: RunTrigger
    args: dict[str, Any] | None = None


# --- schedule integration ---


class _Schedule(schedule.Scheduler):
    """A ``schedule.Scheduler`` that reads aegis's UTC clock."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        super().__init__()
        self.clock = clock

    @property
    def idle_seconds(self) -> float | None:
        next_run = self.get_next_run()
        return None if next_run is None else (next_run - self.clock()).total_seconds()


class SlotJob(schedule.Job):
    """A ``schedule.Job`` whose next run is the next slot of an aegis trigger."""

    def __init__(self, job: Job, scheduler: _Schedule, first_slot: datetime,
                 on_due: Callable[[Job, datetime, datetime], None]) -> None:
        super().__init__(1, scheduler)
        self.unit = "seconds"
        self.aegis_job = job
        self.next_run = first_slot
        self._on_due = on_due
        self._clock = scheduler.clock

    @property
    def should_run(self) -> bool:
        return self.next_run is not None and self._clock() >= self.next_run

    def run(self) -> Any:
        slot = self.next_run
        assert slot is not None
        now = self._clock()
        trigger = self.aegis_job.trigger
        # the slots the loop slept through are planned with it
        self._on_due(self.aegis_job, slot, now)
        self.last_run = slot
        self.next_run = trigger.next_after(max(slot, trigger.latest_at_or_before(now) or slot))
        return schedule.CancelJob if self.next_run is None else None

    def __repr__(self) -> str:
        return f"SlotJob({self.aegis_job.id}, next_run={self.next_run})"


class Scheduler:
    """Jobs on ``schedule``, claims in Postgres, runs on the Runner. Used by the daemon
    loop (and by ``aegis.connect().scheduler``); it never sleeps itself."""

    def __init__(self, runtime: Runtime, registry: Registry, *, instance_id: str,
                 clock: Callable[[], datetime] = utcnow,
                 wake: threading.Event | None = None) -> None:
        self.runtime = runtime
        self.runs = Runs(runtime.db)
        self.registry = registry
        self.instance_id = instance_id
        self.clock = clock
        self.wake = wake or threading.Event()
        self.log = get_logger()
        self.paused: set[str] = set()
        self.runner = Runner(runtime, instance_id, clock, on_finish=self._on_finish,
                             wake=self.wake)
        # runs finished in this process, by status
        self.outcomes: Counter[str] = Counter()
        self._schedule = _Schedule(clock)
        self._lock = threading.RLock()
        self._on_finish_hooks: list[Callable[[Execution], None]] = []
        # slots found due by run_pending, claimed together
        self._due: list[Slot] = []
        # per job, slots that run one after another once its run in flight ends (run_all)
        self._backlog: dict[str, deque[Slot]] = {}
        # slots claimed ahead of their time, by (job id, slot): the run this daemon won,
        # or None when another daemon has the slot
        self._ahead: dict[tuple[str, datetime], JobRun | None] = {}
        self._started = False
        # jobs added or removed at run time since the jobs table was last told
        self._changed = False
        self._removed: set[str] = set()
        registry.add_listener(self._job_changed)

    @property
    def host(self) -> str:
        return self.runtime.settings.host

    @property
    def live_since(self) -> datetime:
        return live_since(self.clock(), self.runtime.settings.heartbeat_interval_s)

    # --- jobs on the schedule ---

    def start(self, jobs: Iterable[Job] | None = None) -> None:
        """Catch up and put every enabled job on the schedule; from now on a job added to
        the registry (or removed) is scheduled (or unscheduled) as it happens."""
        # before the listing: a job added meanwhile is scheduled, at worst twice
        self._started = True
        for job in jobs if jobs is not None else list(self.registry):
            self.schedule_job(job)

    def _job_changed(self, job_id: str, job: Job | None) -> None:
        """A job added, replaced or removed while the daemon runs (a container's labels):
        on the schedule or off it at once."""
        if not self._started:
            return
        with self._lock:
            self._changed = True
            if job is None:
                self._removed.add(job_id)
            else:
                self._removed.discard(job_id)
        if job is None:
            self.unschedule_job(job_id)
            self.wake.set()
        else:
            self.schedule_job(job)

    def advertise_changes(self) -> None:
        """Tell the jobs table of jobs added or removed at run time since it was last told
        (the loop calls it each turn; a database outage leaves it for the next)."""
        with self._lock:
            if not self._changed:
                return
            self._changed, removed, self._removed = False, self._removed, set()
        try:
            self.advertise()
            for job_id in sorted(removed):
                self.runs.forget_sourced_job(job_id, seen_by=self.instance_id)
        except StoreError as exc:
            with self._lock:
                self._changed = True
                self._removed |= removed
            self.log.warning("jobs_not_advertised", error=str(exc))

    def schedule_job(self, job: Job) -> None:
        if not job.enabled:
            return
        now = self.clock()
        self._catch_up(job, now)
        first = job.trigger.next_after(now)
        if first is None:
            return
        with self._lock:
            self._unschedule(job.id)
            self._schedule.jobs.append(SlotJob(job, self._schedule, first, self._on_due))
        self.wake.set()

    def unschedule_job(self, job_id: str) -> None:
        with self._lock:
            self._unschedule(job_id)
            self._backlog.pop(job_id, None)

    def _unschedule(self, job_id: str) -> None:
        self._schedule.jobs[:] = [j for j in self._schedule.jobs
                                  if not (isinstance(j, SlotJob) and j.aegis_job.id == job_id)]

    def next_runs(self) -> dict[str, datetime]:
        with self._lock:
            return {j.aegis_job.id: j.next_run for j in self._schedule.jobs
                    if isinstance(j, SlotJob) and j.next_run is not None}

    def next_due(self) -> datetime | None:
        with self._lock:
            next_run: datetime | None = self._schedule.get_next_run()
            return next_run

    def next_wake(self) -> datetime | None:
        """When the loop should run next for the jobs: CLAIM_AHEAD_S before the next slot
        not claimed yet, else when the next slot is due."""
        with self._lock:
            slots = [(job.next_run, (job.aegis_job.id, job.next_run) in self._ahead)
                     for job in self._schedule.jobs
                     if isinstance(job, SlotJob) and job.next_run is not None]
        ahead = timedelta(seconds=CLAIM_AHEAD_S)
        return min((at if claimed else at - ahead for at, claimed in slots), default=None)

    def claim_ahead(self) -> int:
        """Claim the slots due within CLAIM_AHEAD_S, in one statement per slot time, so
        that they start on time without waiting for their commit; returns how many were
        claimed. A job with a run in flight here, paused or with a backlog is claimed when
        due instead (its overlap is judged then). With the database away nothing is
        claimed ahead: the slots are claimed when due, as always. Claims ahead that were
        never used are closed first."""
        now = self.clock()
        with self._lock:
            self._close_unused(now)
            busy = self.runner.running_jobs() | set(self._backlog) | self.paused
            soon: dict[datetime, list[Slot]] = {}
            for job in self._schedule.jobs:
                if not isinstance(job, SlotJob) or job.next_run is None:
                    continue
                at = job.next_run
                if not now < at <= now + timedelta(seconds=CLAIM_AHEAD_S):
                    continue
                if job.aegis_job.id not in busy and (job.aegis_job.id, at) not in self._ahead:
                    soon.setdefault(at, []).append(Slot(job.aegis_job, at, RunTrigger.SCHEDULE))
            claimed = 0
            for at, slots in sorted(soon.items()):
                try:  # started_at is the slot's time: the run starts then
                    won = self._claim(slots, at)
                except StoreError as exc:
                    self.log.debug("jobs_not_claimed_ahead", error=str(exc))
                    return claimed
                for slot in slots:
                    self._ahead[(slot.job.id, at)] = won.get((slot.job.id, at))
                claimed += len(slots)
            return claimed

    def release_claimed_ahead(self, why: str) -> None:
        """Close every slot claimed ahead and not started as skipped (the daemon stops)."""
        with self._lock:
            self._close_unused(None, why)

    def _close_unused(self, now: datetime | None,
                      why: str = "its job was paused or removed before its slot") -> None:
        """Close as skipped the runs claimed ahead whose slot passed UNUSED_CLAIM_S ago
        without coming due here (None: all of them); one the database cannot close yet is
        tried again next time."""
        for key, run in list(self._ahead.items()):
            if now is not None and (now - key[1]).total_seconds() < UNUSED_CLAIM_S:
                continue
            if run is not None and run.status == RunStatus.RUNNING:
                try:
                    self.runs.finish(RunEnd(run.id, RunStatus.SKIPPED, self.clock(),
                                            f"not started: {why}", None, run.job_id,
                                            run.scheduled_for))
                except StoreError as exc:
                    self.log.warning("job_claim_not_released", job=run.job_id,
                                     error=str(exc))
                    continue
            del self._ahead[key]

    def run_pending(self) -> None:
        """Claim every slot due now in one statement, so the jobs of one tick wait for one
        commit instead of one after another, then start the ones this daemon won."""
        # held while firing too: an unscheduled job never fires after
        with self._lock:
            self._schedule.run_pending()
            due, self._due = self._due, []
            self._fire_due(due + self._from_backlog(due))

    def run_backlog(self) -> int:
        """Start the next waiting slot of each job with a backlog and no run in flight;
        return how many slots still wait."""
        with self._lock:
            self._fire_due(self._from_backlog([]))
            return sum(len(waiting) for waiting in self._backlog.values())

    def _from_backlog(self, due: list[Slot]) -> list[Slot]:
        if not self._backlog:
            return []
        busy = self.runner.running_jobs() | {slot.job.id for slot in due}
        taken = []
        for job_id, waiting in list(self._backlog.items()):
            if job_id in self.paused:
                self.log.debug("job_paused_slots_dropped", job=job_id, slots=len(waiting))
                waiting.clear()
            elif job_id not in busy:
                taken.append(waiting.popleft())
            if not waiting:
                del self._backlog[job_id]
        return taken

    def _queue(self, slots: list[Slot], due: list[Slot]) -> None:
        """The first of a job's slots is due now, the others wait (all, behind a backlog)."""
        if not slots:
            return
        with self._lock:
            job_id = slots[0].job.id
            if job_id not in self._backlog:
                due.append(slots[0])
                slots = slots[1:]
            if slots:
                self._backlog.setdefault(job_id, deque()).extend(slots)

    def _fire_due(self, due: list[Slot]) -> None:
        try:
            self.fire_all(due)
        except StoreError:
            # nothing was claimed: one by one, so a slot the database refuses costs only
            # itself, and the loop goes on
            for slot in due:
                self._fire_or_log(slot)

    def _fire_or_log(self, slot: Slot) -> None:
        try:
            self.fire_all([slot])
        except StoreError as exc:
            self.log.error("job_slot_not_claimed", job=slot.job.id, slot=slot.at.isoformat(),
                           error=str(exc))

    def _catch_up(self, job: Job, now: datetime) -> None:
        try:
            last_slot = self.runs.last_slot(job.id, job.scope_key(self.host))
        except DatabaseUnavailable:
            return
        plan = plan_start(job.trigger, last_slot, now, job.misfire_grace_s, job.misfire)
        self._record_missed(job, plan, now, "fell due while no daemon ran")
        due: list[Slot] = []
        self._queue([Slot(job, at, RunTrigger.CATCH_UP) for at in plan.run], due)
        for slot in due:
            self._fire_or_log(slot)

    def _on_due(self, job: Job, first: datetime, now: datetime) -> None:
        if job.id in self.paused:
            self.log.debug("job_paused_slot_skipped", job=job.id, slot=first.isoformat())
            return
        plan = plan_due(job.trigger, first, now, job.misfire_grace_s, job.misfire)
        self._record_missed(job, plan, now, "passed while the loop was late")
        latest = plan.run[-1] if plan.run else None
        self._queue([Slot(job, at, RunTrigger.SCHEDULE if at == latest else RunTrigger.CATCH_UP)
                     for at in plan.run], self._due)

    def _record_missed(self, job: Job, plan: SlotPlan, now: datetime, why: str) -> None:
        """One 'missed' row for the gap of ``plan``, at its first slot."""
        if plan.missed_first is None or plan.missed_last is None:
            return
        gap = MissedGap(job_id=job.id, scope_key=job.scope_key(self.host),
                        first=plan.missed_first, last=plan.missed_last,
                        count=plan.missed_count, misfire=job.misfire, why=why)
        try:
            self.runs.record_missed(gap, host=self.host, now=now, instance_id=self.instance_id)
        except StoreError as exc:
            self.log.warning("job_missed_not_recorded", job=job.id, error=str(exc))
        self.log.warning("job_missed", job=job.id, slots=plan.missed_count)

    # --- claiming and running ---

    def fire(self, job: Job, slot: datetime, trigger: RunTrigger,
             args: dict[str, Any] | None = None) -> Execution | JobRun | None:
        """Claim ``slot`` of ``job`` and start it. Returns the execution, the skipped run,
        or None when another daemon has the slot."""
        return self.fire_all([Slot(job, slot, trigger, args)])[0]

    def fire_all(self, slots: Sequence[Slot]) -> list[Execution | JobRun | None]:
        """Claim ``slots`` in one statement and start each one won, in order."""
        if not slots:
            return []
        with self._lock:  # claimed ahead: started as claimed, with no statement now
            ahead = {(slot.job.id, slot.at): self._ahead[(slot.job.id, slot.at)]
                     for slot in slots if (slot.job.id, slot.at) in self._ahead}
        rest = [slot for slot in slots if (slot.job.id, slot.at) not in ahead]
        try:
            won = self._claim(rest, self.clock()) if rest else {}
        except DatabaseUnavailable as exc:
            self._used(ahead)
            offline = {id(slot) for slot in rest}
            return [self._fire_offline(slot, exc) if id(slot) in offline
                    else self._start(slot, ahead[(slot.job.id, slot.at)]) for slot in slots]
        # (another error leaves them claimed ahead: the caller fires each slot alone next)
        self._used(ahead)
        won.update({key: run for key, run in ahead.items() if run is not None})
        return [self._start(slot, won.get((slot.job.id, slot.at))) for slot in slots]

    def _used(self, ahead: dict[tuple[str, datetime], JobRun | None]) -> None:
        with self._lock:
            for key in ahead:
                self._ahead.pop(key, None)

    def _claim(self, slots: Sequence[Slot], now: datetime
               ) -> dict[tuple[str, datetime], JobRun]:
        """Claim ``slots`` in one statement, started at ``now``: the runs this daemon won
        (some skipped for an overlap), by (job id, slot)."""
        wanted = [WantedSlot(slot.job.id, slot.job.scope_key(self.host), slot.trigger, slot.at,
                             overlap=slot.job.overlap) for slot in slots]
        claimed = self.runs.claim(
            wanted, host=self.host, now=now, instance_id=self.instance_id,
            live_since=self.live_since,
            running_ids=[e.run_id for e in self.runner.in_flight()])
        return {(run.job_id, run.scheduled_for): run for run in claimed}

    def _start(self, slot: Slot, run: JobRun | None) -> Execution | JobRun | None:
        if run is None:
            self.log.debug("job_slot_taken", job=slot.job.id, slot=slot.at.isoformat())
            return None
        if run.status == RunStatus.SKIPPED:
            self.log.warning("job_skipped_overlap", job=slot.job.id, slot=slot.at.isoformat())
            return run
        return self.runner.submit(slot.job, self._context(slot, run.id))

    def _fire_offline(self, slot: Slot, exc: Exception) -> Execution | None:
        """With Postgres down, a host-scoped job still runs (only this daemon runs this
        host's slots) and its run is recorded when the database returns; a cluster job
        cannot be claimed, so it waits."""
        job = slot.job
        if job.scope != "host" or job.id in self.runner.running_jobs():
            self.log.warning("job_not_claimed", job=job.id, slot=slot.at.isoformat(),
                             error=str(exc))
            return None
        offline = {"job_id": job.id, "scope_key": job.scope_key(self.host), "host": self.host,
                   "trigger": slot.trigger, "scheduled_for": slot.at.isoformat(),
                   "started_at": self.clock().isoformat(), "instance_id": self.instance_id}
        return self.runner.submit(job, self._context(slot, None), offline=offline)

    def _context(self, slot: Slot, run_id: int | None) -> JobContext:
        return JobContext(job_id=slot.job.id, run_id=run_id, trigger=slot.trigger,
                          scheduled_for=slot.at, now=self.clock(), app=self.runtime,
                          log=self.log.bind(job=slot.job.id, run_id=run_id),
                          cancelled=threading.Event(), args=dict(slot.args or {}))

    def add_finish_hook(self, hook: Callable[[Execution], None]) -> None:
        self._on_finish_hooks.append(hook)

    def _on_finish(self, execution: Execution) -> None:
        self.outcomes[execution.status or "unknown"] += 1
        for hook in self._on_finish_hooks:
            hook(execution)
        self.wake.set()

    def refresh_paused(self) -> None:
        self.paused = self.runs.paused()

    def advertise(self) -> None:
        """Record the jobs this daemon runs, with their next run, in the jobs table."""
        now = self.clock()
        next_runs = self.next_runs()
        jobs = list(self.registry)
        if not jobs:
            return
        self.runs.advertise(
            [AdvertisedJob(id=job.id, description=job.description,
                           trigger=job.trigger.describe(), timezone=job.zone.key,
                           scope=job.scope, source=job.source or None,
                           next_run_at=next_runs.get(job.id) if job.enabled else None)
             for job in jobs], seen_by=self.instance_id, now=now)
