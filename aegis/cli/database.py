"""``aegis db``: migrations and the database URL."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from aegis import api
from aegis.cli.common import EXIT_OK, EXIT_PENDING, EXIT_SCHEMA_TOO_NEW, fail, settings_of
from aegis.storage.schema import SchemaStatus


@click.group()
def db() -> None:
    """The database: migrations and connection URL."""


@db.command("migrate")
@click.option("--check", is_flag=True,
              help="Say what would be applied and whether this aegis may run on the schema, "
                   "without changing anything: exit 0 when nothing is pending, 3 when "
                   "something is, 4 when the schema is too new for this aegis.")
@click.pass_context
def db_migrate(ctx: click.Context, check: bool) -> None:
    """Apply pending migrations (safe to run twice, or from two processes at once)."""
    with api.connect(settings_of(ctx), migrate=False) as app:
        if check:
            _check(app.db.schema_status())
        applied = app.db.migrate()
    if applied:
        click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        click.echo("database is up to date")


def _check(status: SchemaStatus) -> NoReturn:
    """``aegis db migrate --check``: what would run, and the schema's compatibility."""
    if status.newer:
        click.echo(f"{len(status.newer)} migration(s) of a newer aegis applied: "
                   f"{', '.join(m.name for m in status.newer)}")
    if not status.compatible:
        fail(str(status.refusal()), EXIT_SCHEMA_TOO_NEW)
    if status.newer:
        click.echo(f"compatible: they allow aegis {status.requires} and later; this is "
                   f"aegis {status.running}")
    if status.pending:
        click.echo(f"{len(status.pending)} migration(s) pending: {', '.join(status.pending)}")
        sys.exit(EXIT_PENDING)
    click.echo("database is up to date")
    sys.exit(EXIT_OK)


@db.command("url")
@click.pass_context
def db_url(ctx: click.Context) -> None:
    """Print the database URL (for psql); starts the embedded server if needed."""
    click.echo(api.database_url(settings_of(ctx), keep_embedded=True))


COMMANDS = (db,)
