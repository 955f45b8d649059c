"""The journal folder: one markdown file per day (of AEGIS_TIMEZONE), written atomically.

A file is written to a temporary name in the same folder, flushed to disk, then renamed
over the final name, so a reader (or a crash) only ever sees the old file or the whole
new one; writing the same date again replaces it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from datetime import date
from pathlib import Path

FILE_MODE = 0o644


def journal_path(journal_dir: Path, day: date) -> Path:
    return journal_dir / f"{day.isoformat()}.md"


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_day(journal_dir: Path, day: date, text: str) -> Path:
    return write_atomic(journal_path(journal_dir, day), text)
