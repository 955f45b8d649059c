"""Fixtures of the supervision tests: aegis's watcher in the test process, reaching the
engine through a unix-socket proxy the test controls (tests/support/supervision.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aegis import api
from aegis.core.config import load_settings
from aegis.supervision.watcher import Watcher
from tests.support.engines import engine_socket
from tests.support.supervision import SocketProxy, running_watcher


@pytest.fixture
def proxy(docker_client: Any) -> Iterator[SocketProxy]:
    """A proxy in front of the test's engine: dropping it is the engine going away."""
    target = engine_socket()
    if target is None:
        pytest.skip("the proxy forwards a unix socket; DOCKER_HOST is not one")
    proxied = SocketProxy(Path(f"/tmp/aegis-proxy-{uuid.uuid4().hex[:8]}.sock"), str(target))
    proxied.start()
    yield proxied
    proxied.drop()


@pytest.fixture
def watcher(app: api.Aegis, proxy: SocketProxy) -> Iterator[Watcher]:
    """A watcher of ``app``, connected to the engine through ``proxy``."""
    with running_watcher(app, client_factory=lambda: proxy.client(5)) as running:
        yield running


@pytest.fixture
def strike_interval() -> str:
    return "2s"


@pytest.fixture
def fast_app(aegis_env: dict[str, str], strike_interval: str) -> Iterator[api.Aegis]:
    """aegis with a short strike interval (``strike_interval``), no restart back-off,
    acting only on containers labelled for it."""
    settings = load_settings({**aegis_env, "AEGIS_STRIKE_INTERVAL": strike_interval,
                              "AEGIS_RESTART_BACKOFF": "0s", "AEGIS_DOCKER_SCOPE": "labeled"})
    with api.connect(settings, migrate=False) as opened:
        yield opened
