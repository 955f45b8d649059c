"""The evening digest over a busy day: 1,000,000 events in one UTC day (twenty event
types, every importance, 2,000 restarts and 200 escalations across 100 containers on 5
hosts) plus 3,000 job runs, on a real PostgreSQL (the embedded server).

Goal: collecting the aggregates and rendering the markdown under 3 s.
"""

from __future__ import annotations

import statistics
import time
from datetime import date

import psycopg

from aegis.reports.digest import collect_day, day_window
from aegis.reports.markdown import render_day
from bench.common import bench_app
from bench.report import Figure, report

EVENTS = 1_000_000
RESTARTS = 2_000
ESCALATIONS = 200
RUNS = 3_000
REPEATS = 5
GOAL_S = 3.0
DAY = date(2026, 3, 1)


def seed(dsn: str) -> None:
    start, _ = day_window(DAY)
    params = {"start": start, "events": EVENTS, "restarts": RESTARTS,
              "escalations": ESCALATIONS, "runs": RUNS}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO episodic_memory (uid, timestamp, event_type, summary, details,
                                         importance, host)
            SELECT gen_random_uuid(), %(start)s + (g * 86399.0 / %(events)s) * interval '1 s',
                   'event_type_' || (g %% 20), 'a routine event', jsonb_build_object('n', g),
                   (ARRAY['low', 'low', 'low', 'low', 'medium', 'high', 'critical'])
                       [1 + g %% 7]::importance,
                   'host-' || (g %% 5)
            FROM generate_series(1, %(events)s) g""", params)
        conn.execute("""
            INSERT INTO episodic_memory (uid, timestamp, event_type, summary, details,
                                         importance, host)
            SELECT gen_random_uuid(), %(start)s + (g * 40.0) * interval '1 s',
                   CASE WHEN g <= %(escalations)s THEN 'container_escalated'
                        ELSE 'container_restarted' END,
                   'restarted after two strikes',
                   jsonb_build_object('container', 'c' || (g %% 100),
                                      'reason', 'probe: exit 1'),
                   'high', 'host-' || (g %% 5)
            FROM generate_series(1, %(restarts)s) g""", params)
        conn.execute("""
            INSERT INTO job_runs (job_id, scope_key, host, trigger, scheduled_for, started_at,
                                  finished_at, status, error)
            SELECT 'job_' || (g %% 10), 'host-' || (g %% 5), 'host-' || (g %% 5), 'schedule',
                   %(start)s + g * interval '28 s', %(start)s + g * interval '28 s',
                   %(start)s + g * interval '28 s',
                   CASE WHEN g %% 50 = 0 THEN 'failed' ELSE 'ok' END,
                   CASE WHEN g %% 50 = 0 THEN 'RuntimeError: boom' END
            FROM generate_series(1, %(runs)s) g""", params)
        conn.execute("VACUUM ANALYZE")


def measure() -> dict[str, float]:
    timings: list[float] = []
    with bench_app() as app:
        seed(app.db.dsn)
        for _ in range(REPEATS):
            started = time.perf_counter()
            digest = collect_day(app, DAY)
            text = render_day(digest)
            timings.append(time.perf_counter() - started)
    if digest.events_total != EVENTS + RESTARTS:
        raise SystemExit(f"the digest counted {digest.events_total} events")
    return {"median_s": statistics.median(timings), "max_s": max(timings),
            "events": digest.events_total, "chars": len(text)}


def main() -> None:
    result = measure()
    verdict = "ok" if result["max_s"] < GOAL_S else "MISSED"
    print(f"evening digest over {result['events']:,.0f} events: median {result['median_s']:.2f} s, "
          f"max {result['max_s']:.2f} s over {REPEATS} runs, {result['chars']:.0f} chars "
          f"(goal < {GOAL_S:.0f} s: {verdict})")
    report("digest", [Figure("digest seconds at 1,000,000 events", result["max_s"], "s",
                             f"< {GOAL_S:.0f} s", result["max_s"] < GOAL_S)])


if __name__ == "__main__":
    main()
