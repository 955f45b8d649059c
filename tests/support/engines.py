"""Docker engines of the suite's own: a private ``dockerd`` for a fault test that
restarts, withholds or reconfigures its engine, and one for each worker of a parallel run,
so that the daemons and supervisors of two tests running at once never see (and restart)
each other's containers. Each has its own socket, data and exec roots under
``/tmp/aegis-<kind>-PID``, and its own network namespace (``aegis-test-RUN-<kind>-PID``,
RUN the run's id: hygiene.py), so neither restarting it nor starting it disturbs anything
else on this machine. (A dockerd started with ``--bridge none`` in the host's namespace
deletes the host's ``docker0``, breaking the default bridge of the host's own engine until
that restarts.) Its TCP listeners, if any, are carried to the same port on the host's
loopback by two relays (relay.py).

``EngineEvents`` follows an engine's own event stream: what it did, whoever asked.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.images import BUSYBOX, PREFIX, build_busybox
from tests.support.containers import Containers
from tests.support.ports import accepts
from tests.support.required import skip_or_fail
from tests.support.waiting import wait_for

RELAY = Path(__file__).resolve().parent / "relay.py"
RUN = "AEGIS_TEST_RUN"  # the run's id (hygiene.py), in the environment its workers inherit


@dataclass
class PrivateEngine:
    """A dockerd of the suite's own under ``root``, in the network namespace ``netns``."""

    root: Path
    netns: str  # the network namespace it runs in, made by the first start
    process: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()  # more dockerd options (another --host, TLS)
    answered_at: float | None = None  # time.time() of the ping that found it started
    relays: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _containers: Containers | None = None  # what ``run`` made, through a client of its own

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
        self.answered_at = wait_for(self._pinged_at, timeout_s,
                                    f"the private dockerd to start; see {self.root}/dockerd.log",
                                    every_s=0.2)

    def _pinged_at(self) -> float | None:
        """The time.time() of a ping this engine answered, or None if it did not."""
        asked_at = time.time()
        try:
            client = self.client()
            client.ping()
            client.close()
        except Exception:
            return None
        return asked_at

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
            wait_for(functools.partial(self._relayed, port), 30,
                     f"the relays of port {port} to start; see {log_path}", every_s=0.05)

    def _relayed(self, port: str) -> bool:
        """Whether both relays of ``port`` listen: the socket in the root, the port on the
        host."""
        return (self.root / f"tcp-{port}.sock").exists() and accepts(int(port))

    def stop(self) -> None:
        if self._containers is not None:
            self._containers.client.close()
            self._containers = None
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

    def tear_down(self) -> None:
        """Every container removed (the engine started again for it if it was stopped),
        the engine stopped, its namespace and files gone."""
        if self.process is None:
            self.start()
        client = self.client()
        for container in client.containers.list(all=True):
            container.remove(force=True)
        client.close()
        self.stop()
        self.remove_netns()
        shutil.rmtree(self.root, ignore_errors=True)

    def forget(self) -> None:
        """For an engine never started: its namespace and files gone."""
        self.remove_netns()
        shutil.rmtree(self.root, ignore_errors=True)

    def run(self, script: str, **options: Any) -> Any:
        """A test container on this engine (``Containers.run``'s options), usable until
        the engine stops; the engine's tear-down removes it."""
        if self._containers is None:
            client = self.client()
            self._containers = Containers(client, build_busybox(client))
        return self._containers.run(script, **options)


def engine_client(url: str | None = None) -> Any:
    """A client of the engine at ``url`` (else DOCKER_HOST's), which answered a ping; a
    skip when none does (a failure when AEGIS_REQUIRE_DOCKER=1)."""
    import docker

    try:
        client = docker.DockerClient(base_url=url, timeout=10) if url else \
            docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        skip_or_fail(f"no Docker engine is reachable ({exc}); start dockerd to run this test")
    return client


def engine_socket() -> Path | None:
    """The unix socket of the engine at DOCKER_HOST (default /var/run/docker.sock), as the
    engine's own host sees it; None for an engine over TCP."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return Path(host.removeprefix("unix://")) if host.startswith("unix://") else None


def run_id() -> str:
    """This run's id: the pid of the process that runs the session (its workers inherit
    it)."""
    return os.environ.setdefault(RUN, str(os.getpid()))


def netns_name(kind: str) -> str:
    """The name of a network namespace this process makes for an engine of ``kind``:
    ``aegis-test-RUN-<kind>-PID``."""
    return f"{PREFIX}-{run_id()}-{kind}-{os.getpid()}"


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


def private_engine(kind: str = "dk") -> PrivateEngine:
    """The place of this process's private engine of ``kind`` (short: unix socket paths
    are limited), not started; a skip (a failure under AEGIS_REQUIRE_DOCKER=1) where this
    machine cannot run one."""
    reason = private_engine_available()
    if reason:
        skip_or_fail(reason)
    root = Path(f"/tmp/aegis-{kind}-{os.getpid()}")
    root.mkdir(exist_ok=True)
    return PrivateEngine(root, netns=netns_name(kind))


@dataclass(frozen=True)
class EngineEvent:
    """A container event as the engine reported it."""

    name: str
    action: str
    time_s: float  # the engine's own time of the event


@dataclass
class EngineEvents:
    """Container events as the engine saw them, whoever caused them, from live streams (the
    engine keeps only its latest events, and none across its own restart). ``follow``
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


class RestartWatch:
    """How many times the engine restarted each container, whoever asked, counted from
    the moment it is made (``EngineEvents`` of the restarts alone)."""

    def __init__(self, client: Any) -> None:
        self._events = EngineEvents(actions=("restart",))
        self._events.follow(client)

    def stop(self) -> Counter[str]:
        """Stop counting; the restarts by container name."""
        self._events.stop()
        return Counter(event.name for event in self._events.events)
