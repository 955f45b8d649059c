"""The Docker clients aegis makes for each restart and check negotiate the API version with
the engine once, not one ``/version`` call each, counted on a proxy in front of the
engine."""

from __future__ import annotations

import pytest

from aegis.supervision.docker import docker_client, forget_api_version
from tests.support.supervision import SocketProxy

pytestmark = pytest.mark.docker


def test_clients_after_the_first_ask_no_version_until_the_engine_went_away(
        proxy: SocketProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{proxy.path}")
    forget_api_version()
    clients = [docker_client() for _ in range(3)]
    try:
        assert len(proxy.asked("/version")) == 1
        assert {client.api.api_version for client in clients} == {clients[0].api.api_version}
        assert all(client.ping() for client in clients)
        forget_api_version()  # as the watcher does when the engine stops answering
        clients.append(docker_client())
        assert len(proxy.asked("/version")) == 2
    finally:
        for client in clients:
            client.close()
