"""The suite's guard for a shared Docker engine: it names health-checked containers the
tests did not make, and only those, so ``make test`` never restarts someone's own."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import foreign_containers

pytestmark = pytest.mark.docker

LOOP = "trap 'exit 0' TERM; while :; do sleep 1; done"
PROBE = {"test": ["CMD", "true"], "interval": 1_000_000_000, "retries": 1}


def test_only_health_checked_containers_without_the_test_label_are_foreign(
        docker_client: Any, busybox_image: str) -> None:
    tag = uuid.uuid4().hex[:8]
    made = []
    try:
        for suffix, labels, healthcheck in [("ours", {"aegis.test": tag}, PROBE),
                                            ("theirs", {}, PROBE),
                                            ("unprobed", {}, None)]:
            made.append(docker_client.containers.run(
                busybox_image, ["/bin/sh", "-c", LOOP], name=f"guard-{tag}-{suffix}",
                detach=True, network_mode="none", labels=labels, healthcheck=healthcheck))
        found = [name for name in foreign_containers(docker_client) if tag in name]
        assert found == [f"guard-{tag}-theirs"]
    finally:
        for container in made:
            container.remove(force=True)
    assert not [name for name in foreign_containers(docker_client) if tag in name]
