"""``aegis events`` and ``aegis digest``: the episodic history and a day's digest."""

from __future__ import annotations

import click

from aegis import api
from aegis.cli.common import fail, print_json, print_table, settings_of, with_app
from aegis.core.clock import utcnow
from aegis.core.durations import parse_since
from aegis.core.errors import UsageError
from aegis.reports.digest import collect_day, local_day, parse_day, scope_host
from aegis.reports.journal import write_day
from aegis.reports.markdown import render_day
from aegis.storage.events import Importance


def _check_since(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """Refuse a bad --since before any connection is made (exit 2, not 1)."""
    try:
        parse_since(value, utcnow())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@click.command("events")
@click.option("--since", default=api.DEFAULT_EVENT_WINDOW, show_default=True,
              callback=_check_since,
              help="A duration back from now (24h, 7d) or an ISO-8601 time.")
@click.option("--type", "event_types", multiple=True, help="Only this event type (repeatable).")
@click.option("--importance", type=click.Choice([i.value for i in Importance]),
              help="Only events at this importance or above.")
@click.option("--container", help="Only events about this container.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@with_app()
# click hands a command one argument per option
def events(app: api.Aegis, since: str, event_types: tuple[str, ...],  # noqa: PLR0913
           importance: str | None,
           container: str | None, limit: int, as_json: bool) -> None:
    """The episodic event history, newest first."""
    found = app.memory.query(since=since, event_type=list(event_types) or None,
                             importance=importance, container=container, limit=limit)
    if as_json:
        print_json([event.to_json() for event in found])
        return
    print_table([(e.timestamp.strftime("%Y-%m-%d %H:%M:%S"), e.importance, e.event_type,
                  e.host, e.summary) for e in found],
                ["timestamp", "importance", "event_type", "host", "summary"])


@click.command("digest")
@click.option("--date", "day_text", metavar="YYYY-MM-DD",
              help="The day to summarize, in AEGIS_TIMEZONE (default: today there).")
@click.option("--stdout", "to_stdout", is_flag=True,
              help="Print the markdown instead of writing the journal file.")
@click.option("--host", "host", metavar="HOST",
              help="The digest of this host (default: AEGIS_DIGEST_SCOPE's).")
@click.option("--fleet", is_flag=True, help="The digest of every host.")
@click.pass_context
def digest_command(ctx: click.Context, day_text: str | None, to_stdout: bool,
                   host: str | None, fleet: bool) -> None:
    """Write (or print) a day's digest from the database alone."""
    settings = settings_of(ctx)
    if host is not None and fleet:
        raise UsageError("--host and --fleet cannot be used together")
    today = local_day(utcnow(), settings.zone)
    day = parse_day(day_text, today=today) if day_text is not None else today
    covered = None if fleet else host or scope_host(settings)
    with api.connect(settings) as app:
        text = render_day(collect_day(app, day, covered))
    if to_stdout:
        click.echo(text, nl=False)
        return
    try:
        path = write_day(settings.journal_dir, day, text)
    except OSError as exc:
        fail(f"cannot write the journal file in {settings.journal_dir}: "
             f"{exc.strerror or exc}")
    click.echo(str(path))


COMMANDS = (events, digest_command)
