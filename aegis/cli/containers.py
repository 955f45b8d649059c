"""``aegis containers``, ``ack`` and ``maintenance``: supervised containers as the
database records them."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import click

from aegis import api
from aegis.cli.common import format_time, print_json, print_table, with_app
from aegis.core.clock import utcnow, zone
from aegis.core.durations import parse_duration_s
from aegis.core.errors import UsageError
from aegis.supervision.containers import (
    ContainerView,
    acknowledge,
    listing,
    set_maintenance,
)


@click.command("containers")
@click.option("--all-hosts", is_flag=True, help="Every host sharing the database.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_app()
def containers_command(app: api.Aegis, all_hosts: bool, as_json: bool) -> None:
    """Supervised containers: health, strikes and state (ok, striking, restarting,
    escalated, maintenance, protected, orchestrated, ignored) and the maintenance window
    under way or next; --json adds the latest incident's triage class and its
    dependants."""
    found = listing(app, utcnow(), all_hosts=all_hosts)
    tz = zone(app.settings.timezone)
    if as_json:
        print_json([container.to_json() for container in found])
        return
    print_table([(c.name, c.id, c.image or "-", c.health, str(c.strikes), c.state,
                  c.last_action or "-", format_time(c.last_action_at),
                  str(c.restarts_last_hour), _window(c, tz), c.host) for c in found],
                ["name", "id", "image", "health", "strikes", "state", "last_action", "at",
                 "restarts_1h", "next_window", "host"])


def _window(container: ContainerView, tz: ZoneInfo) -> str:
    """The maintenance window under way or next: its start and end on AEGIS_TIMEZONE's
    wall clock, with their offsets (or -)."""
    if container.window_start is None or container.window_end is None:
        return "-"
    return (f"{format_time(container.window_start, tz)} to "
            f"{format_time(container.window_end, tz)}")


@click.command("ack")
@click.argument("container")
@with_app()
def ack_command(app: api.Aegis, container: str) -> None:
    """Take over an escalation: strikes reset and remediation is re-armed."""
    if acknowledge(app, container, utcnow()):
        click.echo(f"{container}: escalation acknowledged; remediation re-armed")
    else:
        click.echo(f"{container}: not escalated; nothing to acknowledge")


@click.command("maintenance")
@click.argument("container")
@click.option("--for", "duration", metavar="DURATION", help="Pause action for 30m, 2h, 1d...")
@click.option("--off", is_flag=True, help="End maintenance now.")
@with_app()
def maintenance_command(app: api.Aegis, container: str, duration: str | None,
                        off: bool) -> None:
    """Pause remediation of a container for a while (or end the pause with --off)."""
    if (duration is None) == (not off):
        raise UsageError("give either --for DURATION or --off")
    seconds = None
    if duration is not None:
        try:
            seconds = parse_duration_s(duration)
        except ValueError as exc:
            raise UsageError(f"--for: {exc}") from None
    row = set_maintenance(app, container, utcnow(), seconds)
    if row.maintenance_until is None:
        click.echo(f"{container}: maintenance ended")
    else:
        click.echo(f"{container}: maintenance until "
                   f"{row.maintenance_until:%Y-%m-%d %H:%M:%S} UTC")


COMMANDS = (containers_command, ack_command, maintenance_command)
