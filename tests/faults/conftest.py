import os
import shutil
from collections.abc import Iterator

import pytest

from tests.faults.engine import PrivateEngine, private_engine_available, private_engine_or_skip


def _run_engine(private: PrivateEngine) -> Iterator[PrivateEngine]:
    private.start()
    yield private
    _tear_down(private)


def _tear_down(private: PrivateEngine) -> None:
    if private.process is None:
        private.start()
    client = private.client()
    for container in client.containers.list(all=True):
        container.remove(force=True)
    client.close()
    private.stop()
    private.remove_netns()
    shutil.rmtree(private.root, ignore_errors=True)


@pytest.fixture
def engine() -> Iterator[PrivateEngine]:
    """A private dockerd for this test, with every container it ran removed afterwards."""
    yield from _run_engine(private_engine_or_skip())


@pytest.fixture
def optional_engine() -> Iterator[PrivateEngine | None]:
    """A private dockerd when this machine can run one (required when
    AEGIS_REQUIRE_DOCKER=1), else None: for tests whose other half needs no Docker."""
    if os.environ.get("AEGIS_REQUIRE_DOCKER") != "1" and private_engine_available() is not None:
        yield None
        return
    yield from _run_engine(private_engine_or_skip())


@pytest.fixture
def idle_engine() -> Iterator[PrivateEngine]:
    """A private dockerd's place (socket path, roots) for the test to start itself; torn
    down like ``engine`` when it was started."""
    private = private_engine_or_skip()
    yield private
    if private.process is not None:
        _tear_down(private)
    private.remove_netns()
    shutil.rmtree(private.root, ignore_errors=True)
