"""The fault tests' private Docker engines (tests/support/engines.py): started for the
test, left for it to start, or only where this machine can run one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.engines import PrivateEngine, private_engine, private_engine_available


@pytest.fixture
def engine() -> Iterator[PrivateEngine]:
    """A private dockerd for this test, with every container it ran removed afterwards."""
    private = private_engine()
    private.start()
    yield private
    private.tear_down()


@pytest.fixture
def optional_engine() -> Iterator[PrivateEngine | None]:
    """A private dockerd when this machine can run one (required when
    AEGIS_REQUIRE_DOCKER=1), else None: for tests whose other half needs no Docker."""
    if os.environ.get("AEGIS_REQUIRE_DOCKER") != "1" and private_engine_available() is not None:
        yield None
        return
    private = private_engine()
    private.start()
    yield private
    private.tear_down()


@pytest.fixture
def idle_engine() -> Iterator[PrivateEngine]:
    """A private dockerd's place (socket path, roots) for the test to start itself; torn
    down like ``engine`` when it was started."""
    private = private_engine()
    yield private
    if private.process is not None:
        private.tear_down()
    private.forget()

