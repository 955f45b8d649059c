"""A private Docker engine for fault tests that restart it: its own socket, data and exec
roots, no bridge, so restarting it disturbs no other container on this machine."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.images import BUSYBOX, build_busybox


@dataclass
class PrivateEngine:
    root: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.url, timeout=20)

    def start(self, timeout_s: float = 60) -> None:
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["dockerd", "--host", self.url, "--data-root", str(self.root / "data"),
             "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "pid"),
             "--bridge", "none", "--iptables=false", "--ip6tables=false"],
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                client = self.client()
                client.ping()
                client.close()
                return
            except Exception:
                time.sleep(0.2)
        raise AssertionError(f"the private dockerd did not start; see {self.root}/dockerd.log")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        self.process = None

    def build_busybox(self) -> str:
        client = self.client()
        try:
            return build_busybox(client)
        finally:
            client.close()


def private_engine_available() -> str | None:
    """Why this machine cannot run a private dockerd, or None when it can."""
    if shutil.which("dockerd") is None:
        return "dockerd is not installed"
    if os.geteuid() != 0:
        return "a private dockerd needs root"
    if not BUSYBOX.exists():
        return f"{BUSYBOX} is missing"
    return None


def private_engine_or_skip() -> PrivateEngine:
    reason = private_engine_available()
    if reason:
        if os.environ.get("AEGIS_REQUIRE_DOCKER") == "1":
            pytest.fail(f"AEGIS_REQUIRE_DOCKER=1 but {reason}")
        pytest.skip(reason)
    root = Path(f"/tmp/aegis-dk-{os.getpid()}")  # short: unix socket paths are limited
    root.mkdir(exist_ok=True)
    return PrivateEngine(root)
