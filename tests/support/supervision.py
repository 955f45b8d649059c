"""aegis's supervisor and watcher run in the test process against a real engine: a
supervisor with settings of the test's own, a watcher in a thread, and a unix-socket proxy
in front of the engine that the test controls (dropping it is the engine going away,
holding a request is an engine slow to answer it)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from aegis import api
from aegis.supervision.supervisor import Supervisor
from aegis.supervision.watcher import Watcher
from tests.support.relay import pipe

# aegis's default strike interval, by which the tests move a supervisor's clock
INTERVAL = timedelta(seconds=60)


def supervisor(app: api.Aegis, client: Any, **settings: Any) -> Supervisor:
    """A supervisor of ``app`` on ``client``'s engine, with ``settings`` replacing the
    app's (``strike_interval_s=...``, ``docker_scope=...``)."""
    sv = Supervisor(app, client, own_ids=frozenset())
    if settings:
        sv.settings = replace(app.settings, **settings)
    return sv


@contextlib.contextmanager
def running_watcher(app: api.Aegis, **options: Any) -> Iterator[Watcher]:
    """A watcher in a thread of its own, connected; stopped (and joined) afterwards."""
    running = Watcher(app, own_ids=frozenset(), **options)
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
    thread.start()
    assert running.connected.wait(10), "the watcher did not connect"
    yield running
    stop.set()
    thread.join(30)
    assert not thread.is_alive()


class SocketProxy:
    """Forwards a unix socket to the Docker engine's; ``drop`` cuts every connection and
    stops listening, ``start`` listens again. ``hold(text)`` keeps every request whose
    first line holds ``text`` until ``release()``: an engine slow to answer it (as Docker
    is to an inspect of a container it is stopping). ``asked(text)``: when each request
    whose first line holds ``text`` came (epoch seconds)."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self.target = target
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._held: bytes | None = None
        self.holding = threading.Event()  # a held request arrived
        self._released = threading.Event()
        self._asked: list[tuple[float, bytes]] = []  # each request's time and first line

    def hold(self, text: str) -> None:
        self._released.clear()
        self._held = text.encode()

    def release(self) -> None:
        self._held = None
        self._released.set()

    @contextlib.contextmanager
    def held(self, text: str) -> Iterator[None]:
        """``hold(text)`` for the block, released however it ends."""
        self.hold(text)
        try:
            yield
        finally:
            self.release()

    def client(self, timeout_s: int = 10) -> Any:
        """A Docker client of the engine through this proxy."""
        import docker

        return docker.DockerClient(base_url=f"unix://{self.path}", timeout=timeout_s)

    def asked(self, text: str, since: float = 0.0) -> list[float]:
        """When each request whose first line holds ``text`` came, since ``since``."""
        return [at for at, line in list(self._asked) if text.encode() in line and at >= since]

    def _forward(self, data: bytes) -> None:
        """Called with each chunk a client sends, before it goes on to the engine."""
        line = data.split(b"\r\n", 1)[0]
        if b" HTTP/1." in line:
            self._asked.append((time.time(), line))
        held = self._held
        if held is not None and held in line:
            self.holding.set()
            self._released.wait(60)

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def drop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self._lock:
                self._open += [client, upstream]
            for source, sink, seen in ((client, upstream, self._forward),
                                       (upstream, client, None)):
                threading.Thread(target=pipe, args=(source, sink, seen),
                                 daemon=True).start()
