"""Wake-ups from PostgreSQL: one connection LISTENs on every channel aegis waits on (new
tasks, queued notifications), whoever in the process waits for them.

A subscriber hands a ``threading.Event``; the listener sets it on each NOTIFY of its
channel, and on each (re)connection for what was sent while nobody listened. A lost
connection is opened again after LISTEN_RETRY_S, through the same URL: with several
hosts in it, on whichever is the primary then (a standby refuses LISTEN, so the
listener never stays on one). Where LISTEN
cannot pass (a pooler in transaction mode, with no direct URL to listen on), the listener
polls instead: it sets every subscriber's event every ``poll_s`` seconds, and the loops
it wakes look at the database as they would after a NOTIFY. The thread runs while there
are subscribers, so a process that waits for nothing holds no connection for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql as pgsql

from aegis.core.logs import get_logger
from aegis.core.redact import redact

# How long a listener waits before connecting again after losing its connection.
LISTEN_RETRY_S = 5.0
# How often a listener looks for new channels and for being no longer needed.
CHECK_S = 1.0


class Listener:
    def __init__(self, dsn: str | None, *, poll_s: float, application_name: str,
                 configure: Callable[[psycopg.Connection[Any]], None],
                 connect_timeout_s: int = 5) -> None:
        """``dsn``: where to LISTEN; None polls every ``poll_s`` seconds instead."""
        self.dsn = dsn
        self.poll_s = poll_s
        self.application_name = application_name
        self.configure = configure
        self.connect_timeout_s = connect_timeout_s
        self.log = get_logger(component="listener")
        self._subscribers: dict[str, list[threading.Event]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def polling(self) -> bool:
        return self.dsn is None

    def subscribe(self, channel: str, wake: threading.Event) -> None:
        """Set ``wake`` on every NOTIFY on ``channel`` until ``unsubscribe``."""
        with self._lock:
            self._subscribers.setdefault(channel, []).append(wake)
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="aegis-listener")
                self._thread.start()
        wake.set()  # what was sent before this subscriber listened

    def unsubscribe(self, channel: str, wake: threading.Event) -> None:
        with self._lock:
            waiting = self._subscribers.get(channel, [])
            if wake in waiting:
                waiting.remove(wake)
            if not waiting:
                self._subscribers.pop(channel, None)

    def close(self, timeout_s: float = 2.0) -> None:
        self._closed.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    # --- the thread ---

    def _channels(self) -> set[str]:
        with self._lock:
            return set(self._subscribers)

    def _wake(self, channels: set[str] | None = None) -> None:
        with self._lock:
            for channel, waiting in self._subscribers.items():
                if channels is None or channel in channels:
                    for wake in waiting:
                        wake.set()

    def _done(self) -> bool:
        """True, and the thread forgotten, when nobody needs the listener any more."""
        with self._lock:
            if self._closed.is_set() or not self._subscribers:
                self._thread = None
                return True
            return False

    def _run(self) -> None:
        lost = False
        while not self._done():
            if self.dsn is None:
                self._closed.wait(self.poll_s)
                self._wake()
                continue
            try:
                self._listen(self.dsn, reconnecting=lost)
            except psycopg.Error as exc:
                lost = True
                self.log.debug("listener_disconnected",
                               error=redact(str(exc).strip(), [self.dsn]))
                self._closed.wait(LISTEN_RETRY_S)

    def _listen(self, dsn: str, *, reconnecting: bool) -> None:
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None,
                             connect_timeout=self.connect_timeout_s,
                             application_name=self.application_name) as conn:
            self.configure(conn)
            if reconnecting:
                self.log.info("listener_reconnected",
                              server=f"{conn.info.host}:{conn.info.port}")
            listening: set[str] = set()
            while not self._done():
                new = self._channels() - listening
                for channel in sorted(new):
                    conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(channel)))
                listening |= new
                if new:
                    self._wake(new)  # what was sent while nobody listened
                for notify in conn.notifies(timeout=CHECK_S, stop_after=1):
                    self._wake({notify.channel})
