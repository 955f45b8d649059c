"""The HTTP endpoint (AEGIS_HTTP_ADDR): the status page, ``/healthz`` and ``/metrics``.

``/healthz`` reads only the heartbeat file, so it answers the same whether PostgreSQL is up
or down: 200 while the daemon loop's heartbeat is fresh, 503 otherwise. ``/metrics`` is the
Prometheus exposition of aegis.web.metrics. The pages (``/``, ``/container``, ``/jobs``,
``/events``) are HTML rendered here from aegis/web/pages.py and history.py.

Every path answers GET and HEAD, and nothing a GET asks changes anything in aegis. The
POSTs ``/login`` and ``/logout`` set or clear the session cookie of the token form; the
one POST that changes something, ``/ack`` (acknowledge an escalated container, as ``aegis
ack`` does), exists only with AEGIS_HTTP_TOKEN set: without one the page is read-only.
Who may read what, what a post must carry, and the headers every answer carries (a strict
Content-Security-Policy, nosniff, no caching), are aegis/web/auth.py's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import structlog

from aegis.core.clock import utcnow
from aegis.core.errors import ConfigError, DatabaseUnavailable, StoreError, UsageError
from aegis.core.parsing import is_loopback_addr
from aegis.scheduling.heartbeat import DaemonStatus, file_status, read_heartbeat, stale_after_s
from aegis.storage.runtime import Runtime
from aegis.supervision.containers import acknowledge
from aegis.web import auth, history, pages
from aegis.web.metrics import CONTENT_TYPE, build_registry, render
from aegis.web.render import Templates

POLL_INTERVAL_S = 0.5
BIND_RETRY_S = 30.0
REQUEST_TIMEOUT_S = 30.0  # an idle or slow client's connection is closed after this
MAX_FORM_BYTES = 4096
MAX_QUERY_FIELDS = 64
HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
# path -> (file in aegis/web/static, content type)
STATIC = {"/static/status.css": ("status.css", "text/css; charset=utf-8"),
          "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
          "/favicon.ico": ("favicon.svg", "image/svg+xml")}  # what browsers ask for
Headers = list[tuple[str, str]]
Answer = tuple[int, str, bytes, Headers]  # status, content type, body, more headers
NOT_ALLOWED: Answer = (405, TEXT,
                       b"method not allowed: the status page is read-only\n",
                       [("Allow", "GET, HEAD")])

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


def _overview(runtime: Runtime, query: history.Query, now: datetime,
              zone: tzinfo) -> tuple[str, Any]:
    return "overview.html", pages.overview(runtime, now, zone)


def _container(runtime: Runtime, query: history.Query, now: datetime,
               zone: tzinfo) -> tuple[str, Any]:
    host, name = history.one(query, "host"), history.one(query, "name")
    if not host or not name:
        raise pages.PageError(400, "a container page needs ?host=HOST&name=NAME")
    return "container.html", pages.container_page(runtime, host, name, now)


def _jobs(runtime: Runtime, query: history.Query, now: datetime,
          zone: tzinfo) -> tuple[str, Any]:
    return "jobs.html", history.jobs_page(runtime, query, now)


def _events(runtime: Runtime, query: history.Query, now: datetime,
            zone: tzinfo) -> tuple[str, Any]:
    return "events.html", history.events_page(runtime, query, now)


PAGES = {"/": _overview, "/container": _container, "/jobs": _jobs, "/events": _events}


@dataclass(frozen=True)
class Container:
    """The container a form names."""

    host: str
    name: str


def _last(fields: history.Query, name: str, default: str) -> str:
    """The last value of a form or query field, whatever its length."""
    return (fields.get(name) or [default])[-1]


class StatusSite:
    """What the endpoint answers, apart from the socket: the token, the routes, the pages.
    Times on the pages are rendered in AEGIS_TIMEZONE."""

    def __init__(self, runtime: Runtime, clock: Callable[[], datetime] = utcnow) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.clock = clock
        self.zone = runtime.settings.zone
        self.templates = Templates(self.zone)
        self.registry = build_registry(runtime, clock)
        folder = resources.files("aegis.web") / "static"
        self.static = {path: (content_type, (folder / name).read_bytes())
                       for path, (name, content_type) in STATIC.items()}
        # the paths that are neither a page nor a file, and what answers each
        self.routes: dict[str, Callable[[str], Answer]] = {
            "/healthz": self._healthz, "/metrics": self._metrics, "/login": self._login_form}

    def get(self, target: str, headers: Mapping[str, str]) -> Answer:
        parts = urlsplit(target)
        path = parts.path
        refused = self._refused(path, target, headers)
        if refused is not None:
            return refused
        route = self.routes.get(path)
        if route is not None:
            return route(parts.query)
        if path in self.static:
            content_type, content = self.static[path]
            return 200, content_type, content, []
        page = PAGES.get(path)
        if page is None:
            return 404, TEXT, b"not found\n", []
        return self._page(page, parts.query)

    def _refused(self, path: str, target: str, headers: Mapping[str, str]) -> Answer | None:
        """The answer to a request this endpoint does not serve as asked: a page under
        another host name with no token set (a DNS rebinding), or without the token."""
        token = self.settings.http_token
        if token is None and path in PAGES and not self._loopback_host(headers):
            return 421, TEXT, (b"this page answers only as http://127.0.0.1 or "
                               b"http://localhost (set AEGIS_HTTP_TOKEN to serve it by "
                               b"another name)\n"), []
        if (token is not None and auth.needs_token(self.settings, path)
                and not auth.authorized(token, headers)):
            return self._unauthorized(path, target)
        return None

    def _healthz(self, query_text: str) -> Answer:
        status, body = health(self.runtime, self.clock())
        return status, "application/json", json.dumps(body).encode(), []

    def _metrics(self, query_text: str) -> Answer:
        return 200, CONTENT_TYPE, render(self.registry), []

    def _login_form(self, query_text: str) -> Answer:
        next_path = auth.local_target(_last(parse_qs(query_text), "next", "/"))
        if self.settings.http_token is None:
            return 303, TEXT, b"", [("Location", next_path)]
        return 200, HTML, self._login(next_path, ""), []

    def post(self, path: str, headers: Mapping[str, str], form: bytes) -> Answer:
        """The token form (``/login``) and its way out (``/logout``), which set or clear
        the session cookie and change nothing else; and, with a token, ``/ack``."""
        if path == "/ack" and self.settings.http_token is not None:
            return self._ack(self.settings.http_token, headers, form)
        if path not in ("/login", "/logout"):
            return NOT_ALLOWED
        if not auth.same_origin(headers):
            return 403, TEXT, b"a form of another site cannot post here\n", []
        if path == "/logout":
            return 303, TEXT, b"", [("Location", "/"), ("Set-Cookie", auth.cleared_cookie())]
        return self._log_in(path, form)

    def _log_in(self, path: str, form: bytes) -> Answer:
        try:
            fields = parse_qs(form.decode("utf-8", "replace"),
                              max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:  # too many fields
            return 400, TEXT, b"not the token form\n", []
        next_path = auth.local_target(_last(fields, "next", "/"))
        token = self.settings.http_token
        if token is None:
            return 303, TEXT, b"", [("Location", next_path)]
        if not auth.token_matches(token, _last(fields, "token", "").strip()):
            log.warning("http_token_refused", path=path)
            return 401, HTML, self._login(next_path, "That is not the token aegis was "
                                          "given (AEGIS_HTTP_TOKEN)."), []
        return 303, TEXT, b"", [("Location", next_path),
                                ("Set-Cookie", auth.session_cookie(token))]

    def _ack(self, token: str, headers: Mapping[str, str], form: bytes) -> Answer:
        """Acknowledge the escalated container the form names, then back to its page."""
        target = self._ack_target(token, headers, form)
        if not isinstance(target, Container):
            return target
        try:
            acknowledge(self.runtime, target.name, self.clock(), by="the status page",
                        host=target.host)
        except UsageError as exc:
            return 404, TEXT, f"{exc}\n".encode(), []
        except StoreError:
            return 503, TEXT, b"the database does not answer; nothing was acknowledged\n", []
        log.info("http_acknowledged", host=target.host, container=target.name)
        page = "/container?" + urlencode({"host": target.host, "name": target.name})
        return 303, TEXT, b"", [("Location", page)]

    @staticmethod
    def _ack_target(token: str, headers: Mapping[str, str], form: bytes
                    ) -> Container | Answer:
        """The container an acknowledge form names, or the refusal of a post without the
        token, from another site, or without the form's check."""
        if not auth.authorized(token, headers):
            return 401, TEXT, b"token required\n", [("WWW-Authenticate",
                                                      'Bearer realm="aegis"')]
        if not auth.posted_here(headers):
            return 403, TEXT, b"a form of another site cannot post here\n", []
        try:
            fields = parse_qs(form.decode("utf-8", "replace"),
                              max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:  # too many fields
            return 400, TEXT, b"not the acknowledge form\n", []
        target = Container(_last(fields, "host", ""), _last(fields, "name", ""))
        if not auth.ack_check_matches(token, target.host, target.name,
                                      _last(fields, "check", "")):
            return 403, TEXT, b"the form's check does not match: reload the page\n", []
        return target

    def _page(self, page: Callable[..., tuple[str, Any]], query_text: str) -> Answer:
        now = self.clock()
        try:
            query = parse_qs(query_text, keep_blank_values=True,
                             max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:  # too many fields
            return self._error(400, now, "too many query parameters")
        try:
            template, data = page(self.runtime, query, now, self.zone)
            return 200, HTML, self._render(template, now, page=data,
                                           refresh_s=getattr(data, "refresh_s", 0)), []
        except pages.PageError as exc:
            return self._error(exc.status, now, str(exc))
        except StoreError as exc:  # unreachable, or a query the schema cannot answer
            if not isinstance(exc, DatabaseUnavailable):
                log.error("page_query_failed", error=str(exc))
            return self._error(503, now, "The database does not answer; this page tries "
                               "again every 30 seconds.", refresh_s=30)
        except Exception:  # a page that fails is one answer and a log line, not a crash
            log.exception("page_failed", page=page.__name__.strip("_"))
            return self._error(500, now, "This page could not be rendered; the daemon's "
                               "log says why.")

    def _render(self, template: str, now: datetime, **context: Any) -> bytes:
        return self.templates.render(template, {
            "now": now, "token_required": self.settings.http_token is not None,
            "ack_check": self._ack_check(), "refresh_s": 0, **context})

    def _ack_check(self) -> Callable[[str, str], str] | None:
        """The acknowledge form's check field of a container (host, name), or None
        without a token: a read-only page has no such form."""
        token = self.settings.http_token
        if token is None:
            return None
        return lambda host, name: auth.ack_check(token, host, name)

    def _error(self, status: int, now: datetime, message: str, refresh_s: int = 0) -> Answer:
        return status, HTML, self._render("error.html", now, status=status, message=message,
                                          refresh_s=refresh_s), []

    def _login(self, next_path: str, problem: str) -> bytes:
        return self._render("login.html", self.clock(), next_path=next_path, problem=problem,
                            token_required=False)

    def _unauthorized(self, path: str, target: str) -> Answer:
        challenge = [("WWW-Authenticate", 'Bearer realm="aegis"')]
        if path not in PAGES:  # /metrics, or a path that may not exist: no form, no hint
            return 401, TEXT, b"token required: Authorization: Bearer TOKEN\n", challenge
        return 401, HTML, self._login(auth.local_target(target), ""), challenge

    @staticmethod
    def _loopback_host(headers: Mapping[str, str]) -> bool:
        """The request names this server by a loopback name: a page of another site whose
        name was re-pointed at 127.0.0.1 (DNS rebinding) cannot read a token-less page."""
        try:
            name = urlsplit("//" + headers.get("host", "")).hostname
        except ValueError:  # an unbalanced [ in the name
            return False
        return name is None or is_loopback_addr(f"[{name}]:0")


class Handler(BaseHTTPRequestHandler):
    server_version = "aegis"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S
    site: StatusSite  # set on the subclass each server makes

    def do_GET(self) -> None:
        self._reply(self.site.get(self.path, self._headers()))

    def do_HEAD(self) -> None:
        self._reply(self.site.get(self.path, self._headers()), body=False)

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_FORM_BYTES:
            self.close_connection = True
            self._reply((413, TEXT, b"a form of at most 4 KB\n", []))
            return
        form = self.rfile.read(length)
        self._reply(self.site.post(urlsplit(self.path).path, self._headers(), form))

    def _not_allowed(self) -> None:
        self._reply(NOT_ALLOWED)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """A request that cannot be read (a bad request line, an unknown method): one
        line of text, with the same headers as every other answer."""
        self.close_connection = True
        text = f"{code} {message or HTTPStatus(code).phrase}\n"
        self._reply((code, TEXT, text.encode("utf-8", "replace"), [("Connection", "close")]),
                    body=self.command != "HEAD")

    def _headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def _reply(self, answer: Answer, body: bool = True) -> None:
        status, content_type, payload, more = answer
        self.send_response(status)
        for name, value in (*auth.SECURITY_HEADERS, ("Content-Type", content_type),
                            ("Content-Length", str(len(payload))), *more):
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log; errors are logged elsewhere."""


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer, or a page that failed: one log line, and
        the server goes on."""
        log.warning("http_request_failed", exc_info=True)


def make_server(runtime: Runtime, addr: str, clock: Callable[[], datetime] = utcnow
                ) -> Server:
    """Bind the endpoint (port 0 picks a free port); serve it with ``serve_forever``. The
    pages show times in AEGIS_TIMEZONE."""
    site = StatusSite(runtime, clock)
    handler = type("SiteHandler", (Handler,), {"site": site})
    host, port = parse_addr(addr)
    return Server((host, port), handler)


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
    log.info("http_listening", addr=addr, token=runtime.settings.http_token is not None)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(POLL_INTERVAL_S * 4)
