"""docker-autoheal's variables, read as aegis's own settings where aegis's are not set
(AEGIS_AUTOHEAL_COMPAT, on by default): a host moving from docker-autoheal keeps its
environment. docs/migrating-from-autoheal.md gives each mapping, and the variables that
have none (those are a finding of ``aegis doctor``: aegis/doctor/hostlint.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping

DISCORD_WEBHOOK = re.compile(
    r"^https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/\d+/[\w-]+/?$")
SLACK_WEBHOOK = re.compile(r"^https://hooks\.slack\.com/services/[\w/]+$")
APPRISE_API = re.compile(r"^(https?)://([^/?#]+)/notify/([\w.-]+)/?$")
# Durations in seconds, which aegis's durations take as they are.
SECONDS_VARIABLES = ("AUTOHEAL_INTERVAL", "AUTOHEAL_START_PERIOD",
                     "AUTOHEAL_DEFAULT_STOP_TIMEOUT")


def variables(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """docker-autoheal's variables that have a clear meaning in aegis, as ``{its variable:
    (the variable to name in errors, the raw value of aegis's setting)}``. The caller
    uses each only where aegis's own setting is not set."""
    found: dict[str, tuple[str, str]] = {}
    for name in SECONDS_VARIABLES:
        if env.get(name, "").strip():
            found[name] = (name, env[name])
    label = env.get("AUTOHEAL_CONTAINER_LABEL", "").strip()
    if label:
        # the label (or all) says which containers autoheal watches: the scope
        found["AUTOHEAL_CONTAINER_LABEL"] = ("AUTOHEAL_CONTAINER_LABEL",
                                             "all" if label == "all" else "labeled")
    webhook = env.get("WEBHOOK_URL", "").strip()
    urls = []
    if DISCORD_WEBHOOK.match(webhook):
        found["WEBHOOK_URL"] = ("WEBHOOK_URL", webhook)
    elif SLACK_WEBHOOK.match(webhook):
        # Apprise posts to Slack's own URL
        urls.append(("WEBHOOK_URL", webhook))
    apprise_api = APPRISE_API.match(env.get("APPRISE_URL", "").strip())
    if apprise_api:
        # an Apprise API server's notify endpoint, as an Apprise URL
        scheme = "apprises" if apprise_api.group(1) == "https" else "apprise"
        urls.append(("APPRISE_URL", f"{scheme}://{apprise_api.group(2)}/{apprise_api.group(3)}"))
    if urls:
        found["APPRISE_URL"] = (" and ".join(n for n, _ in urls), ",".join(u for _, u in urls))
    return found
