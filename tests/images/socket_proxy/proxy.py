"""A stand-in for the docker-socket-proxy image, for machines that cannot pull it: an HTTP
relay from TCP port 2375 to the Docker socket that passes only the API sections its
environment enables, and answers everything else ``403 Forbidden``.

The variables are the proxy's own: one per API section (CONTAINERS, EVENTS, PING, VERSION,
INFO, IMAGES, NETWORKS, VOLUMES, EXEC, BUILD, ...; 1 allows reading it), POST=1 to allow
the other methods on the sections allowed, and ALLOW_START (start), ALLOW_STOP (stop) and
ALLOW_RESTARTS (stop, restart, kill) for those container actions, which need no POST (as
in the linuxserver image; Tecnativa's refuses them unless POST=1). EVENTS, PING and
VERSION default to 1, everything else to 0. SOCKET_PATH names the socket, PROXY_PORT
another port than 2375 (for a test that runs it as a process of its own).

Each request is checked on its own: the relay forwards one request per connection (it
asks the engine to close after the answer), so a client cannot slip a second request past
the check on a kept-alive connection. One line per request goes to stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys

PORT = 2375
HEAD_LIMIT = 65536
READ_CHUNK = 65536
DEFAULTS = {"EVENTS": "1", "PING": "1", "VERSION": "1"}
# the first path segment after the optional /vX.Y, and the variable that opens it
SECTIONS = {"_ping": "PING", "auth": "AUTH", "build": "BUILD", "commit": "COMMIT",
            "configs": "CONFIGS", "containers": "CONTAINERS",
            "distribution": "DISTRIBUTION", "events": "EVENTS", "exec": "EXEC",
            "grpc": "GRPC", "images": "IMAGES", "info": "INFO", "networks": "NETWORKS",
            "nodes": "NODES", "plugins": "PLUGINS", "secrets": "SECRETS",
            "services": "SERVICES", "session": "SESSION", "swarm": "SWARM",
            "system": "SYSTEM", "tasks": "TASKS", "version": "VERSION",
            "volumes": "VOLUMES"}
# container actions, and the variables that allow each without POST
ACTIONS = {"start": ("ALLOW_START",), "stop": ("ALLOW_STOP", "ALLOW_RESTARTS"),
           "restart": ("ALLOW_RESTARTS",), "kill": ("ALLOW_RESTARTS",)}
_VERSIONED = re.compile(r"^/v[\d.]+(?=/)")
_ACTION = re.compile(r"^/containers/[a-zA-Z0-9_.-]+/([a-z]+)$")
_FORBIDDEN_PAGE = (b"<html><body><h1>403 Forbidden</h1>\n"
                   b"Request forbidden by administrative rules.\n</body></html>\n")
FORBIDDEN = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nConnection: close\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (len(_FORBIDDEN_PAGE), _FORBIDDEN_PAGE))


def enabled(name: str, environ: dict[str, str]) -> bool:
    value = environ.get(name, DEFAULTS.get(name, "0")).strip().lower()
    return value in {"1", "true", "yes", "on"}


def allowed(method: str, target: str, environ: dict[str, str]) -> bool:
    """Whether the proxy passes ``method target`` with these variables."""
    path = _VERSIONED.sub("", target.split("?", 1)[0])
    action = _ACTION.match(path)
    if action and action.group(1) in ACTIONS:
        return any(enabled(name, environ) for name in ACTIONS[action.group(1)])
    section = SECTIONS.get(path.strip("/").split("/", 1)[0])
    if section is None or not enabled(section, environ):
        return False
    return method in {"GET", "HEAD"} or enabled("POST", environ)


def with_connection_close(head: bytes) -> bytes:
    """The request head with its Connection header replaced by ``Connection: close``."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    kept = [line for line in lines[1:] if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n"


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(READ_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def handle(client_reader: asyncio.StreamReader,
                 client_writer: asyncio.StreamWriter) -> None:
    try:
        head = await client_reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        client_writer.close()
        return
    method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
    target = rest.partition(" ")[0]
    if not allowed(method, target, dict(os.environ)):
        print(f"403 {method} {target}", flush=True)
        client_writer.write(FORBIDDEN)
        with contextlib.suppress(ConnectionError):
            await client_writer.drain()
        client_writer.close()
        return
    print(f"pass {method} {target}", flush=True)
    socket_path = os.environ.get("SOCKET_PATH", "/var/run/docker.sock")
    try:
        engine_reader, engine_writer = await asyncio.open_unix_connection(socket_path)
    except OSError as exc:
        print(f"502 {method} {target}: {exc}", flush=True)
        client_writer.write(b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n"
                            b"Content-Length: 0\r\n\r\n")
        client_writer.close()
        return
    engine_writer.write(with_connection_close(head))
    upstream = asyncio.ensure_future(pipe(client_reader, engine_writer))
    await pipe(engine_reader, client_writer)  # the answer, until the engine closes
    upstream.cancel()
    for writer in (engine_writer, client_writer):
        writer.close()


async def serve() -> None:
    port = int(os.environ.get("PROXY_PORT") or PORT)
    server = await asyncio.start_server(handle, "0.0.0.0", port, limit=HEAD_LIMIT)
    names = {*SECTIONS.values(), "POST"}.union(*ACTIONS.values())
    opened = sorted(name for name in names if enabled(name, dict(os.environ)))
    print(f"listening on :{port}, allowed: {', '.join(opened)}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    sys.exit(0)
