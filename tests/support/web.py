"""aegis's status page and health endpoint served from the test process, on a free
loopback port and a clock the test sets, the heartbeat file they read, and a scrape of
/metrics read with prometheus-client's own parser."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from aegis.core.config import Settings
from aegis.scheduling.heartbeat import Heartbeat, write_heartbeat
from aegis.storage.runtime import Runtime
from aegis.web.http import make_server


@contextlib.contextmanager
def serving(runtime: Runtime, clock: datetime | Callable[[], datetime]) -> Iterator[str]:
    """The pages of ``runtime`` on a free loopback port, their clock stopped at ``clock``
    (or ``clock()`` at each request); yields the base URL."""
    now = clock if callable(clock) else (lambda: clock)
    server = make_server(runtime, "127.0.0.1:0", clock=now)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def beat(settings: Settings, at: datetime, status: str = "running") -> None:
    """The heartbeat file a daemon of ``settings`` would have written at ``at``."""
    write_heartbeat(settings.home, Heartbeat(pid=os.getpid(), host=settings.host,
                                             instance_id="i-1", version="test",
                                             started_at=at - timedelta(hours=1),
                                             last_heartbeat_at=at, status=status))


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metric_samples(text: str) -> Samples:
    """Every sample of a /metrics answer: (sample name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found
