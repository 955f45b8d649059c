"""Every ```sql example of docs/sql.md runs on a migrated database, so none can rot."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

SQL_DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
SEED_QUERY = ("SELECT event_type, summary, timestamp FROM episodic_memory WHERE event_type IN "
              "('morning_status','evening_summary','docker_health_check') "
              "ORDER BY timestamp DESC LIMIT 10;")


def sql_blocks() -> list[str]:
    return re.findall(r"^```sql\n(.*?)^```", SQL_DOC.read_text(encoding="utf-8"),
                      flags=re.M | re.S)


def test_the_page_has_examples_including_the_seed_query() -> None:
    blocks = [block.strip() for block in sql_blocks()]
    assert len(blocks) >= 10
    assert SEED_QUERY in blocks


@pytest.mark.parametrize("block", sql_blocks(), ids=lambda b: " ".join(b.split())[:48])
def test_example_runs(block: str, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO episodic_memory (uid, event_type, summary, importance, host, details) "
            "VALUES (gen_random_uuid(), 'morning_status', 'all good', 'high', 'web-01', "
            "'{\"container\": \"web\"}')")
        cursor = conn.execute(block.encode())
        if cursor.description is not None:
            cursor.fetchall()
