"""Who may act: ``vpop user`` (NOC users with a role and a password read from a file, never
from the command line), ``vpop token`` (API bearer tokens, shown once and stored hashed) and
``vpop portal-link`` (a signed link that lets a subscriber choose an ISP from anywhere).
"""

from __future__ import annotations

from typing import Any

import click

from vpop.cli.common import cli_actor, fail
from vpop.core.errors import VpopError


@click.group()
def user() -> None:
    """NOC users (sign in to /noc)."""


@user.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["noc", "admin"]))
@click.option(
    "--password-file",
    type=click.File("r"),
    help="Read the password from this file ('-' for standard input); else prompt.",
)
def user_create(username: str, role: str, password_file: Any) -> None:
    """Create a NOC user (the password is never taken from the command line)."""
    from vpop.core.db import session_scope
    from vpop.core.migrate import upgrade
    from vpop.identity.service import create_user

    if password_file is not None:
        password = password_file.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    upgrade()
    try:
        with session_scope() as session:
            create_user(session, username, password, role, actor=cli_actor())
    except VpopError as err:
        fail(err)
        return
    click.echo(f"user {username} ({role}) created")


@click.command("portal-link")
@click.argument("subscriber")
@click.option("--base-url", default="http://127.0.0.1:8080", show_default=True)
def portal_link(subscriber: str, base_url: str) -> None:
    """Print a signed link (valid 24 h) that lets SUBSCRIBER choose an ISP on the portal."""
    from vpop.selection.service import make_token

    try:
        token_ = make_token(subscriber)
    except VpopError as err:
        fail(err)
        return
    click.echo(f"{base_url.rstrip('/')}/?link={token_}")


@click.group()
def token() -> None:
    """API bearer tokens."""


@token.command("create")
@click.option("--role", required=True, type=click.Choice(["admin", "noc", "portal", "isp"]))
@click.option("--isp", default=None, help="The ISP an isp token is scoped to.")
@click.option("--name", default="api", show_default=True)
def token_create(role: str, isp: str | None, name: str) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from vpop.core.db import session_scope
    from vpop.core.migrate import upgrade
    from vpop.identity.service import create_token

    upgrade()
    try:
        with session_scope() as session:
            clear = create_token(session, role, isp, name, actor=cli_actor())
    except VpopError as err:
        fail(err)
        return
    click.echo(clear)
