"""The images, build context and compose projects of the e2e test, all named under the
``aegis-test`` prefix and removed afterwards (the cached images of tests/images stay), on
the engine the suite was pointed at (in a parallel run, not the worker's own: the cached
images are there)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import images
from tests.support.discord import WEBHOOK_ID
from tests.support.engines import engine_client
from tests.support.parallel import suite_engine_url
from tests.support.stack import Stack, docker_socket_gid


@pytest.fixture(scope="session")
def docker_client(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A client of the engine the suite was pointed at."""
    client = engine_client(suite_engine_url(request.config))
    yield client
    client.close()


@pytest.fixture(scope="session")
def stack_images(docker_client: Any) -> dict[str, str]:
    """The stand-ins for postgres:16, the socket proxy and Discord, by role."""
    try:
        return images.build_stack_images(docker_client)
    except (images.ImageError, FileNotFoundError) as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def aegis_build(docker_client: Any, stack_images: dict[str, str],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[images.Built, Path]]:
    """The aegis image built once from the Dockerfile, and its build context: each stack's
    ``up --build`` builds the same context again, from the engine's cache."""
    context = images.aegis_context(tmp_path_factory.mktemp("aegis-context"))
    try:
        built = images.build_aegis(docker_client, f"aegis-test-aegis:e2e-{os.getpid()}",
                                   context)
    except images.ImageError as exc:
        pytest.fail(str(exc))
    yield built, context
    images.remove_build(docker_client, built)


@pytest.fixture
# pytest hands each fixture in as an argument
def make_stack(request: pytest.FixtureRequest,  # noqa: PLR0913
               docker_client: Any, engine_to_ourselves: None,
               stack_images: dict[str, str], aegis_build: tuple[images.Built, Path],
               tmp_path: Path) -> Iterator[Callable[[str, dict[str, str]], Stack]]:
    """``make(name, env)``: a compose project ``aegis-test-NAME-<random>`` in a folder of
    its own, with the .env a user makes (the two required values set) plus this machine's
    images and short intervals, and ``env``. Every project is taken down with its volumes."""
    engine = suite_engine_url(request.config)
    if not engine.startswith("unix://"):
        pytest.skip("the engine is reached over TCP: compose.yaml mounts its socket")
    socket_path = Path(engine.removeprefix("unix://"))
    built, context = aegis_build
    made: list[Stack] = []

    def make(name: str, env: dict[str, str]) -> Stack:
        project = f"aegis-test-{name}-{secrets.token_hex(4)}"
        directory = tmp_path / project
        shutil.copytree(context, directory)
        token = secrets.token_urlsafe(24)
        stack = Stack.create(directory, project, {
            # the three values every user sets
            "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
            "DOCKER_GID": docker_socket_gid(socket_path),
            "AEGIS_HTTP_TOKEN": secrets.token_hex(32),  # openssl rand -hex 32
            # this machine: local images, the engine's own socket, no fixed host port
            "AEGIS_HOST": project,
            "AEGIS_IMAGE": built.tag,
            "AEGIS_BASE_IMAGE": stack_images["base"],
            "POSTGRES_IMAGE": stack_images["postgres"],
            "SOCKET_PROXY_IMAGE": stack_images["socket-proxy"],
            "AEGIS_DOCKER_SOCKET": str(socket_path),
            "SOCKET_PROXY_DOCKER_SOCKET": str(socket_path),
            "AEGIS_HTTP_PUBLISH": "127.0.0.1:",
            # the alerts channel: the Discord-like endpoint on the stack's network
            "DISCORD_WEBHOOK_URL": f"http://discord:8080/api/webhooks/{WEBHOOK_ID}/{token}",
            "E2E_DISCORD_IMAGE": stack_images["discord"],
            "E2E_DISCORD_TOKEN": token,
            # short intervals, so that three strikes take seconds
            "AEGIS_STRIKE_INTERVAL": "3s",
            "AEGIS_HEARTBEAT_INTERVAL": "2s",
            **env}, docker_host=engine)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.run("down", "--volumes", "--remove-orphans", check=False)
        for container in docker_client.containers.list(
                all=True, filters={"label": f"aegis.test={stack.project}"}):
            with contextlib.suppress(Exception):  # docker.errors.NotFound: gone meanwhile
                container.remove(force=True, v=True)
