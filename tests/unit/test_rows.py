"""Rows as frozen dataclasses (aegis/storage/rows.py): each field from its column, enums
as members, a missing column named."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pytest

from aegis.core.errors import StoreError
from aegis.storage.rows import as_row, as_rows, column, maybe_row


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Thing:
    name: str
    colour: Colour
    shade: Colour | None = None
    count: int = 0
    tags: tuple[str, ...] = ()
    size: int = column(len, default=0)


def test_each_field_comes_from_its_column_and_an_enum_is_a_member() -> None:
    thing = as_row(Thing, {"name": "a", "colour": "red", "shade": "blue", "extra": 1})
    assert thing == Thing("a", Colour.RED, Colour.BLUE)
    assert type(thing.colour) is Colour
    assert type(thing.shade) is Colour
    assert as_row(Thing, {"name": "b", "colour": "blue", "shade": None}).shade is None
    assert as_rows(Thing, [{"name": "c", "colour": "red"}]) == [Thing("c", Colour.RED)]
    assert maybe_row(Thing, None) is None


def test_an_array_is_a_tuple_and_a_declared_conversion_is_applied() -> None:
    thing = as_row(Thing, {"name": "a", "colour": "red", "tags": ["x", "y"], "size": "four"})
    assert thing.tags == ("x", "y")
    assert thing.size == 4


def test_a_missing_column_is_a_store_error_naming_it() -> None:
    with pytest.raises(StoreError, match=r"a row of Thing lacks a column: .*'colour'"):
        as_row(Thing, {"name": "a"})


def test_a_value_no_member_has_is_an_error() -> None:
    with pytest.raises(ValueError, match="'green' is not a valid Colour"):
        as_row(Thing, {"name": "a", "colour": "green"})
