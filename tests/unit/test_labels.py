"""Strict parsing of aegis.* labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegis.core.config import load_settings
from aegis.supervision.docker import Sighting, own_container_ids
from aegis.supervision.protocol.labels import (
    ContainerLabels,
    autoheal_label,
    effective_stop_timeout_s,
    has_aegis_label,
    parse_bool,
    parse_duration,
    parse_labels,
    restart_refusal,
    supervision_mode,
)
from aegis.supervision.protocol.strikes import SupervisionMode


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


# --- docker-autoheal's labels ---


def test_autoheals_label_reads_as_aegis_enable_and_its_stop_timeout_as_aegis() -> None:
    parsed = parse_labels({"autoheal": "true", "autoheal.stop.timeout": "20"}, "autoheal")
    assert (parsed.enable, parsed.stop_timeout_s) == (True, 20.0)
    assert parse_labels({"autoheal": "false"}, "autoheal").enable is False
    # without compat, or under another name, it is nobody's label
    assert parse_labels({"autoheal": "true"}) == ContainerLabels()
    assert parse_labels({"autoheal": "true"}, "autoheal-app") == ContainerLabels()
    assert parse_labels({"autoheal-app": "true"}, "autoheal-app").enable is True


def test_aegis_labels_win_over_autoheals() -> None:
    parsed = parse_labels({"autoheal": "true", "aegis.enable": "false",
                           "autoheal.stop.timeout": "20", "aegis.stop-timeout": "5s"},
                          "autoheal")
    assert (parsed.enable, parsed.stop_timeout_s) == (False, 5.0)


def test_a_bad_autoheal_value_is_reported_like_an_aegis_one() -> None:
    parsed = parse_labels({"autoheal": "sure", "autoheal.stop.timeout": "soon"}, "autoheal")
    assert (parsed.enable, parsed.stop_timeout_s) == (None, None)
    assert parsed.problems == ("autoheal='sure' is not a boolean (true/false/yes/no/1/0)",
                               "autoheal.stop.timeout='soon' is not a duration (30s, 5m, 1h)")


def test_the_label_aegis_reads_follows_the_settings() -> None:
    assert autoheal_label(load_settings({})) == "autoheal"
    assert autoheal_label(load_settings({"AUTOHEAL_CONTAINER_LABEL": "autoheal-app"})) == \
        "autoheal-app"
    # "all" watches every container; autoheal=false still opts one out
    assert autoheal_label(load_settings({"AUTOHEAL_CONTAINER_LABEL": "all"})) == "autoheal"
    assert autoheal_label(load_settings({"AEGIS_AUTOHEAL_COMPAT": "off"})) is None
    assert has_aegis_label({"autoheal": "true"}, "autoheal")
    assert not has_aegis_label({"autoheal": "true"})


def seen(labels: dict[str, str], stop_timeout_s: float | None = None) -> Sighting:
    return Sighting(id="a" * 64, name="web", image="img", labels=labels, status="running",
                health="unhealthy", has_healthcheck=True, stop_timeout_s=stop_timeout_s)


def test_under_the_labeled_scope_autoheals_label_opts_a_container_in() -> None:
    settings = load_settings({"AUTOHEAL_CONTAINER_LABEL": "autoheal"})
    mode = supervision_mode(settings, seen({"autoheal": "true"}),
                            parse_labels({"autoheal": "true"}, "autoheal"), True, frozenset())
    assert mode == SupervisionMode.SUPERVISED
    assert supervision_mode(settings, seen({}), parse_labels({}, "autoheal"), True,
                            frozenset()) == SupervisionMode.IGNORED


def test_the_stop_timeout_of_a_restart() -> None:
    settings = load_settings({"AUTOHEAL_DEFAULT_STOP_TIMEOUT": "20"})
    assert effective_stop_timeout_s(seen({}), settings) == 20.0  # the default's
    assert effective_stop_timeout_s(seen({}, stop_timeout_s=30), settings) == 30.0
    assert effective_stop_timeout_s(seen({"autoheal.stop.timeout": "7"}, 30), settings) == 7.0
    assert effective_stop_timeout_s(seen({}), load_settings({})) == 10.0  # Docker's


def test_a_swarm_task_is_orchestrated_and_never_restarted_as_a_dependant() -> None:
    settings = load_settings({})
    task = seen({"com.docker.swarm.service.name": "web", "com.docker.swarm.service.id": "x1"})
    assert supervision_mode(settings, task, parse_labels(task.labels), True, frozenset()) == \
        SupervisionMode.ORCHESTRATED
    assert restart_refusal(settings, task, parse_labels(task.labels), frozenset()) == \
        "a task of the Swarm service web"


OWN = "d303776c16f012738b682051fd63f4d20600cb0885b0dc0ea023febe13f0c4d2"
LAYER = "d5c3cd77c300bc4d539131d64060680b02b4fb113077df9f602b642a1b8615c0"
OTHER = "f7c4ebde5be0c2d8fe3c5ed92edea754c3320dd04a65441ffc0b5418132736dd"


def test_aegis_finds_its_own_container_and_not_the_others_a_host_mounts(
        tmp_path: Path) -> None:
    """In a container: the cgroup and the files the engine mounts name it. On a host, the
    mounts of every container's layers and shm name other containers: none is aegis."""
    inside = tmp_path / "inside"
    inside.mkdir()
    (inside / "cgroup").write_text(f"9:name=systemd:/docker/{OWN}\n0::/\n")
    (inside / "mountinfo").write_text(
        f"1 0 254:0 /var/lib/docker/containers/{OWN}/hostname /etc/hostname rw - ext4 x\n"
        f"2 0 0:1 / /data rw - overlay overlay rw,lowerdir=/x/{LAYER}\n")
    assert own_container_ids(inside, hostname=OWN[:12]) == {OWN, OWN[:12]}
    host = tmp_path / "host"
    host.mkdir()
    (host / "cgroup").write_text("9:name=systemd:/\n")
    (host / "mountinfo").write_text(
        f"3 0 0:40 / /var/lib/docker/overlay2/{LAYER}/merged rw - overlay overlay rw\n"
        f"4 0 0:41 / /var/lib/docker/containers/{OTHER}/mounts/shm rw - tmpfs shm rw\n")
    assert own_container_ids(host, hostname="web-01") == frozenset()
