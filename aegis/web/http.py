"""The HTTP endpoint (AEGIS_HTTP_ADDR): ``/healthz`` and ``/metrics``.

``/healthz`` reads only the heartbeat file, so it answers the same whether PostgreSQL is up
or down: 200 while the daemon loop's heartbeat is fresh, 503 otherwise. ``/metrics`` is the
Prometheus exposition of aegis.web.metrics.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from aegis.core.clock import utcnow
from aegis.core.errors import ConfigError
from aegis.scheduling.heartbeat import DaemonStatus, file_status, read_heartbeat, stale_after_s
from aegis.storage.runtime import Runtime
from aegis.web.metrics import CONTENT_TYPE, build_registry, render

POLL_INTERVAL_S = 0.5
BIND_RETRY_S = 30.0

log = structlog.get_logger("aegis.web.http")


def health(runtime: Runtime, now: datetime) -> tuple[int, dict[str, Any]]:
    """The ``/healthz`` answer: (HTTP status, JSON body)."""
    settings = runtime.settings
    heartbeat = read_heartbeat(settings.home)
    status = file_status(heartbeat, now, settings.heartbeat_interval_s)
    if heartbeat is None:
        return 503, {"status": status.value, "heartbeat_age_s": None}
    age_s = round((now - heartbeat.last_heartbeat_at).total_seconds(), 3)
    body = {"status": status.value, "heartbeat_age_s": age_s,
            "stale_after_s": stale_after_s(settings.heartbeat_interval_s),
            "host": heartbeat.host, "pid": heartbeat.pid}
    if status == DaemonStatus.RUNNING:
        return 200, {**body, "status": "ok"}
    return 503, body


def parse_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ConfigError("AEGIS_HTTP_ADDR", f"{addr!r} is not HOST:PORT") from None


def make_server(runtime: Runtime, addr: str,
                clock: Callable[[], datetime] = utcnow) -> ThreadingHTTPServer:
    """Bind the endpoint (port 0 picks a free port); serve it with ``serve_forever``."""
    registry = build_registry(runtime, clock)

    class Handler(BaseHTTPRequestHandler):
        server_version = "aegis"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                status, body = health(runtime, clock())
                self._send(status, "application/json", json.dumps(body).encode())
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE, render(registry))
            elif path == "/":
                self._send(200, "text/plain; charset=utf-8",
                           b"aegis: /healthz (200 while the loop is alive), /metrics\n")
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes every few seconds would flood the log; errors are logged elsewhere."""

    host, port = parse_addr(addr)
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve(runtime: Runtime, stop: threading.Event, bind_retry_s: float = BIND_RETRY_S) -> None:
    """The daemon service: serve AEGIS_HTTP_ADDR until ``stop`` is set. A port that is
    taken is logged once and retried, so the daemon runs on without its endpoint."""
    addr = runtime.settings.http_addr
    if addr is None:
        return
    logged = False
    while True:
        try:
            server = make_server(runtime, addr)
            break
        except OSError as exc:  # the port is taken, or the address is not this host's
            if not logged:
                log.error("http_bind_failed", addr=addr, error=str(exc),
                          retry_s=bind_retry_s)
                logged = True
            if stop.wait(bind_retry_s):
                return
    thread = threading.Thread(target=server.serve_forever, args=(POLL_INTERVAL_S,),
                              name="aegis-http-server", daemon=True)
    thread.start()
    log.info("http_listening", addr=addr)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(POLL_INTERVAL_S * 4)
