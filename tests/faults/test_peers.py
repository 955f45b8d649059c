"""Hosts watch each other: three real daemons on distinct host names share one database.
One killed with SIGKILL is reported silent exactly once (one event, one alert) by the
survivors; one stopped cleanly is not; the killed one restarted is reported back."""

from __future__ import annotations

import signal
import time

from tests.support.daemons import Spawner
from tests.support.rows import sql_rows
from tests.support.waiting import wait_for

HOSTS = ("peer-a", "peer-b", "peer-c")


def env_of(aegis_env: dict[str, str], host: str) -> dict[str, str]:
    return {**aegis_env, "AEGIS_HOST": host, "AEGIS_HOME": f"{aegis_env['AEGIS_HOME']}-{host}",
            "AEGIS_HEARTBEAT_INTERVAL": "1", "AEGIS_PEER_TIMEOUT": "4s",
            "AEGIS_JOB__PEER_WATCH__EVERY": "1s", "AEGIS_REMEDIATION": "off",
            "AEGIS_LOG_LEVEL": "warning"}


def peer_events(url: str, event_type: str) -> list[dict[str, object]]:
    return sql_rows(url, "SELECT details->>'host' AS host, host AS recorded_by FROM "
                    "episodic_memory WHERE event_type = %s ORDER BY id", event_type)


def alert_count(url: str, title: str) -> int:
    return int(sql_rows(url, "SELECT count(*) AS n FROM outbox WHERE channel = 'alerts' "
                        "AND title = %s", title)[0]["n"])


def running(url: str) -> set[str]:
    return {str(row["host"]) for row in sql_rows(
        url, "SELECT host FROM daemons WHERE status = 'running' AND last_heartbeat_at > "
        "now() - interval '3 seconds'")}


def test_a_killed_host_is_reported_silent_once_a_stopped_one_never_and_back_when_back(
        spawn: Spawner, aegis_env: dict[str, str], database_url: str) -> None:
    daemons = {host: spawn(env_of(aegis_env, host)) for host in HOSTS}
    wait_for(lambda: running(database_url) == set(HOSTS), 40, "three daemons heartbeating")

    daemons["peer-c"].kill()  # SIGKILL: no clean stop, its heartbeat just ends
    daemons["peer-c"].wait(10)
    wait_for(lambda: peer_events(database_url, "peer_silent"), 20, "peer_silent for peer-c")
    time.sleep(4)  # four more looks at the fleet: still one event, one alert
    silent = peer_events(database_url, "peer_silent")
    assert [event["host"] for event in silent] == ["peer-c"]
    assert silent[0]["recorded_by"] in {"peer-a", "peer-b"}
    assert alert_count(database_url, "aegis on peer-c is silent") == 1

    daemons["peer-b"].send_signal(signal.SIGTERM)  # a clean stop is not a silence
    assert daemons["peer-b"].wait(30) == 0
    time.sleep(8)
    assert [event["host"] for event in peer_events(database_url, "peer_silent")] == ["peer-c"]

    spawn(env_of(aegis_env, "peer-c"))  # the same AEGIS_HOME: takes its lease back at once
    wait_for(lambda: peer_events(database_url, "peer_resumed"), 30, "peer_resumed for peer-c")
    assert [event["host"] for event in peer_events(database_url, "peer_resumed")] == ["peer-c"]
    assert alert_count(database_url, "aegis on peer-c is back") == 1
