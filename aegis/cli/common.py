"""What every ``aegis`` command shares: exit codes, one-line failures, output, the app."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

import click

from aegis import api
from aegis.core.clock import offset_text
from aegis.core.config import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# `aegis db migrate --check`: migrations are waiting to be applied
EXIT_PENDING = 3
# the database's schema is of a newer aegis that declares this one too old to run on it
EXIT_SCHEMA_TOO_NEW = 4


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"aegis: {message}", err=True)
    sys.exit(code)


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


def format_time(value: Any, zone: ZoneInfo | None = None) -> str:
    """``value`` as text; with ``zone``, the wall-clock time there and its offset."""
    if value is None:
        return "-"
    if zone is None:
        return str(value.strftime("%Y-%m-%d %H:%M:%S"))
    local = value.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {offset_text(local)}"
