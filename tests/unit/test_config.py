"""Settings: bad values are refused with one line naming the variable or key; environment
over TOML; defaults; a repr that masks secrets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from aegis import api
from aegis.core.config import OPTIONS, Settings, load_settings
from aegis.core.errors import ConfigError
from aegis.scheduling.job_settings import JobOverride, job_overrides
from tests.support.bad_config import BAD_INPUTS, SECRET, BadInput, materialize


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "aegis.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_the_catalogue_covers_at_least_twelve_distinct_inputs() -> None:
    assert len({case.id for case in BAD_INPUTS}) == len(BAD_INPUTS) >= 12


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: c.id)
def test_bad_input_is_one_line_naming_the_variable_or_key(case: BadInput,
                                                          tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        api.load_settings(materialize(case, tmp_path))
    message = str(raised.value)
    assert "\n" not in message
    assert case.names in raised.value.name
    assert message.startswith(raised.value.name + ": ")
    assert case.hint in raised.value.problem
    for secret in case.secret_free:
        assert secret not in message


def test_defaults_with_an_empty_environment() -> None:
    settings = load_settings({})
    assert settings.embedded
    assert settings.dsn is None
    assert settings.home == Path("~/.aegis").expanduser()
    assert settings.journal_dir == Path("~/memory/journal").expanduser()
    assert settings.host == socket.gethostname().split(".")[0]
    assert (settings.log_format, settings.log_level) == ("auto", "info")
    assert settings.postgres_port == 5432
    assert settings.strike_interval_s == 60.0
    assert settings.event_retention_s == 30 * 86400
    assert settings.config_file is None
    assert job_overrides(settings) == {}


def test_every_option_is_read_from_the_environment_and_from_toml() -> None:
    envs = [o.env for o in OPTIONS if o.env]
    tomls = [o.toml for o in OPTIONS if o.toml]
    assert len(set(envs)) == len(envs) == len(OPTIONS)
    assert len(set(tomls)) == len(tomls) == len(OPTIONS)


def test_environment_wins_over_toml_which_wins_over_defaults(tmp_path: Path) -> None:
    config = write_toml(tmp_path, '[database]\nport = 6543\nname = "fromfile"\n'
                                  '[log]\nlevel = "debug"\n[docker]\nstrike_interval = "2m"\n')
    settings = load_settings({"AEGIS_CONFIG": config, "POSTGRES_PORT": "7654",
                              "AEGIS_LOG_LEVEL": "warning"})
    assert settings.postgres_port == 7654  # environment over the file
    assert settings.log_level == "warning"
    assert settings.postgres_db == "fromfile"  # the file over the default
    assert settings.strike_interval_s == 120.0
    assert settings.postgres_user == "postgres"  # the default
    assert settings.config_file == Path(config)


def test_an_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    config = write_toml(tmp_path, "[database]\nport = 6543\n")
    assert load_settings({"AEGIS_CONFIG": config, "POSTGRES_PORT": ""}).postgres_port == 6543


def test_postgres_variables_make_a_dsn_with_quoted_credentials() -> None:
    settings = load_settings({"POSTGRES_HOST": "db", "POSTGRES_USER": "ops",
                              "POSTGRES_PASSWORD": "p@ss/word", "POSTGRES_DB": "aegis"})
    assert not settings.embedded
    assert settings.dsn == "postgresql://ops:p%40ss%2Fword@db:5432/aegis"
    url = "postgresql://a:b@elsewhere/x"
    assert load_settings({"AEGIS_DATABASE_URL": url, "POSTGRES_HOST": "db"}).dsn == url


@pytest.mark.parametrize(("hosts", "url_hosts"), [
    ("a,b", "a:5433,b:5433"),
    ("a:6000, b", "a:6000,b:5433"),
    ("::1,[fe80::2]:6001,[fe80::3]", "[::1]:5433,[fe80::2]:6001,[fe80::3]:5433"),
])
def test_postgres_host_may_be_a_comma_list_each_with_its_port(hosts: str,
                                                               url_hosts: str) -> None:
    settings = load_settings({"POSTGRES_HOST": hosts, "POSTGRES_PORT": "5433"})
    assert settings.dsn == f"postgresql://postgres@{url_hosts}/aegis"


def test_a_postgres_host_list_with_an_empty_host_is_refused() -> None:
    with pytest.raises(ConfigError, match="POSTGRES_HOST: 'a,,b' has an empty host"):
        load_settings({"POSTGRES_HOST": "a,,b"})


@pytest.mark.parametrize(("dsn", "read_write"), [
    ("postgresql://u@a:5432,b:5432/aegis", True),
    ("host=a,b port=5432,5433 dbname=aegis", True),
    ("postgresql://u@a,b/aegis?target_session_attrs=any", False),  # the operator's choice
    ("postgresql://u@a:5432/aegis", False),  # one host: as it was written
])
def test_several_hosts_connect_only_where_writes_are_accepted(dsn: str,
                                                              read_write: bool) -> None:
    from psycopg.conninfo import conninfo_to_dict

    from aegis.storage.db import writable_conninfo

    params = conninfo_to_dict(writable_conninfo(dsn))
    assert (params.get("target_session_attrs") == "read-write") == read_write
    if not read_write:
        assert writable_conninfo(dsn) == dsn


def test_durations_lists_and_retention_days() -> None:
    settings = load_settings({
        "AEGIS_STRIKE_INTERVAL": "90s", "AEGIS_EVENT_RETENTION": "7",
        "AEGIS_JOB_RUNS_RETENTION": "2w", "AEGIS_PROTECTED_CONTAINERS": "db, proxy,,",
        "AEGIS_NOTIFY_URLS": "tgram://bot/chat,mailto://u:p@example.com",
    })
    assert settings.strike_interval_s == 90.0
    assert settings.effective_stable_period_s == 180.0
    assert settings.event_retention_s == 7 * 86400
    assert settings.job_runs_retention_s == 14 * 86400
    assert settings.protected_containers == ("db", "proxy")
    assert settings.notify_urls == ("tgram://bot/chat", "mailto://u:p@example.com")


def test_job_overrides_from_toml_and_environment(tmp_path: Path) -> None:
    config = write_toml(tmp_path, '[jobs.morning_status]\nat = "07:00"\n'
                                  '[jobs.memory_cleanup]\nenabled = false\n'
                                  '[jobs.health_check]\nevery = "10m"\ntimeout = 30\n')
    settings = load_settings({"AEGIS_CONFIG": config,
                              "AEGIS_JOB__EVENING_SUMMARY__CRON": "0 21 * * 1-5",
                              "AEGIS_JOB__HEALTH_CHECK__MISFIRE_GRACE": "1m"})
    assert job_overrides(settings) == {
        "morning_status": JobOverride(at="07:00:00"),
        "memory_cleanup": JobOverride(enabled=False),
        "health_check": JobOverride(every_s=600.0, timeout_s=30.0, misfire_grace_s=60.0),
        "evening_summary": JobOverride(cron="0 21 * * 1-5"),
    }


def test_an_environment_trigger_replaces_the_files_trigger(tmp_path: Path) -> None:
    config = write_toml(tmp_path, '[jobs.morning_status]\nat = "07:00"\nenabled = true\n')
    settings = load_settings({"AEGIS_CONFIG": config,
                              "AEGIS_JOB__MORNING_STATUS__EVERY": "1h"})
    assert job_overrides(settings)["morning_status"] == JobOverride(enabled=True,
                                                                    every_s=3600.0)


def test_repr_masks_every_secret_but_keeps_the_rest() -> None:
    settings = load_settings({
        "AEGIS_DATABASE_URL": f"postgresql://aegis:{SECRET}@db/aegis",
        "POSTGRES_PASSWORD": SECRET,
        "DISCORD_WEBHOOK_URL": f"https://discord.com/api/webhooks/1/{SECRET}a",
        "DISCORD_JOURNAL_WEBHOOK_URL": f"https://discord.com/api/webhooks/2/{SECRET}b",
        "AEGIS_NOTIFY_URLS": f"tgram://{SECRET}c/1",
        "AEGIS_JOURNAL_NOTIFY_URLS": f"tgram://{SECRET}d/2",
        "AEGIS_HEARTBEAT_URL": f"https://hc-ping.com/{SECRET}e",
        "AEGIS_HOST": "web-01",
    })
    text = repr(settings)
    assert SECRET not in text
    assert text.count("'***'") == 7
    assert "host='web-01'" in text
    assert repr(Settings()).count("***") == 0  # nothing set, nothing to mask


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(AttributeError):
        settings.host = "other"  # type: ignore[misc]


# --- docker-autoheal's variables ---

DISCORD = "https://discord.com/api/webhooks/123456/AbC-dEf_gh"


def test_dockers_autoheal_variables_are_read_where_aegis_own_are_unset() -> None:
    settings = load_settings({"AUTOHEAL_CONTAINER_LABEL": "autoheal", "AUTOHEAL_INTERVAL": "5",
                              "AUTOHEAL_START_PERIOD": "300", "AUTOHEAL_DEFAULT_STOP_TIMEOUT": "20",
                              "WEBHOOK_URL": DISCORD,
                              "APPRISE_URL": "http://apprise:8000/notify/apprise"})
    assert settings.docker_scope == "labeled"  # a label names which containers: labelled
    assert settings.autoheal_label == "autoheal"
    assert settings.strike_interval_s == 5.0  # a restart within one interval, as autoheal
    assert settings.start_period_s == 300.0
    assert settings.default_stop_timeout_s == 20.0
    assert settings.discord_webhook_url == DISCORD
    assert settings.notify_urls == ("apprise://apprise:8000/apprise",)


def test_aegis_own_settings_win_and_compat_off_reads_none_of_autoheals() -> None:
    env = {"AUTOHEAL_CONTAINER_LABEL": "all", "AUTOHEAL_INTERVAL": "5",
           "AEGIS_STRIKE_INTERVAL": "30s", "AEGIS_DOCKER_SCOPE": "labeled"}
    settings = load_settings(env)
    assert (settings.strike_interval_s, settings.docker_scope) == (30.0, "labeled")
    assert load_settings({"AUTOHEAL_CONTAINER_LABEL": "all"}).docker_scope == "all"
    off = load_settings({**env, "AEGIS_AUTOHEAL_COMPAT": "off", "AEGIS_STRIKE_INTERVAL": "",
                         "AEGIS_DOCKER_SCOPE": ""})
    assert (off.strike_interval_s, off.docker_scope, off.autoheal_compat) == (60.0, "all",
                                                                               False)


@pytest.mark.parametrize(("webhook", "discord", "apprise"), [
    (DISCORD, DISCORD, ()),
    ("https://hooks.slack.com/services/T000/B000/XXXX", None,
     ("https://hooks.slack.com/services/T000/B000/XXXX",)),  # Apprise posts to Slack's URL
    ("https://example.org/hook", None, ()),  # a generic {"text": ...} endpoint: no mapping
])
def test_autoheals_webhook_becomes_a_destination_only_where_the_mapping_is_clear(
        webhook: str, discord: str | None, apprise: tuple[str, ...]) -> None:
    settings = load_settings({"WEBHOOK_URL": webhook})
    assert (settings.discord_webhook_url, settings.notify_urls) == (discord, apprise)


def test_alerts_default_to_one_living_message_from_the_escalation() -> None:
    settings = load_settings({})
    assert (settings.alert_style, settings.alert_from) == ("thread", "escalation")
    assert (settings.autoheal_compat, settings.autoheal_label) == (True, "autoheal")
    assert (settings.start_period_s, settings.default_stop_timeout_s) == (0.0, 10.0)


def test_the_escalation_route_is_off_unless_its_delay_and_destinations_are_set(
        tmp_path: Path) -> None:
    off = load_settings({})
    assert (off.escalate_after_s, off.escalation_urls, off.escalation_repeat_s) == (0, (), 0)
    hook = "https://discord.com/api/webhooks/123456/t0k3n"
    on = load_settings({"AEGIS_ESCALATE_AFTER": "15m",
                        "AEGIS_ESCALATION_URLS": f"{hook}, ntfy://ntfy.sh/oncall",
                        "AEGIS_ESCALATION_REPEAT": "1h"})
    assert (on.escalate_after_s, on.escalation_repeat_s) == (900, 3600)
    assert on.escalation_urls == (hook, "ntfy://ntfy.sh/oncall")
    assert "t0k3n" not in repr(on)
    config = write_toml(tmp_path, '[notify]\nescalate_after = "20s"\n'
                                  'escalation_urls = ["tgram://bot/chat"]\n'
                                  'escalation_repeat = "off"\n')
    from_file = load_settings({"AEGIS_CONFIG": config})
    assert (from_file.escalate_after_s, from_file.escalation_urls,
            from_file.escalation_repeat_s) == (20, ("tgram://bot/chat",), 0)
