"""What a check of ``aegis doctor`` finds: a status and one line, with the one-line fix."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aegis.core.jsonable import to_json


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


OK, WARN, FAIL = Status.OK, Status.WARN, Status.FAIL


@dataclass(frozen=True)
class Check:
    check: str
    status: Status
    detail: str
    hint: str = ""

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


def not_checked(name: str) -> Check:
    """A check that needs the database, when it is unreachable."""
    return Check(name, WARN, "not checked: the database is unreachable",
                 "fix the database check first")
