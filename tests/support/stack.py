"""A compose project of the repository's compose.yaml, driven as an operator drives it:
the compose tool in a folder holding compose.yaml, a ``.env`` made from ``.env.example``
and the aegis build context, plus ``compose.e2e.yaml`` (the Discord-like endpoint).

``step()`` names what was being done when something fails and adds the last lines of
``compose logs``, so a red run says which part of the deployment broke.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.cli import clean_environ
from tests.support.compose import compose_command

ROOT = Path(__file__).resolve().parents[2]
E2E = ROOT / "tests" / "e2e"  # the compose files of the end-to-end test
COMPOSE_TIMEOUT_S = 600
LOG_TAIL_LINES = 40


def env_text(example: str, values: dict[str, str]) -> str:
    """``example`` (.env.example) with ``values`` set, each where the example has it (a
    ``KEY=`` line, or the commented ``# KEY=`` default) or else appended."""
    lines = example.splitlines()
    for key, value in values.items():
        pattern = re.compile(rf"^(# )?{re.escape(key)}=")
        for number, line in enumerate(lines):
            if pattern.match(line):
                lines[number] = f"{key}={value}"
                break
        else:
            lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


@dataclass
class Stack:
    """One compose project in ``directory`` on the engine at ``docker_host``; ``files``
    are its compose files, in order."""

    directory: Path
    project: str
    env: dict[str, str]  # the values set in .env
    docker_host: str
    files: list[str] = field(default_factory=lambda: ["compose.yaml", "compose.e2e.yaml"])

    @classmethod
    def create(cls, directory: Path, project: str, env: dict[str, str],
               docker_host: str) -> Stack:
        """compose.yaml and compose.e2e.yaml copied unchanged next to the build context
        already in ``directory``, and a ``.env`` from .env.example with ``env`` set."""
        shutil.copy(ROOT / "compose.yaml", directory / "compose.yaml")
        shutil.copy(E2E / "compose.e2e.yaml", directory / "compose.e2e.yaml")
        shutil.copy(E2E / "compose.no-restarts.yaml", directory / "compose.no-restarts.yaml")
        example = (ROOT / ".env.example").read_text(encoding="utf-8")
        (directory / ".env").write_text(env_text(example, env), encoding="utf-8")
        return cls(directory, project, env, docker_host)

    def run(self, *args: str, timeout_s: float = COMPOSE_TIMEOUT_S,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """``compose -p PROJECT -f ... ARGS`` in the project folder. The environment holds
        no aegis, Postgres or compose variable of the caller's: .env alone configures it,
        and DOCKER_HOST names the stack's engine."""
        files = [arg for name in self.files for arg in ("-f", str(self.directory / name))]
        environ = {k: v for k, v in clean_environ({}).items() if not k.startswith("COMPOSE_")}
        environ["DOCKER_HOST"] = self.docker_host
        result = subprocess.run(
            [*compose_command(), "--project-name", self.project, "--project-directory",
             str(self.directory), *files, *args], cwd=self.directory, env=environ,
            capture_output=True, text=True, timeout=timeout_s, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} exited {result.returncode}: "
                                 f"{(result.stderr or result.stdout)[-3000:]}")
        return result

    def exec(self, service: str, *argv: str, timeout_s: float = 120
             ) -> subprocess.CompletedProcess[str]:
        return self.run("exec", "-T", service, *argv, timeout_s=timeout_s, check=False)

    def container_id(self, service: str) -> str:
        found = self.run("ps", "-q", service).stdout.split()
        assert len(found) == 1, f"{service}: {len(found)} containers ({found})"
        return found[0]

    def logs(self, *services: str, tail: int | None = None) -> str:
        args = ["logs", "--no-color"] + ([f"--tail={tail}"] if tail else [])
        return self.run(*args, *services, check=False).stdout

    def sql(self, query: str) -> list[dict[str, Any]]:
        """Rows of ``query`` in the stack's database, read with psql in its container."""
        wrapped = f"SELECT coalesce(json_agg(row_to_json(q)), '[]'::json) FROM ({query}) q"
        result = self.exec("postgres", "psql", "-U", "aegis", "-d", "aegis", "-At",
                           "-v", "ON_ERROR_STOP=1", "-c", wrapped)
        assert result.returncode == 0, f"psql: {result.stderr.strip()}"
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return rows

    def events_of(self, container: str) -> list[dict[str, Any]]:
        """The events the stack's aegis recorded about ``container``, oldest first."""
        return self.sql("SELECT id, event_type, summary, details FROM episodic_memory "
                        f"WHERE details->>'container' = '{container}' ORDER BY id")

    def doctor(self) -> dict[str, dict[str, str]]:
        """``aegis doctor --json`` in the aegis container, by check name."""
        result = self.exec("aegis", "aegis", "doctor", "--json")
        try:
            return {check["check"]: check for check in json.loads(result.stdout)}
        except ValueError as exc:
            raise AssertionError(f"aegis doctor printed no JSON: {result.stdout[-500:]} "
                                 f"{result.stderr[-1500:]}") from exc

    def discord_messages(self) -> list[dict[str, Any]]:
        """What the Discord-like endpoint accepted, in order (it prints one JSON line each)."""
        messages = []
        for line in self.logs("discord").splitlines():
            _, _, text = line.partition("| ")
            with contextlib.suppress(ValueError):
                record = json.loads(text or line)
                if isinstance(record, dict) and "received" in record:
                    messages.append(record["received"])
        return messages

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run one step of the scenario; a failure names it and shows the last log lines."""
        try:
            yield
        except Exception as exc:
            tail = self.logs(tail=LOG_TAIL_LINES)
            raise AssertionError(f"step failed: {name}\n{exc}\n--- last {LOG_TAIL_LINES} "
                                 f"lines per service of compose logs ---\n{tail}") from exc


def docker_socket_gid(socket_path: Path) -> str:
    """What a user puts in DOCKER_GID: the group of the engine's socket."""
    return str(os.stat(socket_path).st_gid)
