"""A byte relay between two endpoints, each ``tcp:HOST:PORT`` or ``unix:PATH``: it listens
on the first and connects every accepted client to the second. Whatever runs on top (HTTP,
TLS) passes through unchanged.

A private engine in a network namespace of its own listens on TCP inside it; two relays
carry a port of the host into it, through a unix socket (a file, which both namespaces
see): ``python3 tests/support/relay.py tcp:127.0.0.1:P unix:S`` on the host, and the same with
the endpoints swapped under ``nsenter --net=...``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Callable

CHUNK = 65536


def endpoint(text: str) -> tuple[int, str | tuple[str, int]]:
    """``tcp:HOST:PORT`` or ``unix:PATH`` as a socket family and address."""
    kind, _, rest = text.partition(":")
    if kind == "unix":
        return socket.AF_UNIX, rest
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        return socket.AF_INET, (host, int(port))
    raise ValueError(f"not tcp:HOST:PORT or unix:PATH: {text}")


def pipe(source: socket.socket, target: socket.socket,
         seen: Callable[[bytes], None] | None = None) -> None:
    """Copy what ``source`` sends to ``target`` until it closes, then close that way;
    ``seen`` is handed each chunk before it goes on."""
    try:
        while data := source.recv(CHUNK):
            if seen is not None:
                seen(data)
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def splice(client: socket.socket, target: tuple[int, str | tuple[str, int]]) -> None:
    """Connect ``client`` to ``target`` both ways, until both are done."""
    upstream = socket.socket(target[0])
    try:
        upstream.connect(target[1])
    except OSError:
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
    back.start()
    pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def relay(listen: str, target: str) -> None:
    """Accept on ``listen`` for ever, each client spliced to ``target``."""
    family, address = endpoint(listen)
    listener = socket.socket(family)
    if family == socket.AF_UNIX:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(address))
    else:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(address)
    listener.listen(64)
    print(f"relaying {listen} -> {target}", flush=True)
    to = endpoint(target)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=splice, args=(client, to), daemon=True).start()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        relay(sys.argv[1], sys.argv[2])
