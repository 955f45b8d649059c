"""Container labels read into job specs (aegis's own and Ofelia's), and the schedules
they are written in: pure, with every bad label a problem, never an exception."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aegis.scheduling import triggers
from aegis.scheduling.job_settings import MisfirePolicy
from aegis.scheduling.triggers import (
    Cron,
    Daily,
    Every,
    Weekly,
    go_duration_s,
    parse_schedule,
    spread,
)
from aegis.supervision.labeljobs.spec import (
    JobKind,
    JobScope,
    LabelSource,
    read_labels,
)
from tests.support.clock import t

COMPOSE = {"com.docker.compose.project": "shop", "com.docker.compose.service": "db"}


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("1h30m", 5400), ("5m", 300), ("2m0.5s", 120.5), ("1500ms", 1.5),
    ("45", 45),
])
def test_go_durations_as_ofelia_writes_them(text: str, seconds: float) -> None:
    assert go_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "1x", "h", "5 m", "1h30"])
def test_a_go_duration_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        go_duration_s(text)


@pytest.mark.parametrize(("text", "moment", "expected_next"), [
    ("@every 90s", "2026-01-01 10:00:00", "2026-01-01 10:01:30"),
    ("@every 1h30m", "2026-01-01 00:00:01", "2026-01-01 01:30:00"),
    ("@every 2s", "2026-01-01 10:00:01", "2026-01-01 10:00:02"),
    ("@hourly", "2026-01-01 10:20:00", "2026-01-01 11:00:00"),
    ("@daily", "2026-01-01 10:20:00", "2026-01-02 00:00:00"),
    ("@midnight", "2026-01-01 10:20:00", "2026-01-02 00:00:00"),
    # 2026-01-01 is a Thursday
    ("@weekly", "2026-01-01 10:20:00", "2026-01-04 00:00:00"),
    ("@monthly", "2026-01-15 10:20:00", "2026-02-01 00:00:00"),
    ("@yearly", "2026-01-15 10:20:00", "2027-01-01 00:00:00"),
    ("*/15 * * * *", "2026-01-01 10:20:00", "2026-01-01 10:30:00"),
    # six fields: seconds first, as robfig/cron and Ofelia read them
    ("*/10 * * * * *", "2026-01-01 10:20:01", "2026-01-01 10:20:10"),
    ("0 30 1 * * *", "2026-01-01 10:20:00", "2026-01-02 01:30:00"),
    ("30 0 1 * * *", "2026-01-01 00:59:00", "2026-01-01 01:00:30"),
    # aegis's own forms
    ("every 5m", "2026-01-01 10:02:00", "2026-01-01 10:05:00"),
    ("daily at 03:00", "2026-01-01 10:00:00", "2026-01-02 03:00:00"),
    ("weekly on sunday at 03:00", "2026-01-01 10:00:00", "2026-01-04 03:00:00"),
])
def test_schedules_written_as_text(text: str, moment: str, expected_next: str) -> None:
    trigger = parse_schedule(text)
    assert trigger.next_after(t(moment)) == t(expected_next)
    latest = trigger.latest_at_or_before(t(expected_next))
    assert latest == t(expected_next)


def test_schedules_become_the_triggers_aegis_already_has() -> None:
    assert parse_schedule("@every 90s") == Every(90)
    assert parse_schedule("@daily") == Cron("0 0 * * *")
    assert isinstance(parse_schedule("daily at 06:00"), Daily)
    assert isinstance(parse_schedule("weekly on mon at 06:00"), Weekly)
    assert parse_schedule("@daily", timezone="Europe/Berlin").describe() == (
        "cron 0 0 * * * Europe/Berlin")


def test_a_six_field_cron_is_matched_on_its_zone_clock() -> None:
    berlin = triggers.cron("0 0 3 * * *", timezone="Europe/Berlin")
    assert berlin.next_after(t("2026-07-01 00:00")) == t("2026-07-01 01:00")


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"), ("@often", "is not a schedule"), ("@every", "is not a duration"),
    ("@every 0.5s", "at least 1 second"), ("61 * * * *", "not a cron expression"),
    ("* * *", "not a cron expression"), ("* * * * * * *", "not a cron expression"),
    ("every soon", "is not a duration"), ("daily at 25:00", "not a time of day"),
])
def test_schedules_that_cannot_be_read_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_schedule(text)


# --- aegis's own labels ---


def test_a_job_of_aegis_labels_with_every_key() -> None:
    found = read_labels("shop-db-1", {
        **COMPOSE,
        "aegis.job.backup.schedule": "@daily", "aegis.job.backup.command": "pg_dump app",
        "aegis.job.backup.user": "postgres", "aegis.job.backup.workdir": "/var/backups",
        "aegis.job.backup.env": '["PGDATABASE=app"]', "aegis.job.backup.timeout": "30m",
        "aegis.job.backup.overlap": "true", "aegis.job.backup.scope": "service",
        "aegis.job.backup.timezone": "Europe/Berlin", "aegis.job.backup.misfire": "skip",
        "aegis.job.backup.expect-every": "25h", "aegis.job.backup.max-runtime": "20m",
    })
    assert found.problems == ()
    [spec] = found.specs
    assert spec.job_id == "shop-db.backup"
    assert spec.command == ("/bin/sh", "-c", "pg_dump app")
    assert (spec.user, spec.workdir, spec.env) == ("postgres", "/var/backups",
                                                    ("PGDATABASE=app",))
    assert (spec.timeout_s, spec.overlap, spec.scope) == (1800, True, JobScope.SERVICE)
    assert spec.trigger.describe() == "cron 0 0 * * * Europe/Berlin"
    assert (spec.misfire, spec.expect_every_s, spec.max_runtime_s) == (
        MisfirePolicy.SKIP, 90000, 1200)
    assert spec.source_text == "label: shop-db-1"


def test_aegis_defaults_one_hour_no_overlap_this_container() -> None:
    [spec] = read_labels("web", {"aegis.job.tick.schedule": "@every 2s",
                                 "aegis.job.tick.command": '["date", "-u"]'}).specs
    assert (spec.job_id, spec.command, spec.timeout_s, spec.overlap, spec.scope) == (
        "web.tick", ("date", "-u"), 3600, False, JobScope.CONTAINER)
    assert (spec.source, spec.kind) == (LabelSource.AEGIS, JobKind.EXEC)


def test_containers_without_job_labels_declare_nothing() -> None:
    assert read_labels("web", {"aegis.enable": "true", "ofelia.job-exec.x.schedule":
                               "@hourly"}) == read_labels("web", {})


@pytest.mark.parametrize(("labels", "label", "reason"), [
    ({"aegis.job.a.schedule": "@often", "aegis.job.a.command": "x"},
     "aegis.job.a.schedule", "is not a schedule"),
    ({"aegis.job.a.schedule": "@hourly"}, "aegis.job.a.command", "is missing"),
    ({"aegis.job.a.command": "x"}, "aegis.job.a.schedule", "is missing"),
    ({"aegis.job.a.schedule": "@hourly", "aegis.job.a.command": "x",
      "aegis.job.a.colour": "red"}, "aegis.job.a.colour", "unknown key 'colour'"),
    ({"aegis.job.a.schedule": "@hourly", "aegis.job.a.command": "[1, 2]"},
     "aegis.job.a.command", "not a JSON array of strings"),
    ({"aegis.job.a.schedule": "@hourly", "aegis.job.a.command": "x",
      "aegis.job.a.env": '["NOEQUALS"]'}, "aegis.job.a.env", "is not NAME=VALUE"),
    ({"aegis.job.a.schedule": "@hourly", "aegis.job.a.command": "x",
      "aegis.job.a.timeout": "soon"}, "aegis.job.a.timeout", "is not a duration"),
    ({"aegis.job.a.schedule": "@hourly", "aegis.job.a.command": "x",
      "aegis.job.a.timezone": "Mars/Base"}, "aegis.job.a.timezone", "is not a time zone"),
    ({"aegis.job.a.schedule": "@hourly", "aegis.job.a.command": "x",
      "aegis.job.a.scope": "service"}, "aegis.job.a.scope", "needs a container of a compose"),
    ({"aegis.job.a.schedule": "@hourly", "aegis.job.a.command": "x",
      "aegis.job.a.scope": "galaxy"}, "aegis.job.a.scope", "galaxy"),
    ({"aegis.job.a b.schedule": "@hourly"}, "aegis.job.a b", "use aegis.job.NAME.KEY"),
])
def test_a_bad_label_is_a_problem_naming_it(labels: dict[str, str], label: str,
                                            reason: str) -> None:
    found = read_labels("web", {**labels, "aegis.job.good.schedule": "@hourly",
                                "aegis.job.good.command": "true"})
    [problem] = found.problems
    assert (problem.container, problem.label) == ("web", label)
    assert reason in problem.reason
    # the container's other job is read all the same
    assert [spec.job_id for spec in found.specs] == ["web.good"]


def test_a_name_used_twice_registers_neither() -> None:
    found = read_labels("web", {
        "aegis.job.x.schedule": "@hourly", "aegis.job.x.command": "true",
        "ofelia.enabled": "true", "ofelia.job-exec.x.schedule": "@hourly",
        "ofelia.job-exec.x.command": "true"})
    assert found.specs == ()
    assert sorted(p.label for p in found.problems) == ["aegis.job.x", "ofelia.job-exec.x"]
    assert all("used twice" in p.reason for p in found.problems)


# --- Ofelia's labels, verbatim ---


def test_ofelia_readme_example() -> None:
    [spec] = read_labels("nginx", {
        "ofelia.enabled": "true", "ofelia.job-exec.test-exec-job.schedule": "@every 5s",
        "ofelia.job-exec.test-exec-job.command": "uname -a"}).specs
    assert (spec.job_id, spec.command) == ("nginx.test-exec-job", ("uname", "-a"))
    assert spec.trigger == spread(Every(5), "nginx.test-exec-job")
    # Ofelia lets runs overlap unless no-overlap is set
    assert (spec.source, spec.overlap) == (LabelSource.OFELIA, True)


def test_ofelia_keys() -> None:
    [spec] = read_labels("db", {
        "ofelia.enabled": "true", "ofelia.job-exec.dump.schedule": "0 0 1 * * *",
        "ofelia.job-exec.dump.command": "sh -c 'pg_dump app > /backup/app.sql'",
        "ofelia.job-exec.dump.user": "postgres", "ofelia.job-exec.dump.tty": "false",
        "ofelia.job-exec.dump.environment": '["A=1"]', "ofelia.job-exec.dump.no-overlap": "true",
        "ofelia.job-exec.dump.history-limit": "10"}).specs
    assert spec.command == ("sh", "-c", "pg_dump app > /backup/app.sql")
    assert (spec.user, spec.env, spec.overlap, spec.tty) == ("postgres", ("A=1",), False, False)
    assert spec.trigger.next_after(t("2026-01-01 00:00")) == t("2026-01-01 01:00")


def test_ofelia_labels_need_ofelia_enabled() -> None:
    assert read_labels("db", {"ofelia.job-exec.dump.schedule": "@hourly",
                              "ofelia.job-exec.dump.command": "true"}).specs == ()


def test_ofelia_job_types_aegis_does_not_run_are_problems_once_per_job() -> None:
    found = read_labels("db", {
        "ofelia.enabled": "true", "ofelia.job-local.l.schedule": "@hourly",
        "ofelia.job-local.l.command": "true", "ofelia.job-service-run.s.schedule": "@hourly"})
    assert sorted((p.label, p.reason.split(":")[0]) for p in found.problems) == [
        ("ofelia.job-local.l", "not supported"), ("ofelia.job-service-run.s", "not supported")]


def test_ofelia_job_run_only_when_allowed() -> None:
    labels = {"ofelia.enabled": "true", "ofelia.job-run.clean.schedule": "@hourly",
              "ofelia.job-run.clean.image": "busybox", "ofelia.job-run.clean.command": "true",
              "ofelia.job-run.clean.volume": "/:/host"}
    [problem] = read_labels("ofelia", labels).problems
    assert "AEGIS_LABEL_JOBS_RUN=on" in problem.reason
    [spec] = read_labels("ofelia", labels, run_allowed=True).specs
    assert (spec.kind, spec.image, spec.volumes) == (JobKind.RUN, "busybox", ("/:/host",))


def test_every_is_spread_by_the_jobs_id_and_cron_is_not() -> None:
    labels = {f"aegis.job.{name}.{key}": value for name, schedule in
              (("tick", "@every 1m"), ("mark", "* * * * *"), ("hourly", "@hourly"))
              for key, value in (("schedule", schedule), ("command", "true"))}
    specs = {spec.name: spec for spec in read_labels("web-1", labels).specs}
    tick = specs["tick"].trigger
    assert isinstance(tick, Every)
    assert tick.period_s == 60
    assert tick == spread(Every(60), "web-1.tick")  # the same on every host
    slot = tick.next_after(t("2026-01-01 00:00"))
    assert slot - t("2026-01-01 00:00") == timedelta(seconds=tick.offset_s or 60)
    assert specs["mark"].trigger.next_after(t("2026-01-01 00:00:30")) == t("2026-01-01 00:01")
    assert specs["hourly"].trigger.next_after(t("2026-01-01 00:10")) == t("2026-01-01 01:00")
    # two hundred containers with @every 1m: their slots are spread over the minute
    offsets = {read_labels(f"app-{i}", {"aegis.job.tick.schedule": "@every 1m",
                                        "aegis.job.tick.command": "true"}).specs[0]
               .trigger.offset_s for i in range(200)}  # type: ignore[attr-defined]
    assert len(offsets) > 50
    assert all(0 <= offset < 60 for offset in offsets)
