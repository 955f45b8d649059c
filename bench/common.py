"""What the benchmarks share: an in-process aegis on a throwaway embedded database, and a
real ``aegis run`` daemon on one, with an environment cleaned of the caller's settings."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aegis
from aegis.core.processes import pid_alive

REPO = Path(__file__).resolve().parents[1]
# settings a benchmark's own environment passes on to its daemon, to measure a variant
# (AEGIS_STORM_THRESHOLD=off: a burst without storms)
PASSED_THROUGH = ("AEGIS_STORM_THRESHOLD",)


def unwind_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit, so a benchmark stopped with it unwinds as on Ctrl-C
    and its daemon, containers and embedded database are cleaned up; a second SIGTERM is
    ignored, so it cannot cut that clean-up short."""

    def unwind(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, unwind)


unwind_on_sigterm()  # every benchmark imports this module


def clean_env(home: str, host: str = "bench", **extra: str) -> dict[str, str]:
    """This process's environment without any aegis, Postgres or Discord setting (but
    those PASSED_THROUGH), plus a home, a host name, no HTTP endpoint, quiet logs and
    ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k in PASSED_THROUGH or not k.startswith(("AEGIS_", "POSTGRES_", "DISCORD_"))}
    return {**env, "AEGIS_HOME": home, "AEGIS_HOST": host, "AEGIS_HTTP_ADDR": "off",
            "AEGIS_LOG_LEVEL": "error", "PYTHONPATH": str(REPO), **extra}


def remove_container(container: Any) -> None:
    """Remove ``container`` by force; one gone already, or that the engine gave up on, is
    left (the benchmark's clean-up goes on with the others)."""
    with contextlib.suppress(Exception):
        container.remove(force=True)


def stop_postgres(pgdata: Path, timeout_s: float = 60.0) -> None:
    """Fast shutdown (SIGINT to the postmaster) of the server in ``pgdata``, if one runs,
    waiting for it to exit. pgserver's own cleanup leaves a server up while any process
    that attached to it lives, and the benchmark itself is one of them."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


@contextlib.contextmanager
def bench_home() -> Iterator[str]:
    """A throwaway AEGIS_HOME. Its embedded database, if one was started, is stopped
    before the folder is removed: a server still writing WAL would make the removal
    fail, and one left running would outlive the benchmark."""
    with tempfile.TemporaryDirectory(prefix="aegis-bench-") as home:
        try:
            yield home
        finally:
            stop_postgres(Path(home) / "pgdata")


@contextlib.contextmanager
def bench_app(**extra: str) -> Iterator[aegis.Aegis]:
    """An in-process aegis on a fresh embedded database, gone afterwards."""
    with bench_home() as home:
        settings = aegis.load_settings({"AEGIS_HOME": home, "AEGIS_HOST": "bench",
                                        "AEGIS_HTTP_ADDR": "off", "AEGIS_LOG_LEVEL": "error",
                                        **extra})
        with aegis.connect(settings, keep_embedded=True) as app:
            yield app


@contextlib.contextmanager
def daemon_home(host: str = "bench", **extra: str) -> Iterator[tuple[dict[str, str], str]]:
    """The environment of an ``aegis run`` on a fresh embedded database, migrated and left
    running for it, and that database's DSN; the database is stopped afterwards."""
    with bench_home() as home:
        env = clean_env(home, host, **extra)
        settings = aegis.load_settings({**env, "AEGIS_HOST": f"{host}-bench"})
        with aegis.connect(settings, keep_embedded=True) as app:
            dsn = app.db.dsn
        yield env, dsn


def start_daemon(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "aegis", "run"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as an operator would; SIGKILL if it has not stopped within a minute."""
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(10)


def percentile(values: list[float], fraction: float) -> float:
    """The value at ``fraction`` of ``values`` sorted (the maximum for 0.99 of 100 or
    fewer samples); 0.0 for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0
