"""A /metrics scrape and the status page on a database holding months of history:
1,000,000 events over 30 days, 200,000 job runs over 90 days (10 jobs, 5 hosts), 200
supervised containers (80 in an incident) and 50,000 outbox rows, on a real PostgreSQL
(the embedded server), through the real HTTP endpoint.

Goals: a scrape (every series, parsed by prometheus-client) under 250 ms at p99, so a
10-second scrape interval costs the database almost nothing; each page of the status
page (the overview, a container's page, its 30 days of events, the job history) under
250 ms at p99: well under a second, answered from aggregate and bounded queries.
"""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from aegis.web.http import make_server
from bench.common import bench_app, percentile
from bench.report import Figure, report

EVENTS = 1_000_000
RUNS = 200_000
CONTAINERS = 200
OUTBOX = 50_000
SCRAPES = 50
GOAL_MS = 250.0
PAGE_LOADS = 50
# The status page: a container with 5,000 of the million events, and its month of them.
PAGES = {"overview": "/", "container page": "/container?host=bench&name=c5",
         "events of a container, 30 days": "/events?since=30d&container=c5",
         "job history": "/jobs?job=job_3"}


def seed(dsn: str) -> None:
    params = {"events": EVENTS, "runs": RUNS, "containers": CONTAINERS, "outbox": OUTBOX}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO episodic_memory (uid, timestamp, event_type, summary, details,
                                         importance, host)
            SELECT gen_random_uuid(), now() - (g * 2592000.0 / %(events)s) * interval '1 s',
                   CASE WHEN g %% 500 = 0 THEN 'container_restarted'
                        WHEN g %% 5000 = 1 THEN 'container_escalated'
                        ELSE 'event_type_' || (g %% 20) END,
                   'an event', jsonb_strip_nulls(jsonb_build_object(
                       'container', 'c' || (g %% 200), 'incident', g %% 7,
                       'probe_output', CASE WHEN g %% 500 = 0 OR g %% 5000 = 1
                                            THEN 'probe failed: 503' END)),
                   (ARRAY['low', 'low', 'low', 'medium', 'high', 'critical'])
                       [1 + g %% 6]::importance,
                   CASE WHEN g %% 5 = 0 THEN 'bench' ELSE 'host-' || (g %% 5) END
            FROM generate_series(1, %(events)s) g""", params)
        conn.execute("""
            INSERT INTO jobs (id, trigger, next_run_at)
            SELECT 'job_' || g, 'every 5m', now() + g * interval '1 min'
            FROM generate_series(0, 9) g""")
        conn.execute("""
            INSERT INTO daemons (instance_id, host, pid, version, started_at,
                                 last_heartbeat_at, status)
            SELECT 'i-' || g, 'host-' || g, g, 'bench', now(), now(), 'running'
            FROM generate_series(0, 4) g""")
        conn.execute("""
            INSERT INTO job_runs (job_id, scope_key, host, trigger, scheduled_for, started_at,
                                  finished_at, status)
            SELECT 'job_' || (g %% 10), 'host-' || (g %% 5), 'host-' || (g %% 5), 'schedule',
                   now() - (g * 7776000.0 / %(runs)s) * interval '1 s',
                   now() - (g * 7776000.0 / %(runs)s) * interval '1 s',
                   now() - (g * 7776000.0 / %(runs)s) * interval '1 s'
                         + (g %% 90) * interval '1 s',
                   CASE WHEN g %% 40 = 0 THEN 'failed' ELSE 'ok' END
            FROM generate_series(1, %(runs)s) g""", params)
        conn.execute("""
            INSERT INTO containers (host, name, state, phase, strikes, strike_at)
            SELECT 'bench', 'c' || g,
                   (ARRAY['ok', 'ok', 'ok', 'striking', 'escalated'])[1 + g %% 5],
                   (ARRAY['ok', 'ok', 'ok', 'striking', 'escalated'])[1 + g %% 5], g %% 4,
                   now() - g * interval '1 min'
            FROM generate_series(1, %(containers)s) g""", params)
        conn.execute("""
            INSERT INTO outbox (channel, dedup_key, host, title, status, attempts, created_at,
                                delivered_at)
            SELECT (ARRAY['alerts', 'journal'])[1 + g %% 2], 'k' || g, 'bench', 't',
                   CASE WHEN g %% 1000 = 0 THEN 'pending' ELSE 'delivered' END, 1 + g %% 3,
                   now() - (g * 1209600.0 / %(outbox)s) * interval '1 s',
                   CASE WHEN g %% 1000 = 0 THEN NULL
                        ELSE now() - (g * 1209600.0 / %(outbox)s) * interval '1 s' END
            FROM generate_series(1, %(outbox)s) g""", params)
        conn.execute("VACUUM ANALYZE")


def percentiles(timings_ms: list[float]) -> tuple[float, float]:
    return statistics.median(timings_ms), percentile(timings_ms, 0.99)


def measure() -> tuple[dict[str, float], dict[str, tuple[float, float, int]]]:
    """The scrapes' p50, p99 and samples; per page of the status page, p50, p99 and the
    size of its HTML."""
    timings_ms: list[float] = []
    pages: dict[str, tuple[float, float, int]] = {}
    with bench_app() as app:
        seed(app.db.dsn)
        server = make_server(app, "127.0.0.1:0")
        threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        series = 0
        for _ in range(SCRAPES):
            started = time.perf_counter()
            with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
                text = response.read().decode()
            families = list(text_string_to_metric_families(text))
            timings_ms.append((time.perf_counter() - started) * 1000)
            series = sum(len(family.samples) for family in families)
        for name, path in PAGES.items():
            loads_ms, size = [], 0
            for _ in range(PAGE_LOADS):
                started = time.perf_counter()
                with urllib.request.urlopen(base + path, timeout=30) as response:
                    size = len(response.read())
                loads_ms.append((time.perf_counter() - started) * 1000)
            pages[name] = (*percentiles(loads_ms), size)
        server.shutdown()
        server.server_close()
    p50_ms, p99_ms = percentiles(timings_ms)
    return {"p50_ms": p50_ms, "p99_ms": p99_ms, "series": float(series)}, pages


def main() -> None:
    result, pages = measure()
    verdict = "ok" if result["p99_ms"] < GOAL_MS else "MISSED"
    print(f"/metrics over {EVENTS:,} events and {RUNS:,} runs: p50 {result['p50_ms']:.1f} ms, "
          f"p99 {result['p99_ms']:.1f} ms over {SCRAPES} scrapes, {result['series']:.0f} "
          f"samples (goal p99 < {GOAL_MS:.0f} ms: {verdict})")
    figures = [
        Figure("metrics scrape p50", result["p50_ms"], "ms"),
        Figure("metrics scrape p99", result["p99_ms"], "ms", f"< {GOAL_MS:.0f} ms",
               result["p99_ms"] < GOAL_MS),
    ]
    for name, (p50_ms, p99_ms, size) in pages.items():
        verdict = "ok" if p99_ms < GOAL_MS else "MISSED"
        print(f"status page, {name} ({PAGES[name]}): p50 {p50_ms:.1f} ms, p99 {p99_ms:.1f} ms "
              f"over {PAGE_LOADS} loads, {size / 1024:.0f} KB (goal p99 < {GOAL_MS:.0f} ms: "
              f"{verdict})")
        figures += [Figure(f"status page {name} p50", p50_ms, "ms"),
                    Figure(f"status page {name} p99", p99_ms, "ms", f"< {GOAL_MS:.0f} ms",
                           p99_ms < GOAL_MS)]
    report("metrics", figures)


if __name__ == "__main__":
    main()
