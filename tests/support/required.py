"""What to do when a test needs something this machine lacks (a Docker engine, root for a
private one, PgBouncer, openssl, chromium): skip with the reason, or fail when CI said it
must be there (AEGIS_REQUIRE_DOCKER=1, AEGIS_REQUIRE_BROWSER=1), so that a CI run never
passes by skipping."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def skip_or_fail(reason: str, variable: str = "AEGIS_REQUIRE_DOCKER") -> NoReturn:
    """Skip the test for ``reason``, or fail it when ``variable`` is 1."""
    if os.environ.get(variable) == "1":
        pytest.fail(f"{variable}=1 but {reason}")
    pytest.skip(reason)
