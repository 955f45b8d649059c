"""JSON data from aegis's own values: one rule for every ``--json`` listing, heartbeat file,
job result and event detail."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from datetime import date, datetime
from enum import Enum
from typing import Any


def jsonable(value: Any) -> Any:
    """``value`` as JSON data: a dataclass as an object of its fields, a datetime or date
    in ISO 8601, an enum member as its value, a tuple or set as a list; anything else JSON
    cannot hold (a path, say) as its ``str``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    for kinds, convert in _CONVERSIONS:  # in order: an enum member may also be a str
        if isinstance(value, kinds):
            return convert(value)
    return str(value)


_CONVERSIONS: tuple[tuple[Any, Callable[[Any], Any]], ...] = (
    (datetime | date, lambda value: value.isoformat()),
    (Enum, lambda value: jsonable(value.value)),
    (str | int | float | bool | None, lambda value: value),
    (dict, lambda value: {str(key): jsonable(item) for key, item in value.items()}),
    (list | tuple | set | frozenset, lambda value: [jsonable(item) for item in value]),
)


def to_json(record: Any, *, only: Iterable[str] | None = None,
            omit: Iterable[str] = ()) -> dict[str, Any]:
    """A dataclass ``record`` as a JSON object: ``only`` these fields (in that order), or
    every field but ``omit``."""
    names = list(only) if only is not None else [
        f.name for f in dataclasses.fields(record) if f.name not in set(omit)]
    return {name: jsonable(getattr(record, name)) for name in names}


def json_safe(value: Any) -> Any:
    """``value`` as it reads back from JSON: what JSON cannot hold becomes its ``str``."""
    return json.loads(json.dumps(value, default=str))
