"""Driving real ``aegis run`` processes in the fault tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import clean_environ, sql_rows

REPO = Path(__file__).resolve().parents[2]


def daemon_env(aegis_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**aegis_env, "AEGIS_JOB_MODULES": "tests.jobmods.busy",
            "AEGIS_HEARTBEAT_INTERVAL": "1", "PYTHONPATH": str(REPO),
            "AEGIS_REMEDIATION": "off", "AEGIS_LOG_LEVEL": "warning", **extra}


class Spawner:
    """Starts ``aegis run`` processes; kills whatever is left at teardown."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def __call__(self, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "aegis", "run", *args], env=clean_environ(env),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            _, stderr = process.communicate(timeout=10)
            # shown by pytest when the test failed
            print(f"--- aegis run pid {process.pid} exited {process.returncode}")
            print(stderr.decode(errors="replace")[-4000:])


def wait_for(condition: Callable[[], Any], timeout_s: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what or condition}")


def rows(url: str, query: str, *params: Any) -> list[dict[str, Any]]:
    return sql_rows(url, query, *params)


def daemon_running(url: str, host: str = "test-host") -> Callable[[], bool]:
    return lambda: bool(rows(url, "SELECT 1 FROM daemons WHERE host = %s AND status = "
                                  "'running'", host))
