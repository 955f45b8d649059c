"""``aegis doctor``: what is wrong with this installation, and how to fix it."""

from __future__ import annotations

import sys

import click

from aegis.cli.common import EXIT_FAILED, EXIT_OK, print_json, settings_of
from aegis.doctor.report import has_failures, run_checks


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array of {check, status, detail, hint}.")
@click.pass_context
def doctor_command(ctx: click.Context, as_json: bool) -> None:
    """Check the database, migrations, clock, Docker, channels, journal folder and daemon;
    exit 1 when any check fails."""
    checks = run_checks(settings_of(ctx))
    if as_json:
        print_json([check.to_json() for check in checks])
    else:
        width = max(len(check.check) for check in checks)
        for check in checks:
            click.echo(f"{check.status:<5} {check.check:<{width}}  {check.detail}")
            if check.hint:
                click.echo(f"{'':<5} {'':<{width}}  fix: {check.hint}")
    sys.exit(EXIT_FAILED if has_failures(checks) else EXIT_OK)


COMMANDS = (doctor_command,)
