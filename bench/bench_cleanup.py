"""memory_cleanup throughput: 1,000,000 low events past the retention plus 100,000 events
that stay, deleted in 10,000-row batches on a real PostgreSQL (the embedded server).

Goals: at least 100,000 rows deleted per second, and no single transaction (one batch)
longer than 500 ms, so the daemon and other writers never wait on the cleanup for long.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg

from aegis.reports.retention import prune
from bench.common import bench_app
from bench.report import Figure, report

OLD_LOW = 1_000_000
OTHERS = 100_000
GOAL_ROWS_PER_S = 100_000
GOAL_LONGEST_TX_MS = 500.0
NOW = datetime(2026, 4, 1, 0, 30, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=30)


def seed(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO episodic_memory (uid, timestamp, event_type, summary, details,
                                         importance, host)
            SELECT gen_random_uuid(), %(cutoff)s - g * interval '2 seconds', 'noise',
                   'an old routine event', jsonb_build_object('n', g), 'low', 'bench'
            FROM generate_series(1, %(old_low)s) g""", {"cutoff": CUTOFF, "old_low": OLD_LOW})
        conn.execute("""
            INSERT INTO episodic_memory (uid, timestamp, event_type, summary, importance, host)
            SELECT gen_random_uuid(),
                   CASE WHEN g %% 2 = 0 THEN %(cutoff)s - g * interval '9 seconds'
                        ELSE %(cutoff)s + g * interval '1 second' END,
                   'kept', 'an event to keep',
                   (CASE WHEN g %% 2 = 1 THEN 'low' ELSE 'high' END)::importance, 'bench'
            FROM generate_series(1, %(others)s) g""", {"cutoff": CUTOFF, "others": OTHERS})
        conn.execute("VACUUM ANALYZE episodic_memory")


def measure() -> dict[str, float]:
    with bench_app() as app:
        seed(app.db.dsn)
        started = time.perf_counter()
        pruned = prune("episodic_memory", app.store.prune_low_events, CUTOFF)
        elapsed_s = time.perf_counter() - started
    if pruned.rows != OLD_LOW:
        raise SystemExit(f"deleted {pruned.rows} rows, expected {OLD_LOW}")
    return {"rows": pruned.rows, "batches": pruned.batches, "seconds": elapsed_s,
            "rows_per_s": pruned.rows / elapsed_s,
            "longest_tx_ms": pruned.longest_batch_s * 1000}


def main() -> None:
    result = measure()
    rate_ok = result["rows_per_s"] >= GOAL_ROWS_PER_S
    tx_ok = result["longest_tx_ms"] < GOAL_LONGEST_TX_MS
    print(f"cleanup: {result['rows']:.0f} low events in {result['batches']:.0f} batches, "
          f"{result['seconds']:.2f} s, {result['rows_per_s']:,.0f} rows/s "
          f"(goal >= {GOAL_ROWS_PER_S:,}: {'ok' if rate_ok else 'MISSED'}); longest "
          f"transaction {result['longest_tx_ms']:.0f} ms (goal < {GOAL_LONGEST_TX_MS:.0f} ms: "
          f"{'ok' if tx_ok else 'MISSED'})")
    report("cleanup", [
        Figure("cleanup rows/s", result["rows_per_s"], "rows/s", f">= {GOAL_ROWS_PER_S:,}",
               rate_ok),
        Figure("cleanup longest batch", result["longest_tx_ms"], "ms",
               f"< {GOAL_LONGEST_TX_MS:.0f} ms", tx_ok)])


if __name__ == "__main__":
    main()
