"""Driving real ``aegis run`` processes in the fault tests."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tests.conftest import clean_environ, sql_rows

REPO = Path(__file__).resolve().parents[2]


def daemon_env(aegis_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**aegis_env, "AEGIS_JOB_MODULES": "tests.jobmods.busy",
            "AEGIS_HEARTBEAT_INTERVAL": "1", "PYTHONPATH": str(REPO),
            "AEGIS_REMEDIATION": "off", "AEGIS_LOG_LEVEL": "warning", **extra}


class Spawner:
    """Starts ``aegis run`` processes; kills whatever is left at teardown. Their logs go
    to files (a pipe nobody reads would fill up and block the daemon's logging)."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def __call__(self, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in stop_all)
        process = subprocess.Popen(
            [sys.executable, "-m", "aegis", "run", *args], env=clean_environ(env),
            stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
        self.processes.append(process)
        self._logs.append(log)
        return process

    def log_of(self, process: subprocess.Popen[bytes]) -> str:
        """Everything ``process`` has logged so far."""
        log = self._logs[self.processes.index(process)]
        log.seek(0)
        return log.read().decode(errors="replace")

    def logged(self, process: subprocess.Popen[bytes], event: str) -> list[dict[str, Any]]:
        """The JSON log entries ``process`` wrote so far for ``event``, oldest first."""
        entries = []
        for line in self.log_of(process).splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == event:
                entries.append(entry)
        return entries

    def stop_all(self) -> None:
        for process, log in zip(self.processes, self._logs, strict=True):
            if process.poll() is None:
                process.kill()
            process.wait(10)
            log.seek(max(0, log.seek(0, 2) - 4000))
            # shown by pytest when the test failed
            print(f"--- aegis run pid {process.pid} exited {process.returncode}")
            print(log.read().decode(errors="replace"))
            log.close()


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


def event_counts(url: str) -> Counter[str]:
    """How many events of each type ``episodic_memory`` holds."""
    return Counter(r["event_type"] for r in rows(url, "SELECT event_type FROM episodic_memory"))
