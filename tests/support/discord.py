"""A local HTTP server that behaves like Discord's webhook endpoint (and a plain JSON
endpoint for Apprise ``json://`` URLs), for tests and benchmarks.

    POST /api/webhooks/<id>/<token>[?wait=true]
        checks the token, then the payload against Discord's documented limits:
        400 with the violations, or 200 (wait=true, the created message with its id) /
        204. Rate-limit headers on every answer; a scripted step can answer 429 with
        retry_after, 500, 404, or answer slowly.
    PATCH /api/webhooks/<id>/<token>/messages/<message_id>
        edits a message the webhook posted: the same token check, limits, bucket and
        scripted steps as a post; 200 with the message, or 404 Unknown Message (code
        10008) for a message that does not exist or was deleted (``delete_message``).
    POST /json/<name>
        records the JSON body (what Apprise's json:// plugin sends), 200.

Run as a program (``python3 discord_server.py``, as the e2e test's compose service does),
it listens on 0.0.0.0:$FAKE_DISCORD_PORT (8080) for the token $FAKE_DISCORD_TOKEN and
prints each accepted message as one JSON line on stdout, never the token.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

WEBHOOK_ID = "112233445566778899"
# Message ids look like Discord's snowflakes and grow with each post.
MESSAGE_ID_BASE = 1_200_000_000_000_000_000
TOKEN = "fAk3-t0k3n_" + "x" * 20 + "_SECRETWEBHOOKTOKEN"

LIMITS = {"content": 2000, "embeds": 10, "title": 256, "description": 4096, "fields": 25,
          "field_name": 256, "field_value": 1024, "footer": 2048, "author": 256,
          "total": 6000}


def validate_discord_payload(payload: Any) -> list[str]:
    """Every way ``payload`` breaks Discord's documented limits (empty when valid)."""
    if not isinstance(payload, dict):
        return ["body is not a JSON object"]
    problems: list[str] = []
    content = payload.get("content") or ""
    embeds = payload.get("embeds") or []
    if not content and not embeds:
        problems.append("message is empty (no content, no embeds)")
    if len(content) > LIMITS["content"]:
        problems.append(f"content is {len(content)} > {LIMITS['content']}")
    if len(embeds) > LIMITS["embeds"]:
        problems.append(f"{len(embeds)} embeds > {LIMITS['embeds']}")
    total = sum(_embed_problems(i, embed, problems) for i, embed in enumerate(embeds))
    if total > LIMITS["total"]:
        problems.append(f"embeds total {total} > {LIMITS['total']}")
    return problems


def _embed_problems(i: int, embed: dict[str, Any], problems: list[str]) -> int:
    """The problems of ``embeds[i]`` added to ``problems``; its characters counted."""
    title = embed.get("title") or ""
    description = embed.get("description") or ""
    footer = (embed.get("footer") or {}).get("text") or ""
    author = (embed.get("author") or {}).get("name") or ""
    fields = embed.get("fields") or []
    for name, text, limit in (("title", title, "title"),
                              ("description", description, "description"),
                              ("footer", footer, "footer"), ("author", author, "author")):
        if len(text) > LIMITS[limit]:
            problems.append(f"embeds[{i}].{name} is {len(text)} > {LIMITS[limit]}")
    if len(fields) > LIMITS["fields"]:
        problems.append(f"embeds[{i}] has {len(fields)} fields > {LIMITS['fields']}")
    total = len(title) + len(description) + len(footer) + len(author)
    for j, field in enumerate(fields):
        total += _field_problems(f"embeds[{i}].fields[{j}]", field, problems)
    colour = embed.get("color")
    if colour is not None and not (isinstance(colour, int) and 0 <= colour <= 0xFFFFFF):
        problems.append(f"embeds[{i}].color {colour!r} is not a 24-bit integer")
    return total


def _field_problems(where: str, field: dict[str, Any], problems: list[str]) -> int:
    """The problems of one field added to ``problems``; its characters counted."""
    name, value = field.get("name") or "", field.get("value") or ""
    if not name.strip() or not value.strip():
        problems.append(f"{where} has an empty name or value")
    if len(name) > LIMITS["field_name"]:
        problems.append(f"{where}.name is {len(name)}")
    if len(value) > LIMITS["field_value"]:
        problems.append(f"{where}.value is {len(value)}")
    return len(name) + len(value)


def mentions_would_ping(payload: dict[str, Any]) -> bool:
    """True unless allowed_mentions stops every @everyone/@here/role/user ping."""
    allowed = payload.get("allowed_mentions")
    return not (isinstance(allowed, dict) and allowed.get("parse") == []
                and not allowed.get("roles") and not allowed.get("users"))


class FakeDiscord:
    """Start with ``FakeDiscord()`` (on ``port``, or any free one); ``close()`` when done.
    ``steps`` scripts the next answers: "ok", "429:<retry_after_s>", "500", "404", "401",
    "slow:<s>" (answers normally after s seconds), "drop:<s>" (waits s seconds, closes
    without answering or recording)."""

    # how Discord answers, by keyword with defaults: the token, its rate limit, where
    def __init__(self, token: str = TOKEN,  # noqa: PLR0913
                 bucket_size: int | None = None, bucket_window_s: float = 2.0,
                 port: int = 0, host: str = "127.0.0.1",
                 on_received: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.token = token
        self.bucket_size = bucket_size
        self.bucket_window_s = bucket_window_s
        self.received: list[dict[str, Any]] = []
        # time.monotonic() when each of ``received`` arrived (before it was answered)
        self.received_at: list[float] = []
        self.dropped = 0  # requests a "drop" step left unanswered
        self.rejected: list[tuple[dict[str, Any], list[str]]] = []
        self.json_received: list[dict[str, Any]] = []
        # the messages as they stand now, by id (a post creates one, an edit replaces it)
        self.messages: dict[str, dict[str, Any]] = {}
        self.edits: list[tuple[str, dict[str, Any]]] = []  # (message id, body) accepted
        self.edits_at: list[float] = []  # time.monotonic() when each edit arrived
        self.answers: list[int] = []
        self.steps: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self._bucket: collections.deque[float] = collections.deque()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self)

            def do_PATCH(self) -> None:
                fake._handle(self)

        self.on_received = on_received  # called with each accepted message
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def webhook_url(self, token: str | None = None) -> str:
        return (f"http://127.0.0.1:{self.port}/api/webhooks/{WEBHOOK_ID}/"
                f"{token or self.token}")

    def json_url(self, name: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/json/{name}"

    def script(self, *steps: str) -> None:
        with self._lock:
            self.steps.extend(steps)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delete_message(self, message_id: str) -> None:
        """A person deletes a message in the channel: editing it answers 404 from now on."""
        with self._lock:
            self.messages.pop(message_id, None)

    # --- the endpoint ---

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if parts.path.startswith("/json/"):
            with self._lock:
                self.json_received.append(body)
            self._answer(request, 200, {"ok": True})
            return
        segments = parts.path.strip("/").split("/")
        edit = request.command == "PATCH"
        if segments[:2] != ["api", "webhooks"] or len(segments) != (6 if edit else 4) or (
                edit and segments[4] != "messages"):
            self._answer(request, 404, {"message": "404: Not Found", "code": 0})
            return
        with self._lock:
            step = self.steps.popleft() if self.steps else "ok"
        kind, _, arg = step.partition(":")
        if kind in {"slow", "drop"}:
            time.sleep(float(arg))
            if kind == "drop":
                with self._lock:
                    self.dropped += 1
                request.close_connection = True
                return
            kind = "ok"
        if segments[3] != self.token or kind == "401":
            self._answer(request, 401, {"message": "Invalid Webhook Token", "code": 50027})
        elif kind == "404":
            self._answer(request, 404, {"message": "Unknown Webhook", "code": 10015})
        elif kind == "500":
            self._answer(request, 500, None, text="Internal Server Error")
        elif kind == "429":
            self._rate_limited(request, float(arg or 1.0))
        elif edit:
            self._accept(request, body, parse_qs(parts.query), arrived, segments[5])
        else:
            self._accept(request, body, parse_qs(parts.query), arrived)

    def _accept(self, request: BaseHTTPRequestHandler, body: Any,
                query: dict[str, list[str]], arrived: float,
                message_id: str | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            while self._bucket and self._bucket[0] <= now - self.bucket_window_s:
                self._bucket.popleft()
            if self.bucket_size is not None and len(self._bucket) >= self.bucket_size:
                retry_after_s = self._bucket[0] + self.bucket_window_s - now
                limited = True
            else:
                limited = False
                self._bucket.append(now)
        if limited:
            self._rate_limited(request, round(retry_after_s, 3))
            return
        problems = validate_discord_payload(body)
        if problems:
            with self._lock:
                self.rejected.append((body, problems))
            self._answer(request, 400, {"message": "Invalid Form Body", "code": 50035,
                                        "errors": problems})
            return
        if message_id is not None:
            self._edit(request, message_id, body, arrived)
            return
        with self._lock:
            self.received.append(body)
            self.received_at.append(arrived)
            message_id = str(MESSAGE_ID_BASE + len(self.received))
            self.messages[message_id] = body
        if self.on_received is not None:
            self.on_received(body)
        if query.get("wait", ["false"])[0].lower() == "true":
            self._answer(request, 200, self._message(message_id, body))
        else:
            self._answer(request, 204, None)

    def _edit(self, request: BaseHTTPRequestHandler, message_id: str, body: Any,
              arrived: float) -> None:
        with self._lock:
            known = message_id in self.messages
            if known:
                self.messages[message_id] = {**self.messages[message_id], **body}
                self.edits.append((message_id, body))
                self.edits_at.append(arrived)
        if not known:
            self._answer(request, 404, {"message": "Unknown Message", "code": 10008})
            return
        self._answer(request, 200, self._message(message_id, self.messages[message_id]))

    @staticmethod
    def _message(message_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """The message object Discord answers with (``?wait=true``, an edit)."""
        return {"id": message_id, "channel_id": "1", "webhook_id": WEBHOOK_ID,
                "content": body.get("content", ""), "embeds": body.get("embeds", [])}

    def _rate_limited(self, request: BaseHTTPRequestHandler, retry_after_s: float) -> None:
        self._answer(request, 429, {"message": "You are being rate limited.",
                                    "retry_after": retry_after_s, "global": False},
                     extra={"Retry-After": str(max(1, round(retry_after_s))),
                            "X-RateLimit-Scope": "user"})

    def _answer(self, request: BaseHTTPRequestHandler, status: int, body: Any,
                text: str | None = None, extra: dict[str, str] | None = None) -> None:
        with self._lock:
            self.answers.append(status)
            used = len(self._bucket)
        payload = text.encode() if text is not None else (
            json.dumps(body).encode() if body is not None else b"")
        request.send_response(status)
        if self.bucket_size is not None:
            request.send_header("X-RateLimit-Limit", str(self.bucket_size))
            request.send_header("X-RateLimit-Remaining", str(max(0, self.bucket_size - used)))
            request.send_header("X-RateLimit-Reset-After", f"{self.bucket_window_s:.3f}")
        for key, value in (extra or {}).items():
            request.send_header(key, value)
        if payload:
            request.send_header("Content-Type",
                                "text/plain" if text is not None else "application/json")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        if payload:
            request.wfile.write(payload)


def main() -> None:
    """Serve until interrupted, printing each accepted message as a JSON line."""
    def show(body: dict[str, Any]) -> None:
        print(json.dumps({"received": body}), flush=True)

    fake = FakeDiscord(token=os.environ.get("FAKE_DISCORD_TOKEN", TOKEN),
                       port=int(os.environ.get("FAKE_DISCORD_PORT", "8080")), host="0.0.0.0",
                       on_received=show)
    print(f"listening on :{fake.port}", flush=True)
    try:
        fake._thread.join()
    except KeyboardInterrupt:
        fake.close()


if __name__ == "__main__":
    main()
