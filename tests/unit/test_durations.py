from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from aegis.core.durations import format_duration_s, parse_duration_s, parse_since, parse_time_of_day

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30", 30.0), ("30s", 30.0), ("1.5s", 1.5), ("250ms", 0.25), ("5m", 300.0),
    ("1h", 3600.0), ("7d", 604800.0), ("2w", 1209600.0), (" 5 M ", 300.0), ("0", 0.0),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5x", "-5m", "5m30s", "1e3", "five minutes", "1,5s"])
def test_bad_durations_say_what_to_use(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration \(use e.g. 30s, 5m, 1h, 7d\)"):
        parse_duration_s(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("06:00", time(6, 0, tzinfo=UTC)), ("6:05", time(6, 5, tzinfo=UTC)),
    ("23:59:59", time(23, 59, 59, tzinfo=UTC)), (" 00:30 ", time(0, 30, tzinfo=UTC)),
])
def test_parse_time_of_day(text: str, expected: time) -> None:
    assert parse_time_of_day(text) == expected


@pytest.mark.parametrize("text", ["24:00", "12:60", "12:00:60", "noon", "1200", "12:0"])
def test_bad_times_of_day(text: str) -> None:
    with pytest.raises(ValueError, match="is not a time of day"):
        parse_time_of_day(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("24h", NOW - timedelta(hours=24)),
    ("7d", NOW - timedelta(days=7)),
    ("90", NOW - timedelta(seconds=90)),
    ("2026-02-28T06:00:00+00:00", datetime(2026, 2, 28, 6, tzinfo=UTC)),
    ("2026-02-28", datetime(2026, 2, 28, tzinfo=UTC)),  # naive means UTC
    ("2026-02-28T08:00:00+02:00", datetime(2026, 2, 28, 6, tzinfo=UTC)),
])
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


def test_parse_since_keeps_an_explicit_offset() -> None:
    parsed = parse_since("2026-02-28T08:00:00+02:00", NOW)
    assert parsed.utcoffset() == timezone(timedelta(hours=2)).utcoffset(None)


@pytest.mark.parametrize("text", ["yesterday", "24 hours", "2026-13-01"])
def test_bad_since(text: str) -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since(text, NOW)


@pytest.mark.parametrize("text", ["999999999d", "99999999999999999999s"])
def test_a_since_before_the_year_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="reaches back before the year 1"):
        parse_since(text, NOW)


@pytest.mark.parametrize(("seconds", "text"), [
    (300, "5m"), (90, "90s"), (86400, "1d"), (604800, "1w"), (3600, "1h"), (1.5, "1.5s"),
    (0, "0s"), (2592000, "30d"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration_s(seconds) == text
    assert parse_duration_s(text) == seconds
