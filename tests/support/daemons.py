"""Real ``aegis run`` daemons in subprocesses: started with the environment a test gives
them, their logs kept in files for the test to read, and every one still running killed
when the test ends."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tests.support.cli import REPO, clean_environ
from tests.support.rows import sql_rows
from tests.support.waiting import wait_for


def daemon_env(aegis_env: dict[str, str], **extra: str) -> dict[str, str]:
    """A daemon on the test's database running the busy test jobs (tests/jobmods/busy.py),
    heartbeating every second, acting on no container, logging warnings; ``extra`` on
    top."""
    return {**aegis_env, "AEGIS_JOB_MODULES": "tests.jobmods.busy",
            "AEGIS_HEARTBEAT_INTERVAL": "1", "PYTHONPATH": str(REPO),
            "AEGIS_REMEDIATION": "off", "AEGIS_LOG_LEVEL": "warning", **extra}


def supervising_env(aegis_env: dict[str, str], **settings: str) -> dict[str, str]:
    """A daemon that only supervises containers (no job module, remediation on, a sweep
    every 2 s), with ``settings`` on top (DOCKER_HOST, the strike interval...)."""
    return daemon_env(aegis_env, AEGIS_JOB_MODULES="", AEGIS_REMEDIATION="on",
                      AEGIS_JOB__DOCKER_HEALTH_CHECK__EVERY="2s", **settings)


def kill_9(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``process`` and see that it died of it."""
    process.send_signal(signal.SIGKILL)
    assert process.wait(10) == -signal.SIGKILL


def daemon_running(url: str, host: str = "test-host") -> Callable[[], bool]:
    """Whether a daemon of ``host`` has recorded itself running (for ``wait_for``)."""
    return lambda: bool(sql_rows(url, "SELECT 1 FROM daemons WHERE host = %s AND status = "
                                      "'running'", host))


class Spawner:
    """Starts ``aegis run`` processes; kills whatever is left at teardown. Their logs go
    to files (a pipe nobody reads would fill up and block the daemon's logging)."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def __call__(self, env: dict[str, str], *args: str, python: Path | None = None,
                 cwd: Path = REPO) -> subprocess.Popen[bytes]:
        """``aegis run ARGS`` in ``env``: this checkout's, or with ``python`` and ``cwd``
        another release's (tests/support/releases.py)."""
        log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in stop_all)
        process = subprocess.Popen(
            [str(python or sys.executable), "-m", "aegis", "run", *args],
            env=clean_environ(env), stdout=subprocess.DEVNULL, stderr=log, cwd=cwd)
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
            log.seek(max(0, log.seek(0, 2) - 40_000))  # a failure's story, not its last lines
            # shown by pytest when the test failed
            print(f"--- aegis run pid {process.pid} exited {process.returncode}")
            print(log.read().decode(errors="replace"))
            log.close()


def run_daemon(spawn: Spawner, aegis_env: dict[str, str], **settings: str
               ) -> subprocess.Popen[bytes]:
    """A daemon supervising the containers labelled aegis.enable=true on the test's engine
    (and nothing else), fast: 2 s strike interval, 3 s stable period, logging at info;
    started, and running once it returns."""
    url = aegis_env["AEGIS_DATABASE_URL"]
    process = spawn(supervising_env(aegis_env, AEGIS_DOCKER_SCOPE="labeled",
                                    AEGIS_STRIKE_INTERVAL="2s", AEGIS_STABLE_PERIOD="3s",
                                    AEGIS_LOG_LEVEL="info", **settings))
    wait_for(daemon_running(url), what="the daemon")
    return process
