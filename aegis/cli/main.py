"""The ``aegis`` command. Exit codes: 0 ok, 1 a check failed, 2 bad usage or configuration,
3 migrations pending (``aegis db migrate --check``), 4 a schema too new for this aegis.

Commands are thin: they parse arguments, call the Python API (aegis.api) and print. Each
command group lives in a module of its own in this package; this one gathers them.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from click.exceptions import NoArgsIsHelpError

from aegis.api import load_settings
from aegis.cli import containers, daemon, database, doctor, history, hosts, jobs, notify
from aegis.cli.common import EXIT_FAILED, EXIT_OK, EXIT_SCHEMA_TOO_NEW, EXIT_USAGE, fail
from aegis.core.config import utf8_problem
from aegis.core.errors import (
    AegisError,
    ConfigError,
    DatabaseUnavailable,
    SchemaTooNew,
    UsageError,
)
from aegis.core.logs import configure_logging
from aegis.version import __version__


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
        except SchemaTooNew as exc:
            fail(str(exc), EXIT_SCHEMA_TOO_NEW)
        except AegisError as exc:
            fail(str(exc))


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


for _group in (daemon, jobs, history, containers, hosts, notify, database, doctor):
    for _command in _group.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    for number, arg in enumerate(sys.argv[1:], 1):
        problem = utf8_problem(arg)
        if problem:
            try:  # the bytes as given: caf\xe9
                shown = arg.encode("utf-8", "surrogateescape").decode("utf-8",
                                                                     "backslashreplace")
            except UnicodeEncodeError:
                shown = arg.encode("utf-8", "backslashreplace").decode("utf-8")
            fail(f"argument {number} '{shown}' is not valid UTF-8 ({problem})", EXIT_USAGE)
    # click's own usage errors become one line and exit 2, like aegis's errors
    try:
        code = cli.main(prog_name="aegis", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        fail(exc.format_message().replace("\n", " ") + where, EXIT_USAGE)
    except click.ClickException as exc:
        fail(exc.format_message().replace("\n", " "), exc.exit_code)
    except click.Abort:
        fail("aborted", EXIT_FAILED)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
