"""aegis's connections across a failover, on a primary and its streaming standby of the
test's own (tests/support/replication.py), the URL naming both: the pool and the
listener reach whichever server accepts writes, a connection left on a server turned
read-only is dropped for the next host, and ``aegis doctor`` names the server it is on."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from aegis import api
from aegis.core.errors import DatabaseUnavailable
from tests.support.cli import run_cli
from tests.support.replication import Replicated
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

pytestmark = pytest.mark.serial  # makes failovers, bounded in real time


@pytest.fixture
def app_on_pair(replicated_pair: Replicated, tmp_path: Path) -> Iterator[api.Aegis]:
    settings = api.load_settings({"AEGIS_DATABASE_URL": replicated_pair.url,
                                  "AEGIS_HOME": str(tmp_path / "home"), "AEGIS_HOST": "pair",
                                  "AEGIS_HTTP_ADDR": "off"})
    with api.connect(settings, migrate=False) as app:
        yield app


def on(app: api.Aegis, address: str) -> bool:
    """Whether the app's next connection answers from ``address``, as the primary."""
    try:
        server = app.db.server_info()
    except DatabaseUnavailable:
        return False
    return server.address == address and server.primary


def has_event(url: str, summary: str) -> bool:
    return bool(rows(url, "SELECT 1 FROM episodic_memory WHERE summary = %s", summary))


def listener_on(url: str) -> bool:
    return bool(rows(url, "SELECT 1 FROM pg_stat_activity WHERE application_name = "
                          "'aegis:pair:listen'"))


def test_the_pool_and_the_listener_follow_the_promoted_standby(
        replicated_pair: Replicated, app_on_pair: api.Aegis) -> None:
    pair, app = replicated_pair, app_on_pair
    assert on(app, pair.primary.address)
    wake = threading.Event()
    app.db.subscribe("aegis_failover_test", wake)
    wait_for(lambda: listener_on(pair.primary.url()), what="the listener on the primary")

    pair.fail_over()
    wait_for(lambda: on(app, pair.standby.address), what="the pool on the promoted standby")
    app.store.record_event("failover_test", "written after the failover")
    assert has_event(pair.standby.url(), "written after the failover")
    wait_for(lambda: listener_on(pair.standby.url()), what="the listener on the new primary")
    wake.clear()
    with psycopg.connect(pair.standby.url(), autocommit=True) as conn:
        conn.execute("NOTIFY aegis_failover_test")
    assert wake.wait(10), "a NOTIFY on the new primary woke nobody"


def test_a_connection_on_a_server_turned_read_only_is_dropped_for_the_next_host(
        replicated_pair: Replicated, app_on_pair: api.Aegis) -> None:
    pair, app = replicated_pair, app_on_pair
    assert on(app, pair.primary.address)  # the pool holds a connection to the primary
    # the primary demoted in place (every transaction read-only from now), the standby
    # promoted: the pooled connection is still open, on a server that refuses writes
    pair.primary.execute("ALTER SYSTEM SET default_transaction_read_only = on")
    pair.primary.execute("SELECT pg_reload_conf()")
    pair.standby.promote()

    app.store.record_event("failover_test", "refused by the old primary")  # spooled
    app.store.record_event("failover_test", "taken by the new primary")
    assert has_event(pair.standby.url(), "taken by the new primary")
    assert on(app, pair.standby.address)
    app.store.replay_spool()
    assert has_event(pair.standby.url(), "refused by the old primary")
    assert not has_event(pair.primary.url(), "refused by the old primary")


def test_doctor_names_the_server_it_is_on_and_whether_it_is_the_primary(
        replicated_pair: Replicated, tmp_path: Path) -> None:
    pair = replicated_pair
    env = {"AEGIS_HOME": str(tmp_path / "home"), "AEGIS_HOST": "pair"}

    def database_check(url: str) -> dict[str, str]:
        done = run_cli("doctor", "--json", env={**env, "AEGIS_DATABASE_URL": url}, timeout=120)
        checks = {check["check"]: check for check in json.loads(done.stdout)}
        return dict(checks["database"])

    both = database_check(pair.url)
    assert both["status"] == "ok"
    assert f"on {pair.primary.address} of " in both["detail"]
    assert "the primary" in both["detail"]
    standby = database_check(pair.standby.url())  # a standby named alone
    assert standby["status"] == "fail"
    assert f"on {pair.standby.address}" in standby["detail"]
    assert "a standby (read-only)" in standby["detail"]
