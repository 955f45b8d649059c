"""Rows as frozen dataclasses: what a table's owner hands everything above it.

A named query returns dict rows (aegis/storage/db.py); its owner turns them into the
dataclass of its table with ``as_row`` or ``as_rows``, so nothing above storage and the
repositories reads ``row["column"]``. Each field is read from the column of its name (a
column the dataclass does not name is left out; a field with no column and no default is
an error naming it), and a field typed as an enum (``Phase``, ``TriageClass | None``...)
gets its member, not the text PostgreSQL sent.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aegis.core.errors import StoreError
from aegis.storage.db import Row

T = TypeVar("T")


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


def as_rows(cls: type[T], rows: Iterable[Row]) -> list[T]:
    return [as_row(cls, row) for row in rows]


def maybe_row(cls: type[T], row: Row | None) -> T | None:
    return None if row is None else as_row(cls, row)


@functools.cache
def _fields(cls: Any) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    """(name, how to convert its column's value or None) for each field of ``cls``."""
    hints = typing.get_type_hints(cls)
    return tuple((field.name, _enum_of(hints[field.name]))
                 for field in dataclasses.fields(cls) if field.init)


def _enum_of(hint: Any) -> Callable[[Any], Any] | None:
    """The enum a field is typed as (alone, or ``X | None``), or None."""
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        found = [arg for arg in typing.get_args(hint)
                 if isinstance(arg, type) and issubclass(arg, enum.Enum)]
        return found[0] if len(found) == 1 else None
    return None
