"""The suite's fixtures, each a thin layer on tests/support: a real PostgreSQL (one server
per pytest process, or AEGIS_TEST_DATABASE_URL) with a fresh database per test copied from
a migrated template, a real Docker engine and its test containers, real ``aegis run``
daemons, and the Discord-like server.

Docker tests skip with a reason when no engine is reachable, except when
AEGIS_REQUIRE_DOCKER=1 (CI sets it): then a missing engine fails them. Tests that let aegis
restart containers on the shared engine also need it to themselves (``engine_to_ourselves``).
The plugins below check that the run leaves the machine as it found it, and run the suite
in parallel with pytest-xdist (tests/support/parallel.py says how).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aegis import api
from aegis.core.config import Settings, load_settings
from tests.images import PROXY_SCRIPT, build_busybox
from tests.support import pgbouncer as pgbouncer_tool
from tests.support import replication
from tests.support.containers import Containers, foreign_containers
from tests.support.daemons import Spawner
from tests.support.discord import FakeDiscord
from tests.support.engines import engine_client, engine_socket
from tests.support.ports import accepts, free_port
from tests.support.postgres import (
    OwnPostgres,
    create_database,
    drop_database,
    migrated_template,
    session_server,
    stop_embedded,
)
from tests.support.required import skip_or_fail
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.hygiene", "tests.support.parallel")


# --- PostgreSQL ---


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A superuser DSN of a real PostgreSQL server for the whole test session."""
    with session_server() as url:
        yield url


@pytest.fixture(scope="session")
def template_url(pg_admin_url: str) -> str:
    return migrated_template(pg_admin_url)


@pytest.fixture
def database_url(pg_admin_url: str, template_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    url = create_database(pg_admin_url)
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    url = create_database(pg_admin_url, template=False)
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL server of this test's own, migrated, which it may stop and start."""
    own = OwnPostgres.create()
    yield own
    own.remove()


@pytest.fixture
def replicated_pair() -> Iterator[replication.Replicated]:
    """A primary and its asynchronous streaming standby, the test's own (Debian's
    PostgreSQL 15), removed afterwards."""
    with replication.replicated(synchronous=False) as pair:
        yield pair


@pytest.fixture
def sync_pair() -> Iterator[replication.Replicated]:
    """A primary and its synchronous streaming standby, the test's own, removed
    afterwards."""
    with replication.replicated(synchronous=True) as pair:
        yield pair


@pytest.fixture(scope="session")
def pgbouncer(pg_admin_url: str) -> Iterator[pgbouncer_tool.PgBouncer]:
    """Debian's PgBouncer in transaction mode in front of the session's server, or a skip
    (a failure when AEGIS_REQUIRE_DOCKER=1, which CI sets: ensure_docker.sh installs it)."""
    reason = pgbouncer_tool.unavailable()
    if reason:
        skip_or_fail(reason)
    folder = Path(f"/tmp/aegis-test-pgb-{os.getpid()}")  # one the server's user may read
    bouncer = pgbouncer_tool.start(pg_admin_url, folder)
    yield bouncer
    bouncer.stop()


# --- aegis ---


@pytest.fixture
def aegis_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def fresh_home() -> Iterator[Path]:
    """An AEGIS_HOME not made yet, as on a fresh machine. It is not under pytest's own
    temporary folder: pytest keeps that private to its owner (a pytest starting anywhere
    on the machine narrows /tmp/pytest-of-USER to 0700), and the embedded PostgreSQL,
    which runs as a user of its own when aegis runs as root, must reach its data. The
    server a command started in it (``aegis db url`` leaves it running) is stopped, and
    the folder removed, afterwards."""
    folder = Path(f"/tmp/aegis-test-home-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    home = folder / "aegis"
    yield home
    stop_embedded(home)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def aegis_env(database_url: str, aegis_home: Path, tmp_path: Path) -> dict[str, str]:
    """Environment variables of an aegis process on this test's database."""
    return {
        "AEGIS_DATABASE_URL": database_url,
        "AEGIS_HOME": str(aegis_home),
        "AEGIS_JOURNAL_DIR": str(tmp_path / "journal"),
        "AEGIS_HOST": "test-host",
        "AEGIS_LOG_FORMAT": "json",
        "AEGIS_HTTP_ADDR": "off",
    }


@pytest.fixture
def settings(aegis_env: dict[str, str]) -> Settings:
    return load_settings(aegis_env)


@pytest.fixture
def app(settings: Settings) -> Iterator[api.Aegis]:
    with api.connect(settings, migrate=False) as opened:
        yield opened


@pytest.fixture
def make_app(aegis_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., api.Aegis]]:
    """``make(host, **env)``: an app on the session's database as that host (not
    migrated again); every one made is closed at the end."""
    opened: list[api.Aegis] = []

    def make(host: str, **extra: str) -> api.Aegis:
        env = {**aegis_env, "AEGIS_HOST": host, "AEGIS_HOME": str(tmp_path / host), **extra}
        app = api.connect(load_settings(env), migrate=False)
        opened.append(app)
        return app

    yield make
    for app in opened:
        app.close()


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    """Starts ``aegis run`` processes; stops every one left running at the end."""
    spawner = Spawner()
    yield spawner
    spawner.stop_all()


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    """The local Discord-like server (tests/support/discord.py)."""
    server = FakeDiscord()
    yield server
    server.close()


# --- Docker ---


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A client of the engine at DOCKER_HOST (in a parallel run, the worker's own), or a
    skip (a failure when AEGIS_REQUIRE_DOCKER=1)."""
    client = engine_client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def busybox_image(docker_client: Any) -> str:
    """A tiny local image, FROM scratch with the static busybox, built once per session."""
    try:
        return build_busybox(docker_client)
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def make_container(docker_client: Any, busybox_image: str) -> Iterator[Callable[..., Any]]:
    """``make(script, **options)``: a busybox test container (``Containers.run``, in
    tests/support/containers.py); every one is removed at teardown."""
    containers = Containers(docker_client, busybox_image)
    yield containers.run
    containers.remove_all()


@pytest.fixture
def engine_to_ourselves(docker_client: Any) -> None:
    """For tests that let aegis restart containers on the shared engine: they run only when
    no container there but the suite's own has a health check, so a developer's own
    containers are never restarted by ``make test``. Otherwise they skip with the names
    (fail under AEGIS_REQUIRE_DOCKER=1)."""
    foreign = foreign_containers(docker_client)
    if foreign:
        skip_or_fail(f"the Docker engine runs {len(foreign)} health-checked container(s) the "
                    f"tests did not make ({', '.join(foreign[:5])}); these tests restart "
                    "containers, so they run only on an engine of their own: point "
                    "DOCKER_HOST at a dedicated dockerd (see DEVELOPERS.md)")


@pytest.fixture
def socket_proxy(docker_client: Any, tmp_path: Path
                 ) -> Iterator[Callable[[dict[str, str]], str]]:
    """The socket proxy stand-in (tests/images/socket_proxy/proxy.py) as a process on this
    host in front of the test's engine: ``start(environ)`` runs one with that allow-list
    and returns its tcp:// URL; each one's log is ``proxy-PORT.log`` in tmp_path."""
    engine = engine_socket()
    if engine is None:
        pytest.skip("the engine is reached over TCP: no socket for the proxy to relay to")
    started: list[subprocess.Popen[bytes]] = []

    def start(environ: dict[str, str]) -> str:
        port = free_port()
        with open(tmp_path / f"proxy-{port}.log", "wb") as log:
            started.append(subprocess.Popen(
                [sys.executable, "-u", str(PROXY_SCRIPT)], stdout=log, stderr=log,
                env={"PATH": os.environ.get("PATH", ""), **environ,
                     "SOCKET_PATH": str(engine), "PROXY_PORT": str(port)}))
        wait_for(lambda: accepts(port), what=f"the socket proxy stand-in on {port}",
                 every_s=0.05)
        return f"tcp://127.0.0.1:{port}"

    yield start
    for process in started:
        process.terminate()
        process.wait(10)
