"""A /metrics scrape on a database holding months of history: 1,000,000 events over 30
days, 200,000 job runs over 90 days (10 jobs, 5 hosts), 200 supervised containers and
50,000 outbox rows, on a real PostgreSQL (the embedded server), through the real HTTP
endpoint.

Goal: a scrape (every series, parsed by prometheus-client) under 250 ms at p99, so a
10-second scrape interval costs the database almost nothing.
"""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from aegis.web.http import make_server
from bench.common import bench_app
from bench.report import Figure, report

EVENTS = 1_000_000
RUNS = 200_000
CONTAINERS = 200
OUTBOX = 50_000
SCRAPES = 50
GOAL_MS = 250.0


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
                   'an event', jsonb_build_object('container', 'c' || (g %% 200)),
                   (ARRAY['low', 'low', 'low', 'medium', 'high', 'critical'])
                       [1 + g %% 6]::importance,
                   CASE WHEN g %% 5 = 0 THEN 'bench' ELSE 'host-' || (g %% 5) END
            FROM generate_series(1, %(events)s) g""", params)
        conn.execute("""
            INSERT INTO jobs (id) SELECT 'job_' || g FROM generate_series(0, 9) g""")
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
            INSERT INTO containers (host, name, state, strikes)
            SELECT 'bench', 'c' || g,
                   (ARRAY['ok', 'ok', 'ok', 'striking', 'escalated'])[1 + g %% 5], g %% 4
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


def measure() -> dict[str, float]:
    timings_ms: list[float] = []
    with bench_app() as app:
        seed(app.db.dsn)
        server = make_server(app, "127.0.0.1:0")
        threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        series = 0
        for _ in range(SCRAPES):
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=30) as response:
                text = response.read().decode()
            families = list(text_string_to_metric_families(text))
            timings_ms.append((time.perf_counter() - started) * 1000)
            series = sum(len(family.samples) for family in families)
        server.shutdown()
        server.server_close()
    timings_ms.sort()
    return {"p50_ms": statistics.median(timings_ms),
            "p99_ms": timings_ms[max(0, int(len(timings_ms) * 0.99) - 1)],
            "series": float(series)}


def main() -> None:
    result = measure()
    verdict = "ok" if result["p99_ms"] < GOAL_MS else "MISSED"
    print(f"/metrics over {EVENTS:,} events and {RUNS:,} runs: p50 {result['p50_ms']:.1f} ms, "
          f"p99 {result['p99_ms']:.1f} ms over {SCRAPES} scrapes, {result['series']:.0f} "
          f"samples (goal p99 < {GOAL_MS:.0f} ms: {verdict})")
    report("metrics", [
        Figure("metrics scrape p50", result["p50_ms"], "ms"),
        Figure("metrics scrape p99", result["p99_ms"], "ms", f"< {GOAL_MS:.0f} ms",
               result["p99_ms"] < GOAL_MS),
    ])


if __name__ == "__main__":
    main()
