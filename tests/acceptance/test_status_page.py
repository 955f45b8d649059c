"""The status page of a real ``aegis run``, read with curl as an operator would: refused
beyond loopback without a token, and with one, 401 without it, ``/healthz`` open, the
overview of an escalation whose probe printed markup returned escaped, and nothing but GET
and HEAD answered."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.daemons import Spawner, daemon_env
from tests.support.ports import free_port
from tests.support.seeds import HOSTILE, add_container, add_event
from tests.support.waiting import wait_for

TOKEN = "7d3e9a1b5c2f8e4d6a0b9c1e3f5a7d2b"
SCRIPT_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
IMG_ESCAPED = "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"


def curl(url: str, *args: str, tmp: Path) -> tuple[int, str]:
    """``curl`` of ``url``: the status code and the body."""
    if shutil.which("curl") is None:
        pytest.fail("curl is missing (tests/ensure_browser.sh installs it)")
    body = tmp / "body"
    result = subprocess.run(["curl", "-s", "-o", str(body), "-w", "%{http_code}",
                             "--max-time", "15", *args, url],
                            capture_output=True, text=True, timeout=30, check=False)
    return int(result.stdout or 0), body.read_text() if body.exists() else ""


def test_listening_beyond_loopback_without_a_token_exits_2_naming_the_token(
        aegis_env: dict[str, str]) -> None:
    port = free_port()
    result = run_cli("run", env={**aegis_env, "AEGIS_HTTP_ADDR": f"0.0.0.0:{port}"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"aegis: configuration error: AEGIS_HTTP_TOKEN: must be set when AEGIS_HTTP_ADDR "
        f"(0.0.0.0:{port}) listens beyond loopback (make one with: openssl rand -hex 32)"]
    with pytest.raises(ConnectionRefusedError):  # nothing listens
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_with_the_token_curl_gets_401_without_it_and_the_overview_escaped_with_it(
        aegis_env: dict[str, str], spawn: Spawner, tmp_path: Path) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    add_container(url, "web", state="escalated", phase="escalated", strikes=3, incident=1,
                  health="unhealthy")
    add_event(url, datetime.now(UTC), "container_escalated", "critical", container="web",
              incident=1, probe_output=HOSTILE)
    port = free_port()
    spawn(daemon_env(aegis_env, AEGIS_JOB_MODULES="", AEGIS_HTTP_ADDR=f"0.0.0.0:{port}",
                     AEGIS_HTTP_TOKEN=TOKEN))
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: curl(base + "/healthz", tmp=tmp_path)[0] == 200, 60, "/healthz 200")

    status, body = curl(base + "/", tmp=tmp_path)
    assert status == 401
    assert "web" not in body
    assert curl(base + "/metrics", tmp=tmp_path)[0] == 401
    assert curl(base + "/events", "-H", f"Authorization: Bearer {TOKEN[:-1]}",
                tmp=tmp_path)[0] == 401
    status, body = curl(base + "/healthz", tmp=tmp_path)
    assert status == 200
    assert json.loads(body)["status"] == "ok"

    status, body = curl(base + "/", "-H", f"Authorization: Bearer {TOKEN}", tmp=tmp_path)
    assert status == 200
    assert f"{SCRIPT_ESCAPED}\n{IMG_ESCAPED}" in body
    assert "<script" not in body
    assert "<img" not in body
    assert curl(base + "/metrics", "-H", f"Authorization: Bearer {TOKEN}",
                tmp=tmp_path)[0] == 200
    for method in ("POST", "PUT", "DELETE"):
        assert curl(base + "/", "-X", method, "-H", f"Authorization: Bearer {TOKEN}",
                    tmp=tmp_path)[0] == 405
