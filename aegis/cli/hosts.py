"""``aegis hosts``: every host sharing the database, and ``aegis hosts forget HOST`` for
one taken out of service."""

from __future__ import annotations

import click

from aegis import api
from aegis.cli.common import format_time, print_json, print_table, with_app
from aegis.core.clock import utcnow
from aegis.core.errors import UsageError
from aegis.reports.fleet import collect_hosts, forget


@click.group("hosts", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def hosts(ctx: click.Context, as_json: bool) -> None:
    """The fleet: each host's daemon (running, stale, silent, stopped), its heartbeat's
    age and version, its supervised and unhealthy containers, open incidents (a parent
    and the dependants folded into its incident count once) and last escalation."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(hosts_list, as_json=as_json)


@with_app()
def hosts_list(app: api.Aegis, as_json: bool) -> None:
    found = collect_hosts(app, utcnow())
    if as_json:
        print_json([view.to_json() for view in found])
        return
    print_table([(v.host, v.status.value, f"{v.heartbeat_age_s:g}s", v.version,
                  str(v.supervised), str(v.unhealthy), str(v.incidents),
                  format_time(v.last_escalation_at)) for v in found],
                ["host", "status", "heartbeat", "version", "supervised", "unhealthy",
                 "incidents", "last_escalation"])


@hosts.command("forget")
@click.argument("host")
@with_app()
def hosts_forget(app: api.Aegis, host: str) -> None:
    """Take a decommissioned HOST out of the fleet: no silence alert for it, no line in
    `aegis hosts` (its events, runs and containers stay)."""
    if forget(app, host) == 0:
        raise UsageError(f"no host {host!r} (see aegis hosts)")
    click.echo(f"forgot host {host}")


COMMANDS = (hosts,)
