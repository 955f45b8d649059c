"""A real PgBouncer (Debian's ``pgbouncer`` package) in transaction mode, in front of the
test session's PostgreSQL, for the tests of aegis through a pooler.

PgBouncer refuses to run as root; as root it is started as the owner of the server's
socket folder (pgserver runs its server as its own user), which may reach the socket.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support.ports import free_port


@dataclass
class PgBouncer:
    """A running PgBouncer on ``port`` of the loopback, its files in ``folder``."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes]

    def url(self, server_url: str) -> str:
        """``server_url`` (a database of the test server) through this PgBouncer."""
        params = conninfo_to_dict(server_url)
        return make_conninfo(host="127.0.0.1", port=str(self.port),
                             user=str(params.get("user") or "postgres"),
                             dbname=str(params.get("dbname") or "postgres"))

    @property
    def admin_url(self) -> str:
        """PgBouncer's own console (SHOW CLIENTS, SHOW SERVERS)."""
        return make_conninfo(host="127.0.0.1", port=str(self.port), user="postgres",
                             dbname="pgbouncer")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


def unavailable() -> str | None:
    """Why PgBouncer cannot run here, or None."""
    return None if shutil.which("pgbouncer") else "pgbouncer is not installed " \
        "(tests/ensure_docker.sh installs Debian's pgbouncer)"


def start(server_url: str, folder: Path) -> PgBouncer:
    """PgBouncer in transaction mode on a free port of 127.0.0.1, every database of the
    server behind it (the tests' databases are made and dropped as they go)."""
    params = conninfo_to_dict(server_url)
    host = str(params.get("host") or "127.0.0.1")
    target = f"host={host} port={params.get('port') or 5432}"
    if params.get("password"):
        target += f" password={params['password']}"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = str(params.get("user") or "postgres")
    (folder / "users.txt").write_text(f'"{user}" ""\n', encoding="utf-8")
    (folder / "pgbouncer.ini").write_text(f"""\
[databases]
* = {target}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / 'users.txt'}
admin_users = {user}
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 40
ignore_startup_parameters = extra_float_digits
logfile = {folder / 'pgbouncer.log'}
""", encoding="utf-8")
    command = ["pgbouncer", str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # as the owner of the server's socket folder, never as root
        owner = Path(host).stat().st_uid if host.startswith("/") else 65534
        os.chown(folder, owner, -1)
        for entry in folder.iterdir():
            os.chown(entry, owner, -1)
        command[1:1] = ["-u", pwd.getpwuid(owner).pw_name]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return PgBouncer(port, folder, process)
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.05)
    process.kill()
    log = (folder / "pgbouncer.log").read_text(errors="replace") \
        if (folder / "pgbouncer.log").exists() else ""
    raise AssertionError(f"pgbouncer did not start on {port}: {log[-2000:]}")
