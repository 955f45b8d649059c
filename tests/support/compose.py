"""The compose tool the machine has: Compose v2 (``docker compose``) where installed, else
v1 (``docker-compose``, what Debian ships). compose.yaml is kept valid for both, and the
tests that run it take whichever is here."""

from __future__ import annotations

import shutil
import subprocess

from tests.support.required import skip_or_fail


def compose_command() -> list[str]:
    """The command that runs compose, or a skip naming what to install (a failure when
    AEGIS_REQUIRE_DOCKER=1)."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True,
                               check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    skip_or_fail("neither `docker compose` nor `docker-compose` is installed "
                 "(tests/ensure_docker.sh installs Debian's docker-compose)")
