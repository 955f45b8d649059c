"""aegis doctor as a linter of the host: each finding from what Docker reports of the
containers (sightings as an inspect gives them) and aegis's environment."""

from __future__ import annotations

from aegis.core.config import load_settings
from aegis.doctor.hostlint import (
    autoheal_variables,
    bad_labels,
    lint,
    long_stop_timeouts,
    no_healthcheck,
    orphaned_dependants,
)
from aegis.supervision.docker import Sighting

SETTINGS = load_settings({})


def container(name: str, labels: dict[str, str], *, healthcheck: bool = True,
              stop_timeout_s: float | None = None, network_mode: str = "") -> Sighting:
    return Sighting(id=name * 8, name=name, image="img", labels=labels, status="running",
                health="healthy" if healthcheck else "none", has_healthcheck=healthcheck,
                stop_timeout_s=stop_timeout_s, details={"error": ""},
                network_mode=network_mode)


def test_a_clean_host_has_nothing_to_say() -> None:
    found = lint(SETTINGS, [container("web", {"aegis.enable": "true"})], {})
    assert [(f.check, f.status) for f in found] == [
        ("containers:healthcheck", "ok"), ("containers:labels", "ok"),
        ("containers:stop-timeout", "ok"), ("containers:network-parents", "ok"),
        ("autoheal", "ok")]


def test_labelled_containers_without_a_health_check_have_nothing_to_watch() -> None:
    found = no_healthcheck(SETTINGS, [
        container("cron", {"aegis.enable": "true"}, healthcheck=False),
        container("legacy", {"autoheal": "true"}, healthcheck=False),
        container("plain", {}, healthcheck=False)])
    assert found.status == "warn"
    assert found.detail.startswith("cron, legacy: labelled for aegis but without a health check")
    assert "HEALTHCHECK" in found.hint


def test_misspelt_and_unreadable_labels_of_both_tools_are_named() -> None:
    found = bad_labels(SETTINGS, [
        container("a", {"aegis.stop_timeout": "10s"}),
        container("b", {"autoheal.stop_timeout": "20", "autoheal": "yes please"}),
        container("c", {"autoheal.stop.timeout": "20", "aegis.test": "x"})])
    assert found.status == "warn"
    assert found.detail == (
        "a: aegis.stop_timeout is unknown (did you mean aegis.stop-timeout?); "
        "b: autoheal='yes please' is not a boolean (true/false/yes/no/1/0); "
        "b: autoheal.stop_timeout is not docker-autoheal's (did you mean "
        "autoheal.stop.timeout?)")


def test_a_restart_longer_than_the_shutdown_grace_is_named_with_its_timeout() -> None:
    found = long_stop_timeouts(SETTINGS, [
        container("db", {}, stop_timeout_s=120), container("web", {"aegis.stop-timeout": "5s"},
                                                           stop_timeout_s=120)])
    assert found.status == "warn"
    assert found.detail.startswith("db (120s): a restart waits this long for the stop, "
                                   "longer than AEGIS_SHUTDOWN_GRACE (20s)")
    assert "AEGIS_SHUTDOWN_GRACE" in found.hint


def test_a_dependant_of_a_container_that_no_longer_exists_is_named() -> None:
    vpn = container("vpn", {})
    fine = container("client", {}, network_mode=f"container:{vpn.id}")
    left = container("torrent", {}, network_mode="container:" + "9" * 64)
    found = orphaned_dependants([vpn, fine, left])
    assert found.status == "warn"
    assert found.detail.startswith("torrent (container 999999999999): in the network "
                                   "namespace of a container that no longer exists")
    assert orphaned_dependants([vpn, fine]).status == "ok"


def test_autoheal_variables_aegis_does_not_read_are_listed() -> None:
    found = autoheal_variables(SETTINGS, {"AUTOHEAL_ONLY_MONITOR_RUNNING": "true",
                                          "WEBHOOK_URL": "https://example.org/hook",
                                          "AUTOHEAL_INTERVAL": "5"})
    assert found.status == "warn"
    assert found.detail.startswith("AUTOHEAL_ONLY_MONITOR_RUNNING: aegis only ever restarts "
                                   "running containers; WEBHOOK_URL: not a Discord or Slack")
    off = autoheal_variables(load_settings({"AEGIS_AUTOHEAL_COMPAT": "off"}), {})
    assert (off.status, off.detail.startswith("AEGIS_AUTOHEAL_COMPAT=off")) == ("ok", True)
