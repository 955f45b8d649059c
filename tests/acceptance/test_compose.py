"""compose.yaml and .env.example, validated by the compose tool itself (``docker compose
config`` or ``docker-compose config``), as an operator would run them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from aegis.core.config import OPTIONS
from tests.support.compose import compose_command

ROOT = Path(__file__).resolve().parents[2]


def compose_config(project: Path, env_text: str, *args: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "compose.yaml", project / "compose.yaml")
    (project / ".env").write_text(env_text, encoding="utf-8")
    return subprocess.run([*compose_command(), "--project-directory", str(project), "-f",
                           str(project / "compose.yaml"), *args, "config"],
                          capture_output=True, text=True, cwd=project, timeout=60, check=False)


def rendered(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = yaml.safe_load(result.stdout)
    return document


def volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of each mount, in either short or long syntax."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        found[target] = source
    return found


TOKEN = "5b1f0e6c9a8d7e2f3a4b5c6d7e8f9a0b"


@pytest.fixture
def example_env() -> str:
    """.env.example with the values a user must set and the example leaves empty."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return text.replace("\nAEGIS_HTTP_TOKEN=\n", f"\nAEGIS_HTTP_TOKEN={TOKEN}\n")


def test_the_stack_validates_with_the_example_env(tmp_path: Path, example_env: str) -> None:
    config = rendered(compose_config(tmp_path, example_env))
    services = config["services"]
    aegis, postgres = services["aegis"], services["postgres"]

    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert aegis["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert aegis["environment"]["POSTGRES_HOST"] == "postgres"
    assert aegis["environment"]["POSTGRES_PASSWORD"] == postgres["environment"][
        "POSTGRES_PASSWORD"]
    assert aegis["environment"]["AEGIS_HTTP_ADDR"] == "0.0.0.0:9465"
    assert aegis["environment"]["AEGIS_HTTP_TOKEN"] == TOKEN

    mounts = volume_targets(aegis)
    assert mounts["/var/run/docker.sock"] == "/var/run/docker.sock"
    assert mounts["/journal"] == "aegis-journal"
    assert mounts["/var/lib/aegis"] == "aegis-home"
    assert volume_targets(postgres)["/var/lib/postgresql/data"] == "aegis-postgres"
    assert {"aegis-home", "aegis-journal", "aegis-postgres"} <= set(config["volumes"])
    assert [str(gid) for gid in aegis["group_add"]] == ["999"]

    for service in (aegis, postgres):
        assert str(service["labels"]["aegis.protect"]) == "true"
    # Docker's stop timeout must leave room for aegis's own shutdown grace (20s default).
    assert aegis["stop_grace_period"] in ("30s", 30, 30.0)


def test_missing_required_values_are_named(tmp_path: Path, example_env: str) -> None:
    without_password = "\n".join(line for line in example_env.splitlines()
                                 if not line.startswith("POSTGRES_PASSWORD="))
    result = compose_config(tmp_path, without_password)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr

    without_gid = "\n".join(line for line in example_env.splitlines()
                            if not line.startswith("DOCKER_GID="))
    result = compose_config(tmp_path, without_gid)
    assert result.returncode != 0
    assert "DOCKER_GID" in result.stderr

    # as shipped, the example has no token: the user makes one
    result = compose_config(tmp_path, (ROOT / ".env.example").read_text(encoding="utf-8"))
    assert result.returncode != 0
    assert "AEGIS_HTTP_TOKEN" in result.stderr
    assert "openssl rand -hex 32" in result.stderr


def test_the_socket_proxy_profile_takes_the_socket_away_from_aegis(
        tmp_path: Path, example_env: str) -> None:
    env = example_env + ("AEGIS_DOCKER_HOST=tcp://socket-proxy:2375\n"
                         "AEGIS_DOCKER_SOCKET=/dev/null\n")
    config = rendered(compose_config(tmp_path, env, "--profile", "socket-proxy"))
    aegis, proxy = config["services"]["aegis"], config["services"]["socket-proxy"]

    assert aegis["environment"]["DOCKER_HOST"] == "tcp://socket-proxy:2375"
    assert "/var/run/docker.sock" not in volume_targets(aegis).values()
    assert proxy["profiles"] == ["socket-proxy"]
    assert volume_targets(proxy)["/var/run/docker.sock"] == "/var/run/docker.sock"
    allowed = {key for key, value in proxy["environment"].items() if str(value) == "1"}
    assert allowed == {"CONTAINERS", "EVENTS", "PING", "VERSION", "ALLOW_START",
                       "ALLOW_STOP", "ALLOW_RESTARTS"}
    assert str(proxy["environment"]["POST"]) == "0"
    assert "ports" not in proxy  # never published
    # an image whose ALLOW_* switches work with POST=0
    assert proxy["image"] == "lscr.io/linuxserver/socket-proxy:latest"


def test_the_images_and_the_proxied_socket_come_from_env(tmp_path: Path, example_env: str) -> None:
    env = example_env + ("POSTGRES_IMAGE=registry.example/postgres:16\n"
                         "SOCKET_PROXY_IMAGE=registry.example/socket-proxy:1\n"
                         "SOCKET_PROXY_DOCKER_SOCKET=/run/user/1000/docker.sock\n")
    config = rendered(compose_config(tmp_path, env, "--profile", "socket-proxy"))
    postgres, proxy = config["services"]["postgres"], config["services"]["socket-proxy"]
    assert postgres["image"] == "registry.example/postgres:16"
    assert proxy["image"] == "registry.example/socket-proxy:1"
    assert volume_targets(proxy)["/var/run/docker.sock"] == "/run/user/1000/docker.sock"


def test_env_example_lists_every_variable(example_env: str) -> None:
    missing = [o.env for o in OPTIONS if o.env and f"{o.env}=" not in example_env]
    assert missing == []
    assert "AEGIS_CONFIG=" in example_env
