"""An append-only spool file for writes made while the database is unreachable.

Each line is one JSON record. Appends and drains take an exclusive ``flock`` so the
daemon and a CLI command never interleave; a drain hands records to a callback in
order and keeps whatever the callback could not take.
"""

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from aegis.errors import DatabaseUnavailable


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _locked(self) -> Iterator[TextIO]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        with self._locked() as handle:
            size = os.fstat(handle.fileno()).st_size
            if size and os.pread(handle.fileno(), 1, size - 1) != b"\n":
                line = "\n" + line  # end a line torn by a crash, or this record is lost with it
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def pending(self) -> int:
        """How many records wait (cheap: a missing or empty file is zero)."""
        try:
            if self.path.stat().st_size == 0:
                return 0
        except FileNotFoundError:
            return 0
        with self._locked() as handle:
            handle.seek(0)
            return sum(1 for line in handle if line.strip())

    def drain(self, deliver: Callable[[dict[str, Any]], None]) -> int:
        """Hand every record to ``deliver`` in order; return how many were delivered.

        Stops at the first DatabaseUnavailable and keeps the rest. ``deliver`` must be
        idempotent: a crash between delivery and truncation replays the same records.
        """
        if self.pending() == 0:
            return 0
        with self._locked() as handle:
            handle.seek(0)
            lines = [line for line in handle.read().splitlines() if line.strip()]
            delivered = 0
            try:
                for line in lines:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        delivered += 1  # a torn last line from a crash mid-append
                        continue
                    deliver(record)
                    delivered += 1
            except DatabaseUnavailable:
                pass
            remaining = lines[delivered:]
            handle.seek(0)
            handle.truncate()
            handle.write("".join(line + "\n" for line in remaining))
            handle.flush()
            os.fsync(handle.fileno())
        return delivered
