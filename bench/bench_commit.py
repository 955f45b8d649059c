"""The floor under every latency tail: how long one commit of one small row takes on
this machine's disk (the WAL flush), with nothing of aegis in the way.

A fresh embedded PostgreSQL, one connection, a single-row INSERT committed every 20 ms
for 20 s. No goal: this is context for the lateness and strike figures, each of which
waits for one such commit (a job's claim, a strike's save), so their p99 cannot be
lower than this one's.
"""

from __future__ import annotations

import time

import psycopg

from bench.common import bench_app, percentile
from bench.report import Figure, report

DURATION_S = 20.0
PAUSE_S = 0.02


def measure() -> list[float]:
    commit_ms: list[float] = []
    with bench_app() as app, psycopg.connect(app.db.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_commit (id bigserial PRIMARY KEY, at timestamptz)")
        deadline = time.monotonic() + DURATION_S
        while time.monotonic() < deadline:
            started = time.monotonic()
            conn.execute("INSERT INTO bench_commit (at) VALUES (now())")
            commit_ms.append((time.monotonic() - started) * 1000)
            time.sleep(PAUSE_S)
    return commit_ms


def main() -> None:
    commit_ms = measure()
    p50, p99, worst = percentile(commit_ms, 0.5), percentile(commit_ms, 0.99), max(commit_ms)
    print(f"one-row commit over {len(commit_ms)} commits: p50 {p50:.2f} ms, p99 {p99:.1f} ms, "
          f"max {worst:.1f} ms (context: the WAL flush every claim and strike waits for)")
    report("commit", [Figure("database commit p50", p50, "ms"),
                      Figure("database commit p99", p99, "ms"),
                      Figure("database commit max", worst, "ms")])


if __name__ == "__main__":
    main()
