"""Free TCP ports on the loopback for the servers a test starts (a daemon's status page, a
socket proxy, PgBouncer, a relay, a webhook endpoint that is down).

A port found free is only free until someone binds it, and a test hands it to a process
that binds it seconds later. So each pytest process takes its ports from a block of its
own below the kernel's ephemeral range (32768 and up, where every ``bind(0)`` on this
machine lands), and goes round its block: two processes of a parallel run never hand out
the same port, and neither does one process twice in a row.
"""

from __future__ import annotations

import itertools
import os
import socket

FIRST_PORT = 20000
BLOCK = 500
_turn = itertools.count()


def _block() -> int:
    """This process's block: one per xdist worker (gw0, gw1, ...), the last for a run
    without workers."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    number = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 23
    return FIRST_PORT + (number % 24) * BLOCK


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on, from this process's block."""
    first = _block()
    for _ in range(BLOCK):
        port = first + next(_turn) % BLOCK
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {first}-{first + BLOCK - 1}")


def accepts(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
