"""Strict parsing of aegis.* labels."""

from __future__ import annotations

import pytest

from aegis.supervision.labels import (
    ContainerLabels,
    has_aegis_label,
    parse_bool,
    parse_duration,
    parse_labels,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("TRUE", True), ("Yes", True), ("1", True), (" yes ", True),
    ("false", False), ("False", False), ("NO", False), ("0", False),
])
def test_booleans_accept_the_six_words_in_any_case(text: str, expected: bool) -> None:
    assert parse_bool(text) is expected


@pytest.mark.parametrize("text", ["on", "off", "y", "n", "2", "", "truee", "enabled"])
def test_other_boolean_words_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        parse_bool(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("90S", 90.0), ("2H", 7200.0),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "1d", "1.5m", "-5s", "5 m", "m", "", "9999h"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|longer"):
        parse_duration(text)


def test_no_labels_is_all_unset() -> None:
    assert parse_labels(None) == ContainerLabels()
    assert parse_labels({"com.docker.compose.project": "x"}) == ContainerLabels()


def test_every_label_parsed() -> None:
    parsed = parse_labels({"aegis.enable": "yes", "aegis.protect": "0",
                           "aegis.maintenance": "False", "aegis.strike-interval": "30s",
                           "aegis.max-restarts": "5", "aegis.stop-timeout": "1m"})
    assert parsed == ContainerLabels(enable=True, protect=False, maintenance=False,
                                     strike_interval_s=30.0, max_restarts=5,
                                     stop_timeout_s=60.0)


def test_a_bad_label_is_reported_and_treated_as_unset() -> None:
    parsed = parse_labels({"aegis.enable": "maybe", "aegis.protect": "true",
                           "aegis.strike-interval": "0s", "aegis.max-restarts": "-1"})
    assert parsed.enable is None
    assert parsed.protect is True
    assert parsed.strike_interval_s is None
    assert parsed.max_restarts is None
    assert len(parsed.problems) == 3
    assert parsed.problems[0] == "aegis.enable='maybe' is not a boolean (true/false/yes/no/1/0)"
    assert "aegis.strike-interval='0s' must be at least 1s" in parsed.problems


def test_a_long_bad_value_is_cut_short_in_the_report() -> None:
    parsed = parse_labels({"aegis.protect": "x" * 500})
    assert len(parsed.problems[0]) < 120


def test_has_aegis_label_counts_known_keys_only() -> None:
    assert has_aegis_label({"aegis.protect": "true"})
    assert not has_aegis_label({"aegis.test": "abc"})
    assert not has_aegis_label(None)


@pytest.mark.parametrize(("key", "meant"), [
    ("aegis.enabel", "aegis.enable"), ("aegis.protected", "aegis.protect"),
    ("aegis.strike_interval", "aegis.strike-interval"),
    ("aegis.Max-Restarts", "aegis.max-restarts"),
    ("aegis.stop_timeout", "aegis.stop-timeout"), ("aegis.maintainance", "aegis.maintenance"),
])
def test_a_misspelt_label_is_reported_with_the_one_it_was_meant_to_be(key: str,
                                                                        meant: str) -> None:
    parsed = parse_labels({key: "true"})
    assert parsed == ContainerLabels(problems=(f"{key} is unknown (did you mean {meant}?)",))


@pytest.mark.parametrize("key", ["aegis.test", "aegis.name", "aegis.group", "aegis.notify",
                                 "aegis", "com.example.enable"])
def test_other_keys_under_the_prefix_are_left_alone(key: str) -> None:
    assert parse_labels({key: "true"}) == ContainerLabels()
