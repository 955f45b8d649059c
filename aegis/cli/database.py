"""``aegis db``: migrations and the database URL."""

from __future__ import annotations

import click

from aegis import api
from aegis.cli.common import settings_of


@click.group()
def db() -> None:
    """The database: migrations and connection URL."""


@db.command("migrate")
@click.pass_context
def db_migrate(ctx: click.Context) -> None:
    """Apply pending migrations (safe to run twice, or from two processes at once)."""
    with api.connect(settings_of(ctx), migrate=False) as app:
        applied = app.db.migrate()
    if applied:
        click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        click.echo("database is up to date")


@db.command("url")
@click.pass_context
def db_url(ctx: click.Context) -> None:
    """Print the database URL (for psql); starts the embedded server if needed."""
    click.echo(api.database_url(settings_of(ctx), keep_embedded=True))


COMMANDS = (db,)
