"""What every command group of ``vpop`` shares: one-line errors, exit codes, time input.

Errors are one line (``error: <code>: <message>``) with exit code 1 for a failed run and 2
for bad input. Attaching the command groups must cost the other commands nothing, so
heavy modules (the database, the report renderers, the settings) are imported inside the
functions that need them, never here at the top (a test holds this).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import IO, Any, TypeVar

import click

from vpop.core.errors import BadInput, NotFound, VpopError

F = TypeVar("F", bound=Callable[..., Any])


def fail(err: VpopError) -> None:
    """Print ``err`` on one line and exit: 2 for bad input (and unknown objects), else 1."""
    click.echo(f"error: {err.code}: {err.message}", err=True)
    sys.exit(2 if isinstance(err, BadInput | NotFound) else 1)


def cli_actor() -> str:
    """Who runs this command, for audit records: the login behind sudo, else the user."""
    from vpop.core.settings import os_user

    return "cli:" + (os_user() or "root")


# kept equal to vpop.reports.FORMATS by a test (not imported: see the module docstring)
FORMATS = ("csv", "json", "html")


class CommandError(click.ClickException):
    """A failure that is not the caller's, reported on one line: exit code 1."""

    def __init__(self, code: str, message: str) -> None:
        """Build the error.

        Args:
            code: The stable code (``docs/errors.md``).
            message: What went wrong and what to do.
        """
        super().__init__(message)
        self.code = code

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the one line to stderr (or ``file``)."""
        line = f"error: {self.code}: {self.format_message()}"
        if file is None:
            click.echo(line, err=True)
        else:
            click.echo(line, file=file)


class InputError(CommandError):
    """Bad input on the command line, reported on one line: exit code 2."""

    exit_code = 2


def bad_input(message: str, code: str = "VPOP-400") -> InputError:
    """A one-line usage error (exit 2)."""
    return InputError(code, message)


class OneLineCommand(click.Command):
    """A command whose usage errors are one line (and exit 2), not click's usage block."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse as click does; turn a usage error into one line naming the fix."""
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            raise bad_input(f"{err.format_message()} (see `{ctx.command_path} --help`)") from err


class OneLineGroup(click.Group):
    """A group of :class:`OneLineCommand` that names an unknown subcommand on one line."""

    command_class = OneLineCommand

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Find the subcommand; an unknown one is a one-line usage error."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as err:
            raise bad_input(f"{err.format_message()} (see `{ctx.command_path} --help`)") from err


class IsoTime(click.ParamType[datetime, Any]):
    """An ISO 8601 time with a UTC offset, or a date (midnight UTC); yields aware UTC."""

    name = "ISO-8601"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        """Parse ``value`` with :func:`vpop.reports.parse_time`."""
        from vpop.core.time import as_utc, parse_time

        if isinstance(value, datetime):
            return as_utc(value)
        field = param.opts[0] if param is not None and param.opts else "time"
        try:
            return parse_time(value, field)
        except BadInput as err:
            raise bad_input(err.message, err.code) from err


ISO_TIME = IsoTime()


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn vpop's errors into one-line :class:`CommandError` s with the right exit code.

    Errors in what the caller typed (bad value, unknown object, busy uplink) exit 2; a failed
    run, and a configuration this host must fix (``VPOP-CFG``: an unusable or unmigrated
    database), exit 1.

    Raises:
        InputError: for :class:`BadInput`, :class:`NotFound` and ``LeaseConflict``.
        CommandError: for any other :class:`VpopError` and for database trouble.
    """
    from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError

    from vpop.leasing.service import LeaseConflict

    try:
        yield
    except (BadInput, NotFound, LeaseConflict) as err:
        raise InputError(err.code, err.message) from err
    except VpopError as err:
        raise CommandError(err.code, err.message) from err
    except ArgumentError as err:
        raise CommandError(
            "VPOP-CFG",
            f"VPOP_DATABASE_URL is not a database URL vpop can use ({err}); "
            "write e.g. sqlite:////var/lib/vpop/vpop.sqlite or postgresql+psycopg://HOST/DB",
        ) from err
    except (OperationalError, ProgrammingError) as err:
        reason = str(err.orig).splitlines()[0] if err.orig is not None else type(err).__name__
        raise CommandError(
            "VPOP-CFG",
            f"the database is not reachable or not migrated ({reason}); "
            "check VPOP_DATABASE_URL and run `vpop db upgrade`",
        ) from err


def echo_views(
    views: Sequence[Mapping[str, Any]],
    *,
    as_json: bool,
    empty: str,
    line: Callable[[Mapping[str, Any]], str],
) -> None:
    """Print a list command's rows: as JSON (``--json``), one line each, or ``empty`` when
    there are none (saying how to add one)."""
    if as_json:
        click.echo(json.dumps(views, indent=2))
    elif not views:
        click.echo(empty)
    else:
        for view in views:
            click.echo(line(view))
