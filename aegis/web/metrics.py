"""Prometheus metrics, read from the database at scrape time.

Nothing is counted in memory: every series comes from a cheap aggregate query, so the
numbers survive daemon restarts and agree with what ``psql`` shows. Windowed series cover
the last ``WINDOW_S`` seconds. When the database is unreachable a scrape still answers,
with ``aegis_database_up 0`` and the series that need no database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta

import structlog
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from aegis.core.clock import utcnow
from aegis.core.errors import DatabaseUnavailable, StoreError
from aegis.scheduling.heartbeat import read_heartbeat
from aegis.scheduling.repository import DurationHistogram, Runs
from aegis.storage.events import EventType, Importance
from aegis.storage.outbox import Outbox, OutboxStatus
from aegis.storage.runtime import Runtime
from aegis.supervision.repository import Containers
from aegis.version import __version__

WINDOW_S = 86400.0
DURATION_BOUNDS_S = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

log = structlog.get_logger("aegis.web.metrics")


class DatabaseCollector(Collector):
    """Collects aegis's series from the database and the heartbeat file on every scrape."""

    def __init__(self, runtime: Runtime, clock: Callable[[], datetime] = utcnow) -> None:
        self.runtime = runtime
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        yield _info(self.runtime)
        yield from _heartbeat(self.runtime, now)
        up = GaugeMetricFamily("aegis_database_up",
                               "1 when the database answered this scrape, else 0.")
        try:
            families = list(self._from_database(now))
        except StoreError as exc:
            # DatabaseUnavailable, or a query the schema cannot answer: either way the
            # database did not serve this scrape.
            log.warning("metrics_database_unavailable", error=str(exc))
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    def _from_database(self, now: datetime) -> Iterator[Metric]:
        since = now - timedelta(seconds=WINDOW_S)
        runtime, host = self.runtime, self.runtime.settings.host
        runs = Runs(runtime.db)

        by_status = GaugeMetricFamily("aegis_job_runs",
                                      "Job runs scheduled in the last 24 hours, by job and "
                                      "status (all hosts).", labels=["job", "status"])
        for (job_id, status), count in runs.counts_by_status(since).items():
            by_status.add_metric([job_id, status], float(count))
        yield by_status

        yield _durations(runs.durations(since, DURATION_BOUNDS_S))

        last = GaugeMetricFamily("aegis_job_last_success_timestamp_seconds",
                                 "Unix time the job's latest successful run finished.",
                                 labels=["job"])
        for job_id, finished_at_s in runs.last_successes().items():
            last.add_metric([job_id], finished_at_s)
        yield last

        yield from _optional(lambda: _containers(runtime, host), "containers")

        restarts = CounterMetricFamily("aegis_container_restarts",
                                       "Container restarts this host recorded.",
                                       labels=["container"])
        escalations = CounterMetricFamily("aegis_container_escalations",
                                          "Escalations this host recorded.",
                                          labels=["container"])
        for done in runtime.store.container_actions(host):
            family = (restarts if done.event_type == EventType.CONTAINER_RESTARTED
                      else escalations)
            family.add_metric([done.container], float(done.actions))
        yield restarts
        yield escalations

        yield from _outbox(runtime, since)

        events = GaugeMetricFamily("aegis_events",
                                   "Events recorded in the last 24 hours, by importance "
                                   "(all hosts).", labels=["importance"])
        counts = runtime.store.counts_by_importance(since)
        for importance in Importance:
            events.add_metric([importance.value], float(counts.get(importance, 0)))
        yield events


def _info(runtime: Runtime) -> Metric:
    info = GaugeMetricFamily("aegis_info", "This aegis process.", labels=["version", "host"])
    info.add_metric([__version__, runtime.settings.host], 1.0)
    return info


def _heartbeat(runtime: Runtime, now: datetime) -> Iterator[Metric]:
    heartbeat = read_heartbeat(runtime.settings.home)
    if heartbeat is None:
        return
    age = GaugeMetricFamily("aegis_heartbeat_age_seconds",
                            "Seconds since the daemon loop last wrote its heartbeat file.")
    age.add_metric([], max(0.0, (now - heartbeat.last_heartbeat_at).total_seconds()))
    yield age


def _durations(histograms: Iterable[DurationHistogram]) -> Metric:
    family = HistogramMetricFamily("aegis_job_duration_seconds",
                                   "Duration of job runs finished in the last 24 hours.",
                                   labels=["job"])
    for histogram in histograms:
        buckets = [(repr(bound_s), float(runs)) for bound_s, runs in histogram.buckets]
        buckets.append(("+Inf", float(histogram.runs)))
        family.add_metric([histogram.job_id], buckets, histogram.sum_s)
    return family


def _containers(runtime: Runtime, host: str) -> Iterator[Metric]:
    containers = Containers(runtime.db)
    if not containers.any_present():
        return
    by_state: dict[str, int] = {}
    strikes = GaugeMetricFamily("aegis_container_strikes",
                                "Current strikes of each supervised container on this host.",
                                labels=["container"])
    for gauge in containers.gauges(host):
        by_state[gauge.state] = by_state.get(gauge.state, 0) + 1
        strikes.add_metric([gauge.name], float(gauge.strikes))
    states = GaugeMetricFamily("aegis_containers",
                               "Supervised containers on this host, by remediation state.",
                               labels=["state"])
    for state, count in sorted(by_state.items()):
        states.add_metric([state], float(count))
    yield states
    yield strikes


def _outbox(runtime: Runtime, since: datetime) -> Iterator[Metric]:
    outbox = Outbox(runtime.db)
    depth = GaugeMetricFamily("aegis_outbox_depth", "Notifications waiting to be delivered.",
                              labels=["channel"])
    oldest = GaugeMetricFamily("aegis_outbox_oldest_pending_age_seconds",
                               "Age of the oldest undelivered notification.",
                               labels=["channel"])
    given_up = GaugeMetricFamily("aegis_outbox_undelivered",
                                 "Notifications that failed for good (permanent error or "
                                 "too old).", labels=["channel"])
    for count in outbox.counts_by_status(since):
        if count.status == OutboxStatus.PENDING:
            depth.add_metric([count.channel], float(count.messages))
            oldest.add_metric([count.channel], count.oldest_age_s or 0.0)
        elif count.status in (OutboxStatus.FAILED, OutboxStatus.UNDELIVERABLE):
            given_up.add_metric([count.channel], float(count.messages))
    failures = GaugeMetricFamily("aegis_outbox_delivery_failures",
                                 "Failed delivery attempts of notifications created in the "
                                 "last 24 hours.", labels=["channel"])
    for channel, failed in outbox.failed_attempts(since).items():
        failures.add_metric([channel], float(failed))
    yield depth
    yield oldest
    yield given_up
    yield failures


def _optional(collect: Callable[[], Iterator[Metric]], what: str) -> Iterator[Metric]:
    """Series whose table belongs to a part of aegis that may be newer than the schema."""
    try:
        yield from list(collect())
    except DatabaseUnavailable:
        raise
    except StoreError as exc:
        log.warning("metrics_series_skipped", series=what, error=str(exc))


def build_registry(runtime: Runtime,
                   clock: Callable[[], datetime] = utcnow) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(runtime, clock))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
