"""The ``aegis`` command as a user runs it: a subprocess in an environment that holds none
of the caller's aegis, PostgreSQL or webhook settings, and its tables as a person reads
them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def clean_environ(extra: dict[str, str]) -> dict[str, str]:
    """os.environ without any aegis, Postgres or webhook variable, plus ``extra``."""
    prefixes = ("AEGIS_", "POSTGRES_", "DISCORD_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 60,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``aegis`` command as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "aegis", *args], env=clean_environ(env), capture_output=True,
        text=True, timeout=timeout, input=input_text, check=False,
    )


def have_psql() -> bool:
    """Whether PostgreSQL's ``psql`` client is installed."""
    return shutil.which("psql") is not None


def columns(header: str, line: str) -> dict[str, str]:
    """A table line cut at the header's column starts (a time holds a space)."""
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    ends = [*starts[1:], None]
    return {header[a:b].strip(): line[a:b].strip() for a, b in zip(starts, ends, strict=True)}
