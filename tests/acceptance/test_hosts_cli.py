"""aegis hosts as an operator runs it, with incidents of every kind on the host: its
`incidents` column counts open incidents, a parent and the dependants folded into its
incident once, a Swarm task aegis observes as one of its own."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg

from tests.support.cli import columns, run_cli

DAEMON = """
INSERT INTO daemons (instance_id, host, pid, version, started_at, last_heartbeat_at, status)
VALUES ('i-1', 'test-host', 1, '1.0', %(at)s, %(at)s, 'running')
"""
CONTAINER = """
INSERT INTO containers (host, name, health, has_healthcheck, supervision, state, phase,
                        strikes, incident, incident_class, folded_into)
VALUES ('test-host', %(name)s, %(health)s, true, %(supervision)s, %(phase)s, %(phase)s,
        %(strikes)s, %(incident)s, %(class)s, %(folded_into)s)
"""
ROWS = [  # name, health, supervision, phase, strikes, incident, class, folded into
    ("vpn", "unhealthy", "supervised", "escalated", 3, 1, "unhealthy", None),
    ("vpn-client", "unhealthy", "supervised", "striking", 1, 1, "unhealthy", "vpn"),
    ("downloader", "unhealthy", "supervised", "striking", 1, 4, "unhealthy", "vpn"),
    ("web.1.task", "unhealthy", "orchestrated", "striking", 1, 1, "unhealthy", None),
    ("db", "healthy", "supervised", "ok", 0, 2, "oom", None),
]


def seed_fleet(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(DAEMON, {"at": datetime.now(UTC)})
        for name, health, supervision, phase, strikes, incident, klass, parent in ROWS:
            conn.execute(CONTAINER, {"name": name, "health": health,
                                     "supervision": supervision, "phase": phase,
                                     "strikes": strikes, "incident": incident,
                                     "class": klass, "folded_into": parent})


def test_incidents_counts_a_parent_and_its_folded_dependants_once(
        aegis_env: dict[str, str], database_url: str) -> None:
    seed_fleet(database_url)
    listed = run_cli("hosts", "--json", env=aegis_env)
    assert listed.returncode == 0, listed.stderr
    [host] = json.loads(listed.stdout)
    assert {key: host[key] for key in ("host", "supervised", "unhealthy", "in_incident",
                                       "incidents")} == {
        "host": "test-host", "supervised": 4, "unhealthy": 4, "in_incident": 4,
        "incidents": 2}

    table = run_cli("hosts", env=aegis_env)
    assert table.returncode == 0, table.stderr
    header, line = table.stdout.splitlines()
    found = columns(header, line)
    assert (found["HOST"], found["SUPERVISED"], found["UNHEALTHY"], found["INCIDENTS"]) == (
        "test-host", "4", "4", "2")
