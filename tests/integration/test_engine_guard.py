"""The suite's guard for a shared Docker engine: it names health-checked containers the
tests did not make, and only those, so ``make test`` never restarts someone's own."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.containers import IDLE, PASSES, Containers, foreign_containers

pytestmark = pytest.mark.docker


def test_only_health_checked_containers_without_the_test_label_are_foreign(
        docker_client: Any, busybox_image: str) -> None:
    tag = uuid.uuid4().hex[:8]
    made = []
    containers = Containers(docker_client, busybox_image)
    try:
        for suffix, labels, healthcheck in [("ours", {"aegis.test": tag}, PASSES),
                                            ("theirs", {}, PASSES),
                                            ("unprobed", {}, None)]:
            made.append(containers.run(IDLE, name=f"guard-{tag}-{suffix}", labels=labels,
                                       healthcheck=healthcheck, test_label=False))
        found = [name for name in foreign_containers(docker_client) if tag in name]
        assert found == [f"guard-{tag}-theirs"]
    finally:
        for container in made:
            container.remove(force=True)
    assert not [name for name in foreign_containers(docker_client) if tag in name]
