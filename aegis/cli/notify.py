"""``aegis notify test`` and ``aegis outbox``: the notification channels and the messages
waiting in the outbox."""

from __future__ import annotations

import click

from aegis import api
from aegis.cli.common import fail, format_time, print_json, print_table, with_app
from aegis.notify.testmessage import send_test_message
from aegis.storage.outbox import UNFINISHED, Channel, Outbox, OutboxStatus


@click.group()
def notify() -> None:
    """Notification channels (alerts, journal, escalation)."""


@notify.command("test")
@click.option("--channel", type=click.Choice([c.value for c in Channel]), default="alerts",
              show_default=True)
@with_app()
def notify_test(app: api.Aegis, channel: str) -> None:
    """Send a test message through the outbox now; exit 1 with the reason if it fails."""
    sent = send_test_message(app, Channel(channel))
    if sent.row is None:
        fail("the test message could not be queued (database unreachable)")
    if sent.row.status != OutboxStatus.DELIVERED:
        fail(f"not delivered to {channel}: {sent.row.last_error or sent.row.status}")
    click.echo(f"delivered to {channel}: {', '.join(sent.destinations)}")


@click.command("outbox")
@click.option("--all", "show_all", is_flag=True, help="Delivered messages too.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_app()
def outbox_command(app: api.Aegis, show_all: bool, limit: int, as_json: bool) -> None:
    """Messages not delivered: pending, failed and undeliverable, oldest first."""
    statuses = list(OutboxStatus) if show_all else list(UNFINISHED)
    found = Outbox(app.db).listing(statuses, limit)
    if as_json:
        print_json([row.to_json() for row in found])
        return
    print_table([(str(r.id), r.channel, r.status, str(r.attempts),
                  format_time(r.next_attempt_at) if r.status == OutboxStatus.PENDING else "-",
                  format_time(r.created_at), r.title[:50], (r.last_error or "-")[:80])
                 for r in found],
                ["id", "channel", "status", "attempts", "next_attempt", "created", "title",
                 "last_error"])


COMMANDS = (notify, outbox_command)
