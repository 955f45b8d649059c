"""A private Docker engine for fault tests that restart it: its own socket, data and exec
roots, and its own network namespace, so neither restarting it nor starting it disturbs
anything else on this machine. (A dockerd started with ``--bridge none`` in the host's
namespace deletes the host's ``docker0``, breaking the default bridge of the host's own
engine until that restarts.) Its TCP listeners, if any, are carried to the same port on
the host's loopback by two relays (tests/relay.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.images import BUSYBOX, build_busybox

RELAY = Path(__file__).resolve().parents[1] / "relay.py"


@dataclass
class PrivateEngine:
    root: Path
    netns: str  # the network namespace it runs in, made by the first start
    process: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()  # more dockerd options (another --host, TLS)
    answered_at: float | None = None  # time.time() of the ping that found it started
    relays: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.url, timeout=20)

    @property
    def netns_path(self) -> Path:
        return Path("/var/run/netns") / self.netns

    def start(self, timeout_s: float = 60) -> None:
        if not self.netns_path.exists():
            subprocess.run(["ip", "netns", "add", self.netns], check=True, timeout=30)
            subprocess.run(["nsenter", f"--net={self.netns_path}", "ip", "link", "set", "lo",
                            "up"], check=True, timeout=30)
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115
        # nsenter enters the network namespace alone (`ip netns exec` would also remount
        # /sys, hiding the cgroup mounts dockerd needs)
        self.process = subprocess.Popen(
            ["nsenter", f"--net={self.netns_path}", "dockerd", "--host", self.url,
             "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "pid"), "--bridge", "none", "--iptables=false",
             "--ip6tables=false", *self.args],
            stdout=log, stderr=log, start_new_session=True)
        self._relay_tcp(log_path=self.root / "relays.log")
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                asked_at = time.time()
                client = self.client()
                client.ping()
                client.close()
                self.answered_at = asked_at
                return
            except Exception:
                time.sleep(0.2)
        raise AssertionError(f"the private dockerd did not start; see {self.root}/dockerd.log")

    def _relay_tcp(self, log_path: Path) -> None:
        """127.0.0.1:PORT on the host to 127.0.0.1:PORT in the namespace, for each TCP
        address the engine listens on, through a unix socket under the root."""
        ports = [arg.rsplit(":", 1)[1] for arg in self.args if arg.startswith("tcp://")]
        with open(log_path, "ab") as log:
            for port in ports:
                between = f"unix:{self.root}/tcp-{port}.sock"
                for prefix, listen, target in (
                        (["nsenter", f"--net={self.netns_path}"], between,
                         f"tcp:127.0.0.1:{port}"),
                        ([], f"tcp:127.0.0.1:{port}", between)):
                    self.relays.append(subprocess.Popen(
                        [*prefix, sys.executable, str(RELAY), listen, target],
                        stdout=log, stderr=log, start_new_session=True))
        for port in ports:  # both ends listening
            deadline = time.monotonic() + 30
            while not (self.root / f"tcp-{port}.sock").exists() or not _accepts(int(port)):
                if time.monotonic() > deadline:
                    raise AssertionError(f"the relays of port {port} did not start; see "
                                         f"{log_path}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        self.process = None
        for relay in self.relays:
            relay.terminate()
            relay.wait(10)
        self.relays.clear()

    def remove_netns(self) -> None:
        """Delete the network namespace (after ``stop``)."""
        if self.netns_path.exists():
            subprocess.run(["ip", "netns", "delete", self.netns], check=False, timeout=30)

    def build_busybox(self) -> str:
        client = self.client()
        try:
            return build_busybox(client)
        finally:
            client.close()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def private_engine_available() -> str | None:
    """Why this machine cannot run a private dockerd, or None when it can."""
    if shutil.which("dockerd") is None:
        return "dockerd is not installed"
    if os.geteuid() != 0:
        return "a private dockerd needs root"
    for command, package in (("ip", "iproute2"), ("nsenter", "util-linux")):
        if shutil.which(command) is None:
            return f"the {command} command is missing (apt-get install {package})"
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
    return PrivateEngine(root, netns=f"aegis-test-dk-{os.getpid()}")


@dataclass(frozen=True)
class EngineEvent:
    name: str
    action: str
    time_s: float  # the engine's own time of the event


@dataclass
class EngineEvents:
    """Container events as the engine saw them, whoever caused them, from live streams (the
    engine keeps only its last 256 events, and none across its own restart). ``follow``
    again after an engine restart, with ``since`` before it started, to go on."""

    actions: tuple[str, ...] = ("kill", "die", "start", "restart")
    events: list[EngineEvent] = field(default_factory=list)
    _streams: list[Any] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _seen: set[tuple[str, str, int]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def follow(self, client: Any, since: float | None = None) -> None:
        stream = client.events(decode=True, since=int(since) if since else None,
                               filters={"type": "container", "event": list(self.actions)})
        thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._streams.append(stream)
        self._threads.append(thread)
        thread.start()

    def _read(self, stream: Any) -> None:
        with contextlib.suppress(Exception):  # it ends when closed or the engine stops
            for event in stream:
                key = (event["Actor"]["ID"], event["Action"], int(event["timeNano"]))
                with self._lock:
                    if key in self._seen:  # replayed by a ``since``
                        continue
                    self._seen.add(key)
                    self.events.append(EngineEvent(event["Actor"]["Attributes"]["name"],
                                                   event["Action"], key[2] / 1e9))

    def times(self, name: str, action: str) -> list[float]:
        with self._lock:
            return sorted(e.time_s for e in self.events if e.name == name and e.action == action)

    def stop(self) -> None:
        """Stop following (once the last event is in); again, it does nothing."""
        if not self._streams:
            return
        time.sleep(1)  # the last event is on its way
        for stream in self._streams:
            with contextlib.suppress(Exception):
                stream.close()
        for thread in self._threads:
            thread.join(10)
        self._streams.clear()
        self._threads.clear()
