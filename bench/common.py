"""What the benchmarks share: an in-process aegis on a throwaway embedded database, and a
real ``aegis run`` daemon on one, with an environment cleaned of the caller's settings."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aegis

REPO = Path(__file__).resolve().parents[1]


def clean_env(home: str, host: str = "bench", **extra: str) -> dict[str, str]:
    """This process's environment without any aegis, Postgres or Discord setting, plus a
    home, a host name, no HTTP endpoint, quiet logs and ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AEGIS_", "POSTGRES_", "DISCORD_"))}
    return {**env, "AEGIS_HOME": home, "AEGIS_HOST": host, "AEGIS_HTTP_ADDR": "off",
            "AEGIS_LOG_LEVEL": "error", "PYTHONPATH": str(REPO), **extra}


@contextlib.contextmanager
def bench_home() -> Iterator[str]:
    """A throwaway AEGIS_HOME. Its embedded database, if one was started, is stopped
    before the folder is removed: a server still writing WAL would make the removal
    fail."""
    with tempfile.TemporaryDirectory(prefix="aegis-bench-") as home:
        try:
            yield home
        finally:
            if (Path(home) / "pgdata").exists():
                with contextlib.suppress(Exception):
                    subprocess.run([sys.executable, "-c", "import pgserver,sys; "
                                    "pgserver.get_server(sys.argv[1], cleanup_mode='stop')"
                                    ".cleanup()", str(Path(home) / "pgdata")],
                                   check=False, capture_output=True, timeout=60)


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
