from collections.abc import Iterator

import pytest

from tests.faults.procs import Spawner


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    spawner = Spawner()
    yield spawner
    spawner.stop_all()
