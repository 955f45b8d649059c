"""An append-only spool file for writes made while the database is unreachable.

Each line is one JSON record. Appends and drains take an exclusive ``flock`` so the
daemon and a CLI command never interleave; a drain hands records to a callback in
order and keeps whatever the callback could not take. A line that is not a record (a
line torn by a crash, bytes that are not UTF-8, a record no replay understands) is moved
to the set-aside file next to the spool, never dropped.
"""

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from aegis.core.errors import DatabaseUnavailable

SET_ASIDE_SUFFIX = ".set-aside"


class BadRecord(Exception):
    """Raised by a drain's ``deliver`` for a record it can never replay."""


@dataclass(frozen=True)
class SetAside:
    """A spool line moved to the set-aside file, and why."""

    line: int  # its number in the spool, from 1
    reason: str


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def set_aside_path(self) -> Path:
        return self.path.with_name(self.path.name + SET_ASIDE_SUFFIX)

    @contextmanager
    def _locked(self) -> Iterator[BinaryIO]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        with self._locked() as handle:
            size = os.fstat(handle.fileno()).st_size
            if size and os.pread(handle.fileno(), 1, size - 1) != b"\n":
                line = b"\n" + line  # end a line torn by a crash, or this record is lost with it
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

    def records(self, kind: str) -> list[dict[str, Any]]:
        """The records of ``kind`` waiting, in order, left where they are (a line that is
        not a record is passed over here; a drain sets it aside)."""
        if self.pending() == 0:
            return []
        with self._locked() as handle:
            handle.seek(0)
            lines = [line for line in handle.read().split(b"\n") if line.strip()]
        found = []
        for line in lines:
            try:
                record = _record(line)
            except BadRecord:
                continue
            if record.get("kind") == kind:
                found.append(record)
        return found

    def drain(self, deliver: Callable[[dict[str, Any]], None],
              set_aside: Callable[[SetAside], None] | None = None) -> int:
        """Hand every record to ``deliver`` in order; return how many lines were taken
        (delivered or set aside).

        Stops at the first DatabaseUnavailable and keeps the rest. A line that is not a
        JSON object, or whose record ``deliver`` refuses with BadRecord, is appended to
        the set-aside file (fsynced before the spool is cut) and passed to ``set_aside``.
        ``deliver`` must be idempotent: a crash between delivery and truncation replays
        the same records.
        """
        if self.pending() == 0:
            return 0
        with self._locked() as handle:
            handle.seek(0)
            lines = [line for line in handle.read().split(b"\n") if line.strip()]
            taken = 0
            rejected: list[tuple[bytes, SetAside]] = []
            try:
                for number, line in enumerate(lines, 1):
                    try:
                        deliver(_record(line))
                    except BadRecord as exc:
                        rejected.append((line, SetAside(number, str(exc))))
                    taken += 1
            except DatabaseUnavailable:
                pass
            if rejected:
                self._set_aside([line for line, _ in rejected])
            remaining = lines[taken:]
            handle.seek(0)
            handle.truncate()
            handle.write(b"".join(line + b"\n" for line in remaining))
            handle.flush()
            os.fsync(handle.fileno())
        for _, note in rejected:
            if set_aside is not None:
                set_aside(note)
        return taken

    def _set_aside(self, lines: list[bytes]) -> None:
        with open(self.set_aside_path, "ab") as handle:
            handle.write(b"".join(line + b"\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())


def _record(line: bytes) -> dict[str, Any]:
    """The record on one spool line, or BadRecord saying why there is none."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecord(f"not UTF-8 (byte 0x{line[exc.start]:02x} at position "
                        f"{exc.start})") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRecord(f"not JSON ({exc.msg} at position {exc.pos}; a line torn by a "
                        "crash mid-append looks like this)") from None
    if not isinstance(record, dict):
        raise BadRecord(f"not a JSON object but {type(record).__name__}")
    return record
