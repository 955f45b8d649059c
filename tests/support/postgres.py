"""The tests' PostgreSQL: one embedded ``pgserver`` per pytest process (each worker of a
parallel run has its own), or the server of ``AEGIS_TEST_DATABASE_URL``; on it a migrated
template database per process, and a fresh copy of it for each test. A test that stops
its server gets a server of its own (``OwnPostgres``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aegis.storage.db import Database


def _pgserver() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


@contextlib.contextmanager
def session_server() -> Iterator[str]:
    """A superuser DSN: AEGIS_TEST_DATABASE_URL's, else an embedded server of this process
    under /tmp/aegis-test-pg-PID, stopped and deleted afterwards."""
    configured = os.environ.get("AEGIS_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    # A short path keeps the unix socket inside pgdata (socket paths max out at 107 bytes).
    pgdata = Path(f"/tmp/aegis-test-pg-{os.getpid()}")
    server = _pgserver().get_server(pgdata, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def template_name() -> str:
    """This process's template database: one per worker of a parallel run, so that two
    workers on one server (AEGIS_TEST_DATABASE_URL) never rebuild each other's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"aegis_test_template_{worker}" if worker else "aegis_test_template"


def _admin(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


def migrated_template(admin_url: str) -> str:
    """The template database made afresh and migrated; its DSN."""
    name = template_name()
    with _admin(admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(admin_url, dbname=name)
    db = Database(url)
    try:
        db.migrate()
    finally:
        db.close()
    return url


def create_database(admin_url: str, template: bool = True) -> str:
    """A new database, a copy of the migrated template (else empty); its DSN."""
    name = f"aegis_test_{uuid.uuid4().hex[:12]}"
    with _admin(admin_url) as conn:
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name()}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(admin_url, dbname=name)


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database of ``url``, whoever is connected to it."""
    name = conninfo_to_dict(url)["dbname"]
    with _admin(admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class OwnPostgres:
    """An embedded PostgreSQL of one test alone, migrated, which the test may stop and
    start: the outage it makes disturbs no other test."""

    server: Any
    pgdata: Path
    url: str

    @classmethod
    def create(cls) -> OwnPostgres:
        # short: the unix socket lives inside pgdata (socket paths max out at 107 bytes)
        pgdata = Path(f"/tmp/aegis-own-pg-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        server = _pgserver().get_server(pgdata, cleanup_mode="delete")
        own = cls(server, pgdata, server.get_uri())
        db = Database(own.url)
        db.migrate()
        db.close()
        return own

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        subprocess.run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), *args],
                       check=True, capture_output=True, timeout=60,
                       user=self.server.system_user)

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        socket_dir = self.server.get_postmaster_info().socket_dir
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l",
                     str(self.pgdata / "restart.log"), "start")
        assert self.server.get_uri() == self.url  # where the test's clients will look

    def remove(self) -> None:
        """Stopped and deleted (started again first if the test left it stopped: pgserver
        deletes a running server)."""
        if not (self.pgdata / "postmaster.pid").exists():
            self.start()
        self.server.cleanup()


def stop_embedded(home: Path, timeout_s: float = 15.0) -> None:
    """Stop the embedded PostgreSQL an aegis command started under AEGIS_HOME ``home``
    (``aegis db url`` leaves it running), and wait until it has exited."""
    pid_file = home / "pgdata" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
