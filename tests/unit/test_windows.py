"""Recurring maintenance windows as pure functions: whether an instant is inside one across
daylight-saving changes in Europe/Berlin, the next one, which containers one covers, the
label's two forms and the ``[[maintenance]]`` tables (each mistake named)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from aegis import api
from aegis.core.clock import zone
from aegis.core.config import load_settings
from aegis.core.errors import ConfigError
from aegis.supervision.protocol.labels import parse_labels
from aegis.supervision.protocol.strikes import Action, Observed, Policy, StrikeState, decide
from aegis.supervision.protocol.windows import (
    LABEL,
    Window,
    configured_windows,
    current,
    label_window,
    parse_schedule,
    upcoming,
    windows_of,
)
from tests.support.clock import t

BERLIN = zone("Europe/Berlin")


def window(schedule: str, duration_s: float, containers: tuple[str, ...] = ("*",)) -> Window:
    return Window("w", schedule, parse_schedule(schedule, BERLIN), duration_s, containers)


def span_at(w: Window, moment: datetime) -> tuple[datetime, datetime] | None:
    found = w.around(moment)
    return None if found is None else (found.start, found.end)


# 01:30 for 2h on the night of 29 March 2026, when the clocks jump from 02:00 CET to
# 03:00 CEST (01:00 UTC): 00:30 to 02:30 UTC, 01:30 CET to 04:30 CEST.
ACROSS_THE_JUMP = (t("2026-03-29 00:30"), t("2026-03-29 02:30"))


@pytest.mark.parametrize(("moment", "expected"), [
    ("2026-03-29 00:29:59", None),
    ("2026-03-29 00:30", ACROSS_THE_JUMP),
    ("2026-03-29 00:59:59", ACROSS_THE_JUMP),  # 01:59:59 CET
    ("2026-03-29 01:00", ACROSS_THE_JUMP),  # 03:00 CEST: the clocks jumped
    ("2026-03-29 02:29:59", ACROSS_THE_JUMP),
    ("2026-03-29 02:30", None),  # its end is outside
    # the night before and after: 01:30 CET is 00:30 UTC, 01:30 CEST is 23:30 UTC
    ("2026-03-28 00:30", (t("2026-03-28 00:30"), t("2026-03-28 02:30"))),
    ("2026-03-29 23:30", (t("2026-03-29 23:30"), t("2026-03-30 01:30"))),
    ("2026-03-29 23:29", None),
])
def test_a_nightly_window_across_spring_forward(moment: str,
                                                expected: tuple[datetime, datetime] | None
                                                ) -> None:
    assert span_at(window("30 1 * * *", 7200), t(moment)) == expected


@pytest.mark.parametrize(("moment", "expected"), [
    # 02:30 does not exist that night: the window starts when the clocks jump (01:00
    # UTC) and lasts its hour of real time
    ("2026-03-29 00:59", None),
    ("2026-03-29 01:00", (t("2026-03-29 01:00"), t("2026-03-29 02:00"))),
    ("2026-03-29 01:59", (t("2026-03-29 01:00"), t("2026-03-29 02:00"))),
    ("2026-03-29 02:00", None),
    # 02:30 happens twice when the clocks go back (25 October): the first one only
    ("2026-10-25 00:29", None),
    ("2026-10-25 00:30", (t("2026-10-25 00:30"), t("2026-10-25 01:30"))),
    ("2026-10-25 01:29", (t("2026-10-25 00:30"), t("2026-10-25 01:30"))),
    ("2026-10-25 01:30", None),  # 02:30 CET, the second time: no second window
    ("2026-10-25 02:15", None),
])
def test_a_window_at_a_time_the_clocks_skip_or_repeat(
        moment: str, expected: tuple[datetime, datetime] | None) -> None:
    assert span_at(window("02:30", 3600), t(moment)) == expected


def test_a_window_through_the_night_the_clocks_go_back_lasts_its_real_duration() -> None:
    # 01:30 CEST (23:30 UTC) for 3h: through 02:00-03:00 twice, ends 02:30 UTC (03:30 CET)
    w = window("30 1 * * *", 3 * 3600)
    assert span_at(w, t("2026-10-25 01:45")) == (t("2026-10-24 23:30"), t("2026-10-25 02:30"))
    assert span_at(w, t("2026-10-25 02:30")) is None


def test_the_next_window_is_the_one_under_way_else_the_next_start() -> None:
    w = window("sunday 03:00", 3600)
    ahead = w.next_span(t("2026-03-27 12:00"))
    assert ahead is not None
    assert ahead.start == t("2026-03-29 01:00")
    inside = t("2026-03-29 01:30")
    assert w.next_span(inside) == w.around(inside)
    windows = [w, window("30 1 * * *", 7200)]
    found = upcoming(windows, t("2026-03-27 12:00"))
    assert found is not None
    assert found[1].start == t("2026-03-28 00:30")
    assert current(windows, t("2026-03-27 12:00")) is None


def test_windows_of_one_schedule_that_overlap_are_one() -> None:
    w = window("0 */2 * * *", 3 * 3600)  # every two hours for three: never a gap
    found = w.around(t("2026-06-01 00:10"))
    assert found is not None
    assert found.end > t("2026-06-01 12:00")


@pytest.mark.parametrize(("pattern", "name", "compose", "covered"), [
    ("*", "anything", None, True),
    ("db", "db", None, True),
    ("db", "db-2", None, False),
    ("backup-*", "backup-nightly", None, True),
    ("shop/db", "shop-db-1", ("shop", "db"), True),
    ("shop/*", "shop-web-1", ("shop", "web"), True),
    ("shop/db", "db", None, False),  # not a compose container
    ("shop/db", "shop-db-1", ("other", "db"), False),
])
def test_which_containers_a_configured_window_covers(
        pattern: str, name: str, compose: tuple[str, str] | None, covered: bool) -> None:
    project, service = compose or (None, None)
    assert window("02:00", 3600, (pattern,)).covers(name, project, service) is covered


def test_a_container_gets_its_label_window_and_the_configured_ones_naming_it() -> None:
    utc = zone("UTC")
    labelled, _ = label_window({LABEL: "0 2 * * */1h"})
    container = SimpleNamespace(name="db", compose_project=None, compose_service=None)
    found = windows_of(container, labelled, [window("02:00", 60, ("web",)),
                                             window("03:00", 60, ("d*",))], utc)
    assert [w.name for w in found] == ["w", f"{LABEL} of db"]
    assert found[1].trigger.tz == utc  # no zone of its own: AEGIS_TIMEZONE's


@pytest.mark.parametrize("labels", [
    {LABEL: "0 2 * * */1h"},
    {LABEL: " 0  2 * * * / 1h "},
    {f"{LABEL}.schedule": "0 2 * * *", f"{LABEL}.duration": "60m"},
])
def test_the_label_in_both_forms(labels: dict[str, str]) -> None:
    found, problem = label_window(labels)
    assert problem is None
    assert found is not None
    assert (found.schedule, found.duration_s, found.trigger.zone) == ("0 2 * * *", 3600, None)


def test_the_label_names_its_zone_and_takes_a_weekday() -> None:
    found, problem = label_window({LABEL: "sun 03:00/2h", f"{LABEL}.timezone": "Europe/Berlin"})
    assert problem is None
    assert found is not None
    assert found.trigger.tz == BERLIN
    assert found.describe() == \
        "weekly on Sunday at 03:00 Europe/Berlin for 2h"


@pytest.mark.parametrize(("labels", "named"), [
    ({LABEL: "0 2 * * *"}, f"{LABEL}='0 2 * * *' has no /<duration>"),
    ({LABEL: "0 2 * */1h"}, f"{LABEL}='0 2 * */1h' '0 2 * *' is not a schedule"),
    ({LABEL: "0 2 * * */1x"}, f"{LABEL}='0 2 * * */1x'"),
    ({LABEL: "0 2 * * */30s"}, "must be from 1m to 7d"),
    ({LABEL: "0 2 * * */8d"}, "must be from 1m to 7d"),
    ({LABEL: "0 2 * * */1h", f"{LABEL}.duration": "1h"}, "set one form only"),
    ({f"{LABEL}.schedule": "0 2 * * *"}, f"{LABEL}.duration is missing"),
    ({f"{LABEL}.duration": "1h"}, f"{LABEL}.schedule is missing"),
    ({LABEL: "0 2 * * */1h", f"{LABEL}.timezone": "Mars/Base"}, f"{LABEL}.timezone="),
    ({f"{LABEL}.timezone": "UTC"}, "is set without a window"),
])
def test_a_bad_label_is_one_problem_and_no_window(labels: dict[str, str], named: str) -> None:
    found, problem = label_window(labels)
    assert found is None
    assert problem is not None
    assert named in problem
    parsed = parse_labels(labels)
    assert parsed.maintenance_window is None
    assert parsed.problems == (problem,)


def test_a_misspelt_window_label_is_reported() -> None:
    assert parse_labels({"aegis.maintenance-windw": "0 2 * * */1h"}).problems == (
        f"aegis.maintenance-windw is unknown (did you mean {LABEL}?)",)


def test_the_configuration_tables(tmp_path: Path) -> None:
    config = tmp_path / "aegis.toml"
    config.write_text("""
[[maintenance]]
containers = ["backup-*", "shop/db"]
schedule = "0 2 * * *"
duration = "90m"
timezone = "Europe/Berlin"

[[maintenance]]
name = "whole host"
containers = "*"
schedule = "sunday 04:00"
duration = 3600
""", encoding="utf-8")
    settings = load_settings({"AEGIS_CONFIG": str(config), "AEGIS_TIMEZONE": "UTC"})
    first, second = configured_windows(settings.maintenance_tables, settings.config_file)
    assert (first.name, first.containers, first.duration_s, first.trigger.tz) == (
        "maintenance[1]", ("backup-*", "shop/db"), 5400, BERLIN)
    assert (second.name, second.containers, second.duration_s, second.trigger.zone) == (
        "whole host", ("*",), 3600, None)


@pytest.mark.parametrize(("table", "named"), [
    ('containers = ["a"]\nschedule = "0 2 * * *"', "maintenance[2].duration: is missing"),
    ('containers = ["a"]\nduration = "1h"', "maintenance[2].schedule: is missing"),
    ('schedule = "0 2 * * *"\nduration = "1h"', "maintenance[2].containers: is missing"),
    ('containers = []\nschedule = "0 2 * * *"\nduration = "1h"',
     "maintenance[2].containers: must be a non-empty list"),
    ('containers = ["a"]\nschedule = "0 25 * * *"\nduration = "1h"',
     "maintenance[2].schedule: '0 25 * * *' is not a schedule"),
    ('containers = ["a"]\nschedule = "0 2 * * *"\nduration = "soon"',
     "maintenance[2].duration: 'soon' is not a duration"),
    ('containers = ["a"]\nschedule = "0 2 * * *"\nduration = "1h"\ntimezone = "Nowhere"',
     "maintenance[2].timezone: 'Nowhere' is not a time zone"),
    ('containers = ["a"]\nschedule = "0 2 * * *"\nduration = "1h"\nduraton = "2h"',
     "maintenance[2].duraton: unknown key (known: containers, schedule, duration"),
])
def test_a_bad_table_is_one_error_naming_the_table_and_key(tmp_path: Path, table: str,
                                                           named: str) -> None:
    config = tmp_path / "aegis.toml"
    config.write_text('[[maintenance]]\ncontainers = ["*"]\nschedule = "02:00"\n'
                      f'duration = "1h"\n\n[[maintenance]]\n{table}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        api.load_settings({"AEGIS_CONFIG": str(config)})
    assert str(raised.value).startswith(f"{config}: {named}")


def test_maintenance_must_be_an_array_of_tables(tmp_path: Path) -> None:
    config = tmp_path / "aegis.toml"
    config.write_text('[maintenance]\nschedule = "02:00"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"maintenance: must be an array of \[\[maintenance"):
        load_settings({"AEGIS_CONFIG": str(config)})


def test_inside_a_window_nothing_is_decided_until_its_end() -> None:
    end = t("2026-03-29 02:30")
    policy = Policy(maintenance=True, maintenance_until=end)
    decision = decide(StrikeState(), Observed("running", "unhealthy"), policy,
                      t("2026-03-29 01:00"))
    assert (decision.action, decision.state, decision.next_check_at) == (
        Action.NONE, StrikeState(), end)
    after = decide(StrikeState(), Observed("running", "unhealthy"), Policy(), end)
    assert after.action == Action.STRIKE1
