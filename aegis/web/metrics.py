"""Prometheus metrics, read from the database at scrape time.

Nothing is counted in memory: every series comes from a cheap aggregate query, so the
numbers survive daemon restarts and agree with what ``psql`` shows. Windowed series cover
the last ``WINDOW_S`` seconds. When the database is unreachable a scrape still answers,
with ``aegis_database_up 0`` and the series that need no database.

A series that an alert rule compares with a threshold has a sample even when there is
nothing to count (0 pending notifications, 0 open incidents), so that "none" is never
mistaken for "unknown"; deploy/prometheus/aegis-rules.yaml holds the rules.
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
from aegis.scheduling.heartbeat import DaemonStatus, peer_status, read_heartbeat, stale_after_s
from aegis.scheduling.repository import DurationHistogram, Runs
from aegis.storage.events import EventType, Importance
from aegis.storage.outbox import Channel, Outbox, OutboxStatus
from aegis.storage.runtime import Runtime
from aegis.supervision.protocol.strikes import Phase, SupervisionMode
from aegis.supervision.repository import ContainerGauge, Containers
from aegis.version import __version__

WINDOW_S = 86400.0
DURATION_BOUNDS_S = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# aegis_container_health: a container without a health check is neither healthy nor
# unhealthy, so it has a value of its own rather than 0
HEALTHY = 1.0
UNHEALTHY = 0.0
NO_HEALTH_CHECK = -1.0
INCIDENT_PHASES = tuple(phase for phase in Phase if phase != Phase.OK)

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
        yield _stale_after(self.runtime)
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

        yield from _job_states(runs)
        yield from _hosts(runtime, runs, now)
        present = _present(runtime, host)
        yield from _containers(host, present)
        yield from _container_actions(runtime, host, present)

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


def _stale_after(runtime: Runtime) -> Metric:
    stale = GaugeMetricFamily("aegis_heartbeat_stale_after_seconds",
                              "Heartbeat age beyond which the daemon loop counts as stalled "
                              "(/healthz answers 503).")
    stale.add_metric([], stale_after_s(runtime.settings.heartbeat_interval_s))
    return stale


def _durations(histograms: Iterable[DurationHistogram]) -> Metric:
    family = HistogramMetricFamily("aegis_job_duration_seconds",
                                   "Duration of job runs finished in the last 24 hours.",
                                   labels=["job"])
    for histogram in histograms:
        buckets = [(repr(bound_s), float(runs)) for bound_s, runs in histogram.buckets]
        buckets.append(("+Inf", float(histogram.runs)))
        family.add_metric([histogram.job_id], buckets, histogram.sum_s)
    return family


def _job_states(runs: Runs) -> Iterator[Metric]:
    silent = GaugeMetricFamily("aegis_job_silent",
                               "1 while the job's silence watch (expect_every) holds it "
                               "silent, else 0 (all hosts).", labels=["job"])
    last = GaugeMetricFamily("aegis_job_last_run_status",
                             "1 for the status of the job's latest slot that ran to an end "
                             "or was missed (all hosts).", labels=["job", "status"])
    for state in runs.job_states():
        silent.add_metric([state.job_id], float(state.silent))
        if state.last_status is not None:
            last.add_metric([state.job_id, state.last_status], 1.0)
    yield silent
    yield last


def _hosts(runtime: Runtime, runs: Runs, now: datetime) -> Iterator[Metric]:
    """Every host sharing the database as this one sees it: what a peer can tell of a host
    whose own aegis no longer answers."""
    settings = runtime.settings
    age = GaugeMetricFamily("aegis_host_heartbeat_age_seconds",
                            "Seconds since the latest daemon of each host sharing the "
                            "database last heartbeat.", labels=["host"])
    silent = GaugeMetricFamily("aegis_host_silent",
                               "1 when the host's daemon has not heartbeat for "
                               "AEGIS_PEER_TIMEOUT and did not stop cleanly, else 0.",
                               labels=["host"])
    for daemon in runs.daemons():
        status = peer_status(daemon.status, daemon.last_heartbeat_at, now,
                             settings.heartbeat_interval_s, settings.peer_timeout_s)
        age.add_metric([daemon.host],
                       max(0.0, (now - daemon.last_heartbeat_at).total_seconds()))
        silent.add_metric([daemon.host], float(status == DaemonStatus.SILENT))
    yield age
    yield silent


def health_value(gauge: ContainerGauge) -> float | None:
    """``aegis_container_health`` of one container: 1 healthy, 0 unhealthy, -1 no health
    check; None (no sample) while its probe has not decided yet or it is not running."""
    if not gauge.has_healthcheck:
        return NO_HEALTH_CHECK
    if gauge.status != "running":
        return None
    return {"healthy": HEALTHY, "unhealthy": UNHEALTHY}.get(gauge.health)


def _present(runtime: Runtime, host: str) -> list[ContainerGauge] | None:
    """This host's present containers; None when the schema has no containers table yet
    (a part of aegis newer than the schema)."""
    containers = Containers(runtime.db)
    try:
        return containers.gauges(host) if containers.any_present() else None
    except DatabaseUnavailable:
        raise
    except StoreError as exc:
        log.warning("metrics_series_skipped", series="containers", error=str(exc))
        return None


def _containers(host: str, gauges: list[ContainerGauge] | None) -> Iterator[Metric]:
    if gauges is None:
        return
    by_state: dict[str, int] = {}
    strikes = GaugeMetricFamily("aegis_container_strikes",
                                "Current strikes of each supervised container on this host.",
                                labels=["host", "container"])
    health = GaugeMetricFamily("aegis_container_health",
                               "Health of each supervised container on this host: 1 healthy, "
                               "0 unhealthy, -1 no health check.",
                               labels=["host", "container"])
    for gauge in gauges:
        by_state[gauge.state] = by_state.get(gauge.state, 0) + 1
        strikes.add_metric([host, gauge.name], float(gauge.strikes))
        value = health_value(gauge)
        if value is not None and gauge.supervision != SupervisionMode.IGNORED:
            health.add_metric([host, gauge.name], value)
    states = GaugeMetricFamily("aegis_containers",
                               "Supervised containers on this host, by remediation state.",
                               labels=["host", "state"])
    for state, count in sorted(by_state.items()):
        states.add_metric([host, state], float(count))
    yield states
    yield strikes
    yield health
    yield _incidents(host, gauges)


def _container_actions(runtime: Runtime, host: str,
                       present: list[ContainerGauge] | None) -> Iterator[Metric]:
    """Restarts and escalations by container: every present container has both counters,
    from 0, so that ``increase()`` counts its first restart too."""
    counts = {event_type: dict.fromkeys((gauge.name for gauge in present or ()), 0)
              for event_type in (EventType.CONTAINER_RESTARTED, EventType.CONTAINER_ESCALATED)}
    for done in runtime.store.container_actions(host):
        counts[done.event_type][done.container] = done.actions
    restarts = CounterMetricFamily("aegis_container_restarts",
                                   "Container restarts this host recorded.",
                                   labels=["host", "container"])
    escalations = CounterMetricFamily("aegis_container_escalations",
                                      "Escalations this host recorded.",
                                      labels=["host", "container"])
    for family, event_type in ((restarts, EventType.CONTAINER_RESTARTED),
                               (escalations, EventType.CONTAINER_ESCALATED)):
        for container, actions in sorted(counts[event_type].items()):
            family.add_metric([host, container], float(actions))
    yield restarts
    yield escalations


def _incidents(host: str, gauges: Iterable[ContainerGauge]) -> Metric:
    open_by_phase: dict[Phase, int] = dict.fromkeys(INCIDENT_PHASES, 0)
    for gauge in gauges:
        if gauge.opens_incident:
            open_by_phase[gauge.phase] += 1
    incidents = GaugeMetricFamily("aegis_incidents_open",
                                  "Open incidents on this host by phase (a dependant folded "
                                  "into its parent's incident is in that one).",
                                  labels=["host", "phase"])
    for phase, count in open_by_phase.items():
        incidents.add_metric([host, phase], float(count))
    return incidents


def _outbox(runtime: Runtime, since: datetime) -> Iterator[Metric]:
    outbox = Outbox(runtime.db)
    waiting = GaugeMetricFamily("aegis_outbox_pending", "Notifications waiting to be delivered.",
                                labels=["channel"])
    # the name of the same number before 0.2; kept for dashboards and rules written on it
    depth = GaugeMetricFamily("aegis_outbox_depth", "Deprecated: aegis_outbox_pending.",
                              labels=["channel"])
    oldest = GaugeMetricFamily("aegis_outbox_oldest_pending_age_seconds",
                               "Age of the oldest undelivered notification.",
                               labels=["channel"])
    given_up = GaugeMetricFamily("aegis_outbox_undelivered",
                                 "Notifications that failed for good (permanent error or "
                                 "too old).", labels=["channel"])
    pending = dict.fromkeys(Channel, 0)
    oldest_age_s = dict.fromkeys(Channel, 0.0)
    undelivered = dict.fromkeys(Channel, 0)
    for count in outbox.counts_by_status(since):
        if count.status == OutboxStatus.PENDING:
            pending[count.channel] += count.messages
            oldest_age_s[count.channel] = count.oldest_age_s or 0.0
        elif count.status in (OutboxStatus.FAILED, OutboxStatus.UNDELIVERABLE):
            undelivered[count.channel] += count.messages
    for channel in Channel:
        waiting.add_metric([channel], float(pending[channel]))
        depth.add_metric([channel], float(pending[channel]))
        oldest.add_metric([channel], oldest_age_s[channel])
        given_up.add_metric([channel], float(undelivered[channel]))
    failures = GaugeMetricFamily("aegis_outbox_delivery_failures",
                                 "Failed delivery attempts of notifications created in the "
                                 "last 24 hours.", labels=["channel"])
    for channel, failed in outbox.failed_attempts(since).items():
        failures.add_metric([channel], float(failed))
    yield waiting
    yield depth
    yield oldest
    yield given_up
    yield failures


def build_registry(runtime: Runtime,
                   clock: Callable[[], datetime] = utcnow) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(runtime, clock))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
