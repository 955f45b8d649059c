"""The ``aegis`` command. Exit codes: 0 ok, 1 a check failed, 2 bad usage or configuration.

Commands are thin: they parse arguments, call the Python API (aegis.api) and print.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

from aegis import __version__, api
from aegis.config import Settings, load_settings
from aegis.errors import AegisError, ConfigError, DatabaseUnavailable, UsageError
from aegis.logs import configure_logging
from aegis.store import IMPORTANCE

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"aegis: {message}", err=True)
    sys.exit(code)


class AegisGroup(click.Group):
    """Turns aegis's own errors into one line on stderr and the contract's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            fail(f"configuration error: {exc}", EXIT_USAGE)
        except UsageError as exc:
            fail(str(exc), EXIT_USAGE)
        except DatabaseUnavailable as exc:
            fail(f"database unreachable: {exc}")
        except AegisError as exc:
            fail(str(exc))


def settings_of(ctx: click.Context) -> Settings:
    settings: Settings = ctx.ensure_object(dict)["settings"]
    return settings


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def print_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def with_app(**connect_kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: open ``api.connect`` for the command and pass it as ``app``."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @click.pass_context
        def wrapper(ctx: click.Context, /, **kwargs: Any) -> Any:
            with api.connect(settings_of(ctx), **connect_kwargs) as app:
                return ctx.invoke(command, app, **kwargs)

        wrapper.__name__ = command.__name__
        wrapper.__doc__ = command.__doc__
        return wrapper

    return decorate


@click.group(cls=AegisGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aegis")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """aegis: scheduled jobs, container remediation and an event history for a Docker host."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(f"configuration error: {exc}", EXIT_USAGE)
    configure_logging(settings)
    ctx.ensure_object(dict)["settings"] = settings


# --- db ---


@cli.group()
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


# --- events ---


@cli.command("events")
@click.option("--since", default=api.DEFAULT_EVENT_WINDOW, show_default=True,
              help="A duration back from now (24h, 7d) or an ISO-8601 time.")
@click.option("--type", "event_types", multiple=True, help="Only this event type (repeatable).")
@click.option("--importance", type=click.Choice(IMPORTANCE),
              help="Only events at this importance or above.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_app()
def events(app: api.Aegis, since: str, event_types: tuple[str, ...], importance: str | None,
           limit: int, as_json: bool) -> None:
    """The episodic event history, newest first."""
    found = app.memory.query(since=since, event_type=list(event_types) or None,
                             importance=importance, limit=limit)
    if as_json:
        print_json([event.to_json() for event in found])
        return
    print_table([(e.timestamp.strftime("%Y-%m-%d %H:%M:%S"), e.importance, e.event_type,
                  e.host, e.summary) for e in found],
                ["timestamp", "importance", "event_type", "host", "summary"])


def main() -> None:
    cli(prog_name="aegis")
