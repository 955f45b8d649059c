"""``aegis doctor`` as a linter of the Docker host: what on it will not be supervised the
way its owner expects, each with a one-line hint. Pure functions of the settings, the
environment and what Docker reports of each container (inspects); engine.py asks Docker.
A finding never fails the doctor (aegis runs on): it is ok or warn.

- labelled containers without a health check: nothing for aegis to watch;
- ``aegis.*`` and ``autoheal*`` labels misspelt or with values that do not parse;
- stop timeouts longer than AEGIS_SHUTDOWN_GRACE: a restart under way when aegis stops
  is not waited for (the next daemon records its outcome late);
- containers in the network namespace of a container id that no longer exists (a
  replaced parent: a restart cannot bring them back);
- docker-autoheal variables aegis does not read.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from aegis.core.autoheal import APPRISE_API, DISCORD_WEBHOOK, SLACK_WEBHOOK
from aegis.core.config import Settings
from aegis.doctor.checks import OK, WARN, Check
from aegis.supervision.docker import Sighting
from aegis.supervision.protocol.labels import (
    AUTOHEAL,
    AUTOHEAL_STOP_TIMEOUT,
    autoheal_label,
    effective_stop_timeout_s,
    parse_labels,
)

# How many containers a finding names before it says "and N more".
NAMED = 5
# Keys that look like docker-autoheal's: reported when they are not one of its own.
_AUTOHEAL_LIKE = ("autoheal", "auto-heal", "auto_heal")
AUTOHEAL_MISSPELT_CUTOFF = 0.8


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMED])
    return shown + (f" and {len(names) - NAMED} more" if len(names) > NAMED else "")


def lint(settings: Settings, seen: Sequence[Sighting], env: Mapping[str, str]) -> list[Check]:
    """Every finding about the host's containers (inspected) and aegis's environment."""
    return [no_healthcheck(settings, seen), bad_labels(settings, seen),
            long_stop_timeouts(settings, seen), orphaned_dependants(seen),
            autoheal_variables(settings, env)]


def no_healthcheck(settings: Settings, seen: Sequence[Sighting]) -> Check:
    autoheal = autoheal_label(settings)
    blind = sorted(s.name for s in seen if not s.has_healthcheck
                   and parse_labels(s.labels, autoheal).enable is True)
    if not blind:
        return Check("containers:healthcheck", OK,
                       "every container labelled for aegis has a health check")
    return Check("containers:healthcheck", WARN,
                   f"{_names(blind)}: labelled for aegis but without a health check, so "
                   "there is nothing to watch",
                   "add a HEALTHCHECK to the image or a healthcheck: to the compose service")


def bad_labels(settings: Settings, seen: Sequence[Sighting]) -> Check:
    autoheal = autoheal_label(settings)
    known = {autoheal or AUTOHEAL, AUTOHEAL_STOP_TIMEOUT}
    problems: list[str] = []
    for container in sorted(seen, key=lambda s: s.name):
        found = list(parse_labels(container.labels, autoheal).problems)
        for key in sorted(container.labels):
            if key.lower().startswith(_AUTOHEAL_LIKE) and key not in known:
                close = difflib.get_close_matches(key.lower(), sorted(known), n=1,
                                                  cutoff=AUTOHEAL_MISSPELT_CUTOFF)
                found.append(f"{key} is not docker-autoheal's"
                             + (f" (did you mean {close[0]}?)" if close else ""))
        problems.extend(f"{container.name}: {problem}" for problem in found)
    if not problems:
        return Check("containers:labels", OK, "no misspelt or unreadable aegis.* or "
                       "autoheal labels")
    more = f" (and {len(problems) - NAMED} more)" if len(problems) > NAMED else ""
    return Check("containers:labels", WARN, "; ".join(problems[:NAMED]) + more,
                   "fix the label in the compose file: a misspelt or unreadable label does "
                   "nothing (docs/remediation.md#scope-and-labels)")


def long_stop_timeouts(settings: Settings, seen: Sequence[Sighting]) -> Check:
    grace_s = settings.shutdown_grace_s
    slow = sorted(f"{s.name} ({effective_stop_timeout_s(s, settings):g}s)" for s in seen
                  if s.has_healthcheck and effective_stop_timeout_s(s, settings) > grace_s)
    if not slow:
        return Check("containers:stop-timeout", OK,
                       f"every restart fits in AEGIS_SHUTDOWN_GRACE ({grace_s:g}s)")
    return Check("containers:stop-timeout", WARN,
                   f"{_names(slow)}: a restart waits this long for the stop, longer than "
                   f"AEGIS_SHUTDOWN_GRACE ({grace_s:g}s): one under way when aegis stops is "
                   "not waited for, and is recorded late by the next daemon",
                   "raise AEGIS_SHUTDOWN_GRACE (and aegis's own stop_grace_period) above it, "
                   "or shorten the container's stop timeout (aegis.stop-timeout)")


def orphaned_dependants(seen: Sequence[Sighting]) -> Check:
    ids = {s.id for s in seen}
    orphans = sorted(f"{s.name} (container {s.network_parent[:12]})" for s in seen
                     if s.network_parent and s.network_parent not in ids
                     and not any(i.startswith(s.network_parent) for i in ids))
    if not orphans:
        return Check("containers:network-parents", OK,
                     "every container sharing another's network has that container")
    return Check("containers:network-parents", WARN,
                 f"{_names(orphans)}: in the network namespace of a container that no longer "
                 "exists (replaced): a restart fails with 'No such container'",
                 "aegis recreates it into the new parent when one of the old name starts "
                 "(docs/remediation.md#dependants-of-a-replaced-network-parent-the-vpn-sidecar);"
                 " or recreate it by hand (docker compose up -d --force-recreate SERVICE)")


def autoheal_variables(settings: Settings, env: Mapping[str, str]) -> Check:
    if not settings.autoheal_compat:
        return Check("autoheal", OK, "AEGIS_AUTOHEAL_COMPAT=off: docker-autoheal's labels "
                       "and variables are not read")
    unread = unread_autoheal_variables(env)
    if not unread:
        return Check("autoheal", OK, f"docker-autoheal's label {settings.autoheal_label} "
                       "is read as aegis.enable; no variable of it is left unread")
    return Check("autoheal", WARN, "; ".join(unread),
                   "see docs/migrating-from-autoheal.md for what each becomes")


def unread_autoheal_variables(env: Mapping[str, str]) -> list[str]:
    """docker-autoheal's variables set in ``env`` that aegis does not read (those
    ``aegis.core.autoheal.variables`` has no mapping for), each with what to do instead."""
    notes = {
        "AUTOHEAL_ONLY_MONITOR_RUNNING": "aegis only ever restarts running containers",
        "DOCKER_SOCK": "set DOCKER_HOST (unix:///var/run/docker.sock, tcp://host:2376)",
        "CURL_TIMEOUT": "aegis waits for the Docker engine on its own terms",
        "WEBHOOK_JSON_KEY": "aegis posts its own message format",
        "POST_RESTART_SCRIPT": "follow aegis's events instead (aegis events, episodic_memory)",
    }
    found = [f"{name}: {note}" for name, note in notes.items() if env.get(name, "").strip()]
    webhook = env.get("WEBHOOK_URL", "").strip()
    if webhook and not (DISCORD_WEBHOOK.match(webhook)
                        or SLACK_WEBHOOK.match(webhook)):
        found.append("WEBHOOK_URL: not a Discord or Slack webhook; set DISCORD_WEBHOOK_URL "
                     "or AEGIS_NOTIFY_URLS (an Apprise URL)")
    apprise_url = env.get("APPRISE_URL", "").strip()
    if apprise_url and not APPRISE_API.match(apprise_url):
        found.append("APPRISE_URL: not an Apprise API notify URL (http://host:8000/notify/KEY); "
                     "set AEGIS_NOTIFY_URLS")
    return found
