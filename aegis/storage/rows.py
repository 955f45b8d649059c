"""Rows as frozen dataclasses: what a table's owner hands everything above it.

A named query returns dict rows (aegis/storage/db.py); its owner turns them into the
dataclass of its table with ``as_row`` or ``as_rows``, so nothing above storage and the
repositories reads ``row["column"]``. Each field is read from the column of its name (a
column the dataclass does not name is left out; a field with no column and no default is
an error naming it). A field typed as an enum (``Phase``, ``TriageClass | None``...) gets
its member, not the text PostgreSQL sent; a tuple field gets a tuple of the array's
items; a field declared with ``column(convert)`` gets ``convert`` of its value (a jsonb
column read into dataclasses, say).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from aegis.core.errors import StoreError
from aegis.storage.db import Row

T = TypeVar("T")


CONVERT = "aegis.rows.convert"


def column(convert: Callable[[Any], Any], **kwargs: Any) -> Any:
    """A dataclass field whose column's value ``as_row`` hands to ``convert`` (its other
    arguments are ``dataclasses.field``'s: ``default``, ``default_factory``)."""
    return dataclasses.field(metadata={CONVERT: convert}, **kwargs)


def as_row(cls: type[T], row: Row) -> T:
    """``row`` as an instance of the dataclass ``cls``."""
    values = {}
    kind: Any = cls  # a class is hashable, though mypy cannot tell of a type[T]
    for name, convert in _fields(kind):
        if name in row:
            value = row[name]
            values[name] = value if value is None or convert is None else convert(value)
    try:
        return cls(**values)
    except TypeError as exc:
        raise StoreError(f"a row of {cls.__name__} lacks a column: {exc}") from None


@dataclasses.dataclass(frozen=True)
class PrunedBatch:
    """One batch of a retention delete: how many rows went, and the time of the last one
    (where the next batch starts; None when nothing was left)."""

    deleted: int = 0
    last_time: datetime | None = None

    @classmethod
    def of(cls, row: Row | None) -> PrunedBatch:
        return cls() if row is None else cls(int(row["deleted"]), row["last_time"])


def as_rows(cls: type[T], rows: Iterable[Row]) -> list[T]:
    return [as_row(cls, row) for row in rows]


def maybe_row(cls: type[T], row: Row | None) -> T | None:
    return None if row is None else as_row(cls, row)


@functools.cache
def _fields(cls: Any) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    """(name, how to convert its column's value or None) for each field of ``cls``."""
    hints = typing.get_type_hints(cls)
    return tuple((field.name, field.metadata.get(CONVERT) or _enum_of(hints[field.name])
                  or _tuple_of(hints[field.name]))
                 for field in dataclasses.fields(cls) if field.init)


def _tuple_of(hint: Any) -> Callable[[Any], Any] | None:
    """``tuple`` for a field typed as a tuple (PostgreSQL's arrays arrive as lists)."""
    return tuple if typing.get_origin(hint) is tuple else None


def _enum_of(hint: Any) -> Callable[[Any], Any] | None:
    """The enum a field is typed as (alone, or ``X | None``), or None."""
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        found = [arg for arg in typing.get_args(hint)
                 if isinstance(arg, type) and issubclass(arg, enum.Enum)]
        return found[0] if len(found) == 1 else None
    return None
