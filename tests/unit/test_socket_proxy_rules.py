"""The socket proxy stand-in's allow-list (tests/images/socket_proxy/proxy.py), with the
variables of compose.yaml's socket-proxy profile: what aegis needs passes, everything else
is forbidden, and one switch turned off forbids exactly its part."""

from __future__ import annotations

import pytest

from tests.images import socket_proxy_profile
from tests.images.socket_proxy.proxy import allowed, with_connection_close

CID = "3fb6bfa74033"


@pytest.fixture
def profile() -> dict[str, str]:
    """The socket-proxy service's environment in compose.yaml."""
    return socket_proxy_profile()


@pytest.mark.parametrize(("method", "target"), [
    ("GET", "/_ping"), ("HEAD", "/v1.41/_ping"), ("GET", "/version"),
    ("GET", "/v1.41/version"), ("GET", "/v1.41/containers/json?all=1"),
    ("GET", f"/v1.41/containers/{CID}/json"), ("GET", "/v1.41/events?since=1&until=2"),
    ("POST", f"/v1.41/containers/{CID}/restart?t=10"),
    ("POST", "/v1.41/containers/_aegis-doctor-probe/restart?t=0"),
    ("POST", f"/v1.41/containers/{CID}/start"), ("POST", f"/v1.41/containers/{CID}/stop"),
    ("POST", f"/v1.41/containers/{CID}/kill"),
])
def test_what_aegis_uses_passes(profile: dict[str, str], method: str, target: str) -> None:
    assert allowed(method, target, profile)


@pytest.mark.parametrize(("method", "target"), [
    ("GET", "/v1.41/info"), ("GET", "/v1.41/images/json"), ("GET", "/v1.41/volumes"),
    ("GET", "/v1.41/networks"), ("POST", "/v1.41/containers/create"),
    ("DELETE", f"/v1.41/containers/{CID}"), ("POST", f"/v1.41/containers/{CID}/exec"),
    ("POST", "/v1.41/exec/abc/start"), ("POST", "/v1.41/build"),
    ("POST", f"/v1.41/containers/{CID}/pause"), ("POST", f"/v1.41/containers/{CID}/update"),
    ("GET", "/v1.41/secrets"), ("GET", "/"), ("GET", "/v1.41/containersx/json"),
])
def test_everything_else_is_forbidden(profile: dict[str, str], method: str,
                                      target: str) -> None:
    assert not allowed(method, target, profile)


def test_one_switch_forbids_its_part_only(profile: dict[str, str]) -> None:
    no_restarts = {**profile, "ALLOW_RESTARTS": "0"}
    assert not allowed("POST", f"/v1.41/containers/{CID}/restart", no_restarts)
    assert not allowed("POST", f"/v1.41/containers/{CID}/kill", no_restarts)
    assert allowed("POST", f"/v1.41/containers/{CID}/stop", no_restarts)  # ALLOW_STOP
    assert allowed("GET", "/v1.41/containers/json", no_restarts)

    no_events = {**profile, "EVENTS": "0"}
    assert not allowed("GET", "/v1.41/events", no_events)
    assert allowed("GET", "/v1.41/containers/json", no_events)

    # unset switches take the proxy's defaults: EVENTS, PING and VERSION on, the rest off
    assert allowed("GET", "/v1.41/events", {})
    assert not allowed("GET", "/v1.41/containers/json", {})
    # POST=1 opens the other methods of the sections that are open, and no more
    with_post = {**profile, "POST": "1"}
    assert allowed("POST", "/v1.41/containers/create", with_post)
    assert not allowed("POST", "/v1.41/images/create", with_post)


def test_every_request_asks_the_engine_to_close_after_its_answer() -> None:
    head = (b"GET /v1.41/containers/json HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n"
            b"Accept: */*\r\n\r\n")
    assert with_connection_close(head) == (
        b"GET /v1.41/containers/json HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n"
        b"Connection: close\r\n\r\n")
