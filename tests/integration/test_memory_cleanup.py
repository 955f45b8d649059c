"""memory_cleanup against a real PostgreSQL: exactly the low events past the retention go,
in batches; medium, high and critical events, recent rows, running job runs and
pending notifications stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from aegis import api
from aegis.reports.retention import prune, retention_cutoffs
from jobs.memory_cleanup import memory_cleanup
from tests.support.rows import sql_rows
from tests.support.scheduling import job_context

NOW = datetime(2026, 4, 1, 0, 30, tzinfo=UTC)
RETENTION = timedelta(days=30)  # the default AEGIS_EVENT_RETENTION


def run_sql(url: str, query: str, **params: Any) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query, params)


def seed_events(url: str, *, old_low: int, others: int) -> None:
    """``old_low`` low events older than the retention, and ``others`` that must stay: old
    medium/high/critical events and recent low ones, interleaved in time and id."""
    cutoff = NOW - RETENTION
    run_sql(url, """
        INSERT INTO episodic_memory (uid, timestamp, event_type, summary, importance, host)
        SELECT gen_random_uuid(), %(cutoff)s - g * interval '1 second',
               'noise', 'old low event', 'low', 'h'
        FROM generate_series(1, %(old_low)s) g""", cutoff=cutoff, old_low=old_low)
    run_sql(url, """
        INSERT INTO episodic_memory (uid, timestamp, event_type, summary, importance, host)
        SELECT gen_random_uuid(),
               CASE WHEN g %% 2 = 0 THEN %(cutoff)s - g * interval '7 seconds'
                    ELSE %(cutoff)s + g * interval '1 second' END,
               'kept', 'an event to keep',
               (CASE WHEN g %% 2 = 1 THEN 'low'
                     ELSE (ARRAY['medium', 'high', 'critical'])[1 + (g / 2) %% 3] END
               )::importance,
               'h'
        FROM generate_series(1, %(others)s) g""", cutoff=cutoff, others=others)
    # The boundary: an event exactly at the cut-off is not older than it.
    run_sql(url, """
        INSERT INTO episodic_memory (uid, timestamp, event_type, summary, importance, host)
        VALUES (gen_random_uuid(), %(cutoff)s, 'boundary', 'exactly at the cut-off', 'low',
                'h')""", cutoff=cutoff)


def counts(url: str) -> dict[tuple[str, bool], int]:
    rows = sql_rows(url, "SELECT importance::text AS importance, timestamp < %s AS old, "
                    "count(*) AS n FROM episodic_memory WHERE event_type <> 'memory_cleanup' "
                    "GROUP BY 1, 2", NOW - RETENTION)
    return {(row["importance"], row["old"]): row["n"] for row in rows}


def test_a_million_old_low_events_go_and_nothing_else(app: api.Aegis) -> None:
    url = app.db.dsn
    seed_events(url, old_low=1_000_000, others=100_000)
    before = counts(url)
    assert before[("low", True)] == 1_000_000
    kept_before = {key: n for key, n in before.items() if key != ("low", True)}
    assert sum(kept_before.values()) == 100_001

    result = memory_cleanup(job_context(app, "memory_cleanup", NOW, NOW))

    assert result["events_deleted"] == 1_000_000
    assert result["complete"] is True
    assert result["tables"]["episodic_memory"]["batches"] >= 100  # 10k rows per batch
    assert counts(url) == kept_before
    [event] = sql_rows(url, "SELECT summary, importance::text AS importance, details "
                       "FROM episodic_memory WHERE event_type = 'memory_cleanup'")
    assert event["importance"] == "medium"
    assert event["details"]["events_deleted"] == 1_000_000
    assert event["details"]["rows_deleted"] == 1_000_000
    assert event["details"]["seconds"] > 0
    assert event["summary"].startswith("deleted 1000000 low events, 0 job runs, 0 finished "
                                       "notifications and 0 removed containers")


def test_job_runs_and_finished_messages_past_their_retention_go(app: api.Aegis) -> None:
    url = app.db.dsn
    old_run = NOW - timedelta(days=91)
    recent_run = NOW - timedelta(days=89)
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO job_runs (job_id, scope_key, host, trigger, scheduled_for, status) "
            "VALUES ('j', 'h', 'h', 'schedule', %s, %s)",
            [(old_run, "ok"), (old_run - timedelta(hours=1), "failed"),
             (old_run - timedelta(hours=2), "running"), (recent_run, "ok")])
        cursor.executemany(
            "INSERT INTO outbox (channel, dedup_key, host, title, status, created_at) "
            "VALUES ('alerts', %s, 'h', 't', %s, %s)",
            [("old-delivered", "delivered", NOW - timedelta(days=15)),
             ("old-pending", "pending", NOW - timedelta(days=15)),
             ("old-undeliverable", "undeliverable", NOW - timedelta(days=15)),
             ("old-failed", "failed", NOW - timedelta(days=15)),
             ("recent-failed", "failed", NOW - timedelta(days=13)),
             ("recent-delivered", "delivered", NOW - timedelta(days=13))])
    result = memory_cleanup(job_context(app, "memory_cleanup", NOW, NOW))
    assert result["job_runs_deleted"] == 2
    assert result["outbox_deleted"] == 3
    assert sorted(r["status"] for r in sql_rows(url, "SELECT status FROM job_runs")) == [
        "ok", "running"]
    assert sorted(r["dedup_key"] for r in sql_rows(url, "SELECT dedup_key FROM outbox")) == [
        "old-pending", "recent-delivered", "recent-failed"]


def test_rows_of_containers_removed_past_their_retention_go(app: api.Aegis) -> None:
    """A removed container's row waits 30 days for a re-created successor; then it goes.
    Its events stay."""
    url = app.db.dsn
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO containers (host, name, removed_at) VALUES (%s, %s, %s)",
            [("h", "gone-long-ago", NOW - timedelta(days=31)),
             ("h2", "gone-long-ago", NOW - timedelta(days=40)),
             ("h", "gone-recently", NOW - timedelta(days=29)),
             ("h", "running", None)])
        cursor.execute(
            "INSERT INTO episodic_memory (uid, timestamp, event_type, summary, importance, "
            "host, details) VALUES (gen_random_uuid(), %s, 'container_escalated', 'x', "
            "'critical', 'h', jsonb_build_object('container', 'gone-long-ago'))",
            (NOW - timedelta(days=35),))
    result = memory_cleanup(job_context(app, "memory_cleanup", NOW, NOW))
    assert result["containers_deleted"] == 2
    assert result["cutoffs"]["containers"] == (NOW - timedelta(days=30)).isoformat()
    assert sorted((r["host"], r["name"]) for r in sql_rows(
        url, "SELECT host, name FROM containers")) == [("h", "gone-recently"), ("h", "running")]
    assert len(sql_rows(url, "SELECT 1 FROM episodic_memory "
                             "WHERE event_type = 'container_escalated'")) == 1


def test_the_retention_is_configurable(aegis_env: dict[str, str]) -> None:
    from aegis.core.config import load_settings

    settings = load_settings({**aegis_env, "AEGIS_EVENT_RETENTION": "7"})
    with api.connect(settings, migrate=False) as app:
        run_sql(app.db.dsn, """
            INSERT INTO episodic_memory (uid, timestamp, event_type, summary, importance, host)
            SELECT gen_random_uuid(), %(now)s - g * interval '1 day', 'noise', 'x', 'low', 'h'
            FROM generate_series(1, 10) g""", now=NOW)
        result = memory_cleanup(job_context(app, "memory_cleanup", NOW, NOW))
    assert result["events_deleted"] == 3  # 8, 9 and 10 days old; exactly 7 days is kept
    assert result["cutoffs"]["events"] == (NOW - timedelta(days=7)).isoformat()


def test_a_stop_request_ends_the_cleanup_between_batches(app: api.Aegis) -> None:
    url = app.db.dsn
    seed_events(url, old_low=250, others=0)
    batches: list[int] = []

    def stop_after_two() -> bool:
        batches.append(1)
        return len(batches) > 2

    pruned = prune("episodic_memory", app.store.prune_low_events,
                   NOW - RETENTION, batch_rows=100, should_stop=stop_after_two)
    assert (pruned.rows, pruned.batches, pruned.complete) == (200, 2, False)
    assert counts(url)[("low", True)] == 50
    rest = prune("episodic_memory", app.store.prune_low_events, NOW - RETENTION,
                 batch_rows=100)
    assert (rest.rows, rest.complete) == (50, True)


def test_many_events_with_one_timestamp_are_all_deleted(app: api.Aegis) -> None:
    """The keyset restarts at the last timestamp seen; a batch boundary inside a run of
    equal timestamps loses nothing."""
    run_sql(app.db.dsn, """
        INSERT INTO episodic_memory (uid, timestamp, event_type, summary, importance, host)
        SELECT gen_random_uuid(), %(at)s, 'noise', 'x', 'low', 'h'
        FROM generate_series(1, 1050) g""", at=NOW - timedelta(days=40))
    pruned = prune("episodic_memory", app.store.prune_low_events, NOW - RETENTION,
                   batch_rows=100)
    assert pruned.rows == 1050
    assert sql_rows(app.db.dsn, "SELECT count(*) AS n FROM episodic_memory")[0]["n"] == 0


def test_cutoffs_need_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        retention_cutoffs(datetime(2026, 1, 1), event_retention_s=1, job_runs_retention_s=1,
                          outbox_retention_s=1, container_retention_s=1)
