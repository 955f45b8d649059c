"""The bad-configuration catalogue: each case is one configuration aegis must refuse with
one line naming the variable or key. The settings' unit tests check the line; the
acceptance tests run the same cases through the real ``aegis`` command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG = "{config}"  # replaced by the path of the case's TOML file
SECRET = "hunter2-s3cr3t"


@dataclass(frozen=True)
class BadInput:
    """A configuration aegis must refuse: ``names`` is what its one-line error names."""

    id: str
    env: dict[str, str]
    names: str
    toml: str | bytes | None = None
    hint: str = ""
    secret_free: tuple[str, ...] = ()


BAD_INPUTS = [
    BadInput("autoheal_interval_not_a_duration", {"AUTOHEAL_INTERVAL": "often"},
             "AUTOHEAL_INTERVAL", hint="is not a duration"),
    BadInput("autoheal_compat_not_a_boolean", {"AEGIS_AUTOHEAL_COMPAT": "maybe"},
             "AEGIS_AUTOHEAL_COMPAT", hint="is not a boolean"),
    BadInput("unknown_alert_style", {"AEGIS_ALERT_STYLE": "email"}, "AEGIS_ALERT_STYLE",
             hint="'email' is not one of thread, posts"),
    BadInput("escalate_after_without_urls", {"AEGIS_ESCALATE_AFTER": "15m"},
             "AEGIS_ESCALATION_URLS", hint="must be set when AEGIS_ESCALATE_AFTER is"),
    BadInput("escalation_urls_without_delay",
             {"AEGIS_ESCALATION_URLS": f"https://discord.com/api/webhooks/1/{SECRET}"},
             "AEGIS_ESCALATE_AFTER", hint="must be set when AEGIS_ESCALATION_URLS is",
             secret_free=(SECRET,)),
    BadInput("escalation_repeat_without_delay", {"AEGIS_ESCALATION_REPEAT": "30m"},
             "AEGIS_ESCALATE_AFTER", hint="must be set when AEGIS_ESCALATION_REPEAT is"),
    BadInput("escalate_after_not_a_duration",
             {"AEGIS_ESCALATE_AFTER": "soon", "AEGIS_ESCALATION_URLS": "ntfy://host/topic"},
             "AEGIS_ESCALATE_AFTER", hint="not a duration"),
    BadInput("escalation_url_without_scheme",
             {"AEGIS_ESCALATE_AFTER": "15m", "AEGIS_ESCALATION_URLS": f"oncall-{SECRET}"},
             "AEGIS_ESCALATION_URLS", hint="not a notification URL", secret_free=(SECRET,)),
    BadInput("port_not_a_number", {"POSTGRES_PORT": "abc"}, "POSTGRES_PORT",
             hint="not a whole number"),
    BadInput("port_out_of_range", {"POSTGRES_PORT": "70000"}, "POSTGRES_PORT",
             hint="out of range"),
    BadInput("workers_out_of_range", {"AEGIS_WORKERS": "0"}, "AEGIS_WORKERS",
             hint="out of range"),
    BadInput("unknown_log_format", {"AEGIS_LOG_FORMAT": "xml"}, "AEGIS_LOG_FORMAT",
             hint="'xml' is not one of auto, json, console, logfmt"),
    BadInput("unknown_log_level", {"AEGIS_LOG_LEVEL": "loud"}, "AEGIS_LOG_LEVEL",
             hint="not one of"),
    BadInput("config_file_missing", {"AEGIS_CONFIG": "/nonexistent/aegis.toml"},
             "AEGIS_CONFIG", hint="cannot read"),
    BadInput("config_file_is_a_directory", {"AEGIS_CONFIG": "/"}, "AEGIS_CONFIG",
             hint="cannot read"),
    BadInput("config_file_not_utf8", {"AEGIS_CONFIG": CONFIG}, "AEGIS_CONFIG",
             toml=b"\xff\xfe[database]\n", hint="cannot read"),
    BadInput("malformed_toml", {"AEGIS_CONFIG": CONFIG}, "AEGIS_CONFIG",
             toml="[database\nport = 1\n", hint="is not valid TOML"),
    BadInput("unknown_toml_key", {"AEGIS_CONFIG": CONFIG}, "database.prot",
             toml="[database]\nprot = 5432\n", hint="did you mean database.port?"),
    BadInput("unknown_toml_table", {"AEGIS_CONFIG": CONFIG}, "notifications",
             toml="[notifications]\n", hint="unknown key"),
    BadInput("toml_wrong_type", {"AEGIS_CONFIG": CONFIG}, "database.port",
             toml='[database]\nport = "abc"\n', hint="not a whole number"),
    BadInput("empty_required_value", {"AEGIS_CONFIG": CONFIG}, "database.user",
             toml='[database]\nuser = ""\n', hint="must not be empty"),
    BadInput("bad_job_override_key", {"AEGIS_CONFIG": CONFIG}, "jobs.morning_status.sat",
             toml='[jobs.morning_status]\nsat = "07:00"\n', hint="unknown job key"),
    BadInput("bad_job_override_env_key", {"AEGIS_JOB__MORNING_STATUS__WHEN": "07:00"},
             "AEGIS_JOB__MORNING_STATUS__WHEN", hint="unknown job key"),
    BadInput("job_env_without_key", {"AEGIS_JOB__MORNING_STATUS": "07:00"},
             "AEGIS_JOB__MORNING_STATUS", hint="AEGIS_JOB__<JOB_ID>__<KEY>"),
    BadInput("bad_cron_in_override", {"AEGIS_JOB__MORNING_STATUS__CRON": "61 * * * *"},
             "AEGIS_JOB__MORNING_STATUS__CRON", hint="not a 5-field cron expression"),
    BadInput("bad_time_in_override", {"AEGIS_CONFIG": CONFIG}, "jobs.morning_status.at",
             toml='[jobs.morning_status]\nat = "25:00"\n', hint="not a time of day"),
    BadInput("two_triggers_for_one_job", {"AEGIS_CONFIG": CONFIG}, "jobs.morning_status",
             toml='[jobs.morning_status]\nat = "07:00"\nevery = "5m"\n',
             hint="set at most one of every, at, cron"),
    BadInput("bad_maintenance_duration", {"AEGIS_CONFIG": CONFIG}, "maintenance[1].duration",
             toml='[[maintenance]]\ncontainers = ["backup-*"]\nschedule = "0 2 * * *"\n'
                  'duration = "an hour"\n', hint="is not a duration"),
    BadInput("unknown_maintenance_key", {"AEGIS_CONFIG": CONFIG}, "maintenance[2].container",
             toml='[[maintenance]]\ncontainers = ["*"]\nschedule = "02:00"\nduration = "1h"\n'
                  '[[maintenance]]\ncontainer = "db"\n', hint="unknown key"),
    BadInput("maintenance_not_an_array", {"AEGIS_CONFIG": CONFIG}, "maintenance",
             toml='[maintenance]\nschedule = "02:00"\n', hint="array of [[maintenance]]"),
    BadInput("bad_duration", {"AEGIS_STRIKE_INTERVAL": "5x"}, "AEGIS_STRIKE_INTERVAL",
             hint="not a duration"),
    BadInput("duration_below_minimum", {"AEGIS_EVENT_RETENTION": "30m"},
             "AEGIS_EVENT_RETENTION", hint="at least"),
    BadInput("bad_webhook_url", {"DISCORD_WEBHOOK_URL": f"discord.com/api/webhooks/1/{SECRET}"},
             "DISCORD_WEBHOOK_URL", hint="not an http(s) URL", secret_free=(SECRET,)),
    BadInput("bad_database_url", {"AEGIS_DATABASE_URL": f"mysql://root:{SECRET}@db/aegis"},
             "AEGIS_DATABASE_URL", hint="not a PostgreSQL URL", secret_free=(SECRET,)),
    BadInput("bad_host_name", {"AEGIS_HOST": "my host"}, "AEGIS_HOST",
             hint="not a host name"),
    BadInput("bad_http_addr", {"AEGIS_HTTP_ADDR": "9465"}, "AEGIS_HTTP_ADDR",
             hint="HOST:PORT"),
    BadInput("bad_module_path", {"AEGIS_JOB_MODULES": "my-jobs"}, "AEGIS_JOB_MODULES",
             hint="not an importable module path"),
]


def materialize(case: BadInput, tmp_path: Path) -> dict[str, str]:
    """The case's environment, with its TOML file written under ``tmp_path``."""
    path = tmp_path / "aegis.toml"
    if isinstance(case.toml, bytes):
        path.write_bytes(case.toml)
    elif case.toml is not None:
        path.write_text(case.toml, encoding="utf-8")
    return {k: v.replace(CONFIG, str(path)) for k, v in case.env.items()}
