"""A PostgreSQL primary and its streaming standby, made by the test with Debian's
PostgreSQL 15 (``initdb``, ``pg_basebackup -R``, ``pg_ctl promote``) on free ports of the
loopback, in a folder of the test's own: for the failover tests and bench/bench_failover.py.

PostgreSQL refuses to run as root; as root the servers run as the ``postgres`` user (else
``nobody``), which owns the folder. Asynchronous by default; ``synchronous=True`` makes
the primary wait for the standby at each commit (``synchronous_standby_names = '*'``,
``synchronous_commit = on``), set on the primary only after the base backup, so the
promoted standby does not wait for a standby of its own.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from aegis.storage.db import Database
from tests.support.ports import free_port
from tests.support.required import skip_or_fail
from tests.support.waiting import wait_for

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DATABASE = "aegis"
SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockets}'
wal_level = replica
max_wal_senders = 5
wal_keep_size = '128MB'
hot_standby = on
fsync = off
log_min_messages = warning
"""


def missing_postgresql() -> str | None:
    """Why the servers cannot run here, or None."""
    missing = [name for name in ("initdb", "pg_ctl", "pg_basebackup", "postgres")
               if not (PG_BIN / name).exists()]
    return f"Debian's postgresql-15 is missing: {', '.join(missing)}" if missing else None


def _system_user() -> str | None:
    """Who runs the servers: None (this process's user) unless this process is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise AssertionError("no unprivileged user (postgres, nobody) to run PostgreSQL as")


@dataclass
class Node:
    """One server: its data folder, its port, who runs it."""

    name: str
    pgdata: Path
    port: int
    user: str | None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, dbname: str = DATABASE) -> str:
        return make_conninfo(host="127.0.0.1", port=str(self.port), user="postgres",
                             dbname=dbname, connect_timeout="3")

    def run(self, tool: str, *args: str, timeout_s: float = 120) -> None:
        done = subprocess.run([str(PG_BIN / tool), *args], capture_output=True,
                              timeout=timeout_s, user=self.user, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed: "
                                 f"{done.stderr.decode(errors='replace')[-2000:]}")

    def configure(self, sockets: Path) -> None:
        with (self.pgdata / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(SETTINGS.format(port=self.port, sockets=sockets))

    def start(self, tries: int = 3) -> None:
        """Started; on another free port if something took this one meanwhile (a port
        found free is only free until someone binds it)."""
        log = self.pgdata.parent / f"{self.name}.log"
        for attempt in range(tries):
            try:
                self.run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(log),
                         "start")
                return
            except AssertionError:
                taken = log.exists() and "already in use" in log.read_text(errors="replace")
                if attempt == tries - 1 or not taken:
                    raise
                log.unlink()
                self.port = free_port()
                with (self.pgdata / "postgresql.conf").open("a", encoding="utf-8") as conf:
                    conf.write(f"port = {self.port}\n")

    def stop(self, mode: str = "fast") -> None:
        """Stopped (``immediate``: killed, as a crash leaves it)."""
        if (self.pgdata / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", mode, "stop")

    def promote(self) -> None:
        """A standby made primary, once it accepts writes."""
        self.run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "promote")

    def in_recovery(self) -> bool:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row and row[0])

    def execute(self, statement: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(statement.encode())


@dataclass
class Replicated:
    """A primary and its standby, the standby streaming from the primary."""

    folder: Path
    primary: Node
    standby: Node
    synchronous: bool

    @property
    def url(self) -> str:
        """Both servers in one URL, the primary first, as an operator writes it."""
        return (f"postgresql://postgres@{self.primary.address},{self.standby.address}/"
                f"{DATABASE}?connect_timeout=3")

    def streaming(self) -> bool:
        """Whether the standby streams from the primary (in sync, when synchronous)."""
        with psycopg.connect(self.primary.url(), autocommit=True) as conn:
            rows = conn.execute("SELECT sync_state FROM pg_stat_replication").fetchall()
        want = "sync" if self.synchronous else "async"
        return any(row[0] == want for row in rows)

    def cut_off(self) -> None:
        """The standby stops receiving from the primary (as across a broken link), and
        falls behind from now on; the primary, asynchronous, goes on committing."""
        self.standby.execute("ALTER SYSTEM SET primary_conninfo = ''")
        self.standby.execute("SELECT pg_reload_conf()")

    def fail_over(self) -> float:
        """The primary killed (``-m immediate``) and the standby promoted; the monotonic
        time the primary died."""
        died_at = time.monotonic()
        self.primary.stop("immediate")
        self.standby.promote()
        return died_at

    def old_primary_alone(self) -> Node:
        """The killed primary started again on a port of its own (so nothing that was
        connected finds it), alone, to read what it had committed before it died."""
        alone = Node("old-primary", self.primary.pgdata, free_port(), self.primary.user)
        (self.primary.pgdata / "standby.signal").unlink(missing_ok=True)
        alone.configure(self.folder)
        alone.start()
        self.primary = alone  # stopped by remove()
        return alone

    def remove(self) -> None:
        """Both servers stopped and their folder deleted."""
        for node in (self.primary, self.standby):
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                node.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def start_pair(*, synchronous: bool = False) -> Replicated:
    """A migrated primary (database ``aegis``) and its streaming standby, running."""
    folder = Path(f"/tmp/aegis-repl-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    user = _system_user()
    folder.mkdir(mode=0o700)
    if user is not None:
        owner = pwd.getpwnam(user)
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    primary = Node("primary", folder / "primary", free_port(), user)
    standby = Node("standby", folder / "standby", free_port(), user)
    pair = Replicated(folder, primary, standby, synchronous)
    try:
        primary.run("initdb", "-D", str(primary.pgdata), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--locale=C.UTF-8")
        primary.configure(folder)
        primary.start()
        primary.execute(f"CREATE DATABASE {DATABASE}")
        db = Database(primary.url())
        try:
            db.migrate()
        finally:
            db.close()
        primary.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port),
                    "-U", "postgres", "-D", str(standby.pgdata), "-R", "-X", "stream",
                    "-c", "fast")
        standby.configure(folder)  # the later port wins over the primary's, copied
        standby.start()
        if synchronous:
            primary.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            primary.execute("ALTER SYSTEM SET synchronous_commit = on")
            primary.execute("SELECT pg_reload_conf()")
        wait_for(pair.streaming, timeout_s=60, what="the standby streaming")
    except BaseException:
        pair.remove()
        raise
    return pair


@contextlib.contextmanager
def replicated(*, synchronous: bool) -> Iterator[Replicated]:
    """A pair for one test, removed afterwards; a skip (a failure under
    AEGIS_REQUIRE_DOCKER=1) where Debian's PostgreSQL 15 is missing."""
    reason = missing_postgresql()
    if reason is not None:
        skip_or_fail(reason)
    pair = start_pair(synchronous=synchronous)
    try:
        yield pair
    finally:
        pair.remove()
