"""The ``aegis`` commands for supervised containers and notifications: containers, ack,
maintenance, notify test, outbox."""

from __future__ import annotations

import click

from aegis import api
from aegis.cli_common import fail, format_time, print_json, print_table, with_app
from aegis.errors import UsageError

# --- containers ---


@click.command("containers")
@click.option("--all-hosts", is_flag=True, help="Every host sharing the database.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_app()
def containers_command(app: api.Aegis, all_hosts: bool, as_json: bool) -> None:
    """Supervised containers: health, strikes and state (ok, striking, restarting,
    escalated, maintenance, protected, ignored)."""
    from aegis.clock import utcnow
    from aegis.containers import listing

    found = listing(app, utcnow(), all_hosts=all_hosts)
    if as_json:
        print_json([container.to_json() for container in found])
        return
    print_table([(c.name, c.id, c.image or "-", c.health, str(c.strikes), c.state,
                  c.last_action or "-", format_time(c.last_action_at),
                  str(c.restarts_last_hour), c.host) for c in found],
                ["name", "id", "image", "health", "strikes", "state", "last_action", "at",
                 "restarts_1h", "host"])


@click.command("ack")
@click.argument("container")
@with_app()
def ack_command(app: api.Aegis, container: str) -> None:
    """Take over an escalation: strikes reset and remediation is re-armed."""
    from aegis.clock import utcnow
    from aegis.containers import acknowledge

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
    from aegis.clock import utcnow
    from aegis.containers import set_maintenance
    from aegis.durations import parse_duration_s

    if (duration is None) == (not off):
        raise UsageError("give either --for DURATION or --off")
    seconds = None
    if duration is not None:
        try:
            seconds = parse_duration_s(duration)
        except ValueError as exc:
            raise UsageError(f"--for: {exc}") from None
    row = set_maintenance(app, container, utcnow(), seconds)
    if row["maintenance_until"] is None:
        click.echo(f"{container}: maintenance ended")
    else:
        click.echo(f"{container}: maintenance until "
                   f"{row['maintenance_until']:%Y-%m-%d %H:%M:%S} UTC")


# --- notifications ---


@click.group()
def notify() -> None:
    """Notification channels (alerts, journal)."""


@notify.command("test")
@click.option("--channel", type=click.Choice(["alerts", "journal"]), default="alerts",
              show_default=True)
@with_app()
def notify_test(app: api.Aegis, channel: str) -> None:
    """Send a test message through the outbox now; exit 1 with the reason if it fails."""
    from aegis.sender import send_test

    row, labels = send_test(app, channel)
    if row is None:
        fail("the test message could not be queued (database unreachable)")
    if row.status != "delivered":
        fail(f"not delivered to {channel}: {row.last_error or row.status}")
    click.echo(f"delivered to {channel}: {', '.join(labels)}")


@click.command("outbox")
@click.option("--all", "show_all", is_flag=True, help="Delivered messages too.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_app()
def outbox_command(app: api.Aegis, show_all: bool, limit: int, as_json: bool) -> None:
    """Messages not delivered: pending, failed and undeliverable, oldest first."""
    from aegis.outbox import STATUSES, OutboxRow

    statuses = list(STATUSES) if show_all else ["pending", "failed", "undeliverable"]
    found = [OutboxRow.from_row(row) for row in
             app.db.fetch_all("outbox_list", statuses=statuses, limit=limit)]
    if as_json:
        print_json([row.to_json() for row in found])
        return
    print_table([(str(r.id), r.channel, r.status, str(r.attempts),
                  format_time(r.next_attempt_at) if r.status == "pending" else "-",
                  format_time(r.created_at), r.title[:50], (r.last_error or "-")[:80])
                 for r in found],
                ["id", "channel", "status", "attempts", "next_attempt", "created", "title",
                 "last_error"])


COMMANDS = (containers_command, ack_command, maintenance_command, notify, outbox_command)
