"""The calls aegis's restarts and checks make to the engine, counted on a proxy in front of
it: the Docker clients made for each negotiate the API version once, not one
``/version`` call each, and restarts ending together share one listing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from aegis.supervision.docker import DockerClients
from aegis.supervision.restarter import RunningListing
from tests.support.supervision import SocketProxy

pytestmark = pytest.mark.docker


def test_clients_after_the_first_ask_no_version_until_the_engine_went_away(
        proxy: SocketProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{proxy.path}")
    make = DockerClients()
    clients = [make() for _ in range(3)]
    try:
        assert len(proxy.asked("/version")) == 1
        assert {client.api.api_version for client in clients} == {clients[0].api.api_version}
        assert all(client.ping() for client in clients)
        make.forget()  # as the watcher does when the engine stops answering
        clients.append(make())
        assert len(proxy.asked("/version")) == 2
        clients.append(DockerClients()())  # another supervision's: negotiates its own
        assert len(proxy.asked("/version")) == 3
    finally:
        for client in clients:
            client.close()


def test_restarts_ended_before_a_listing_was_asked_share_it(proxy: SocketProxy) -> None:
    """Five restarts that ended before any listing was asked share one; a restart ended
    after it was asked gets a listing of its own."""
    listing = RunningListing()
    ended = time.monotonic()
    client = proxy.client()
    try:
        with ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(lambda _: listing.after(client, ended), range(5)))
        assert len(proxy.asked("/containers/json")) == 1
        assert all(answer is answers[0] for answer in answers)
        listing.after(client, time.monotonic())
        assert len(proxy.asked("/containers/json")) == 2
    finally:
        client.close()
