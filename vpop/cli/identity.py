"""Who may act: ``vpop user`` (NOC users with a role and a password read from a file, never
from the command line), ``vpop token`` (API bearer tokens, shown once and stored hashed) and
``vpop portal-link`` (a signed link that lets a subscriber choose an ISP from anywhere).

Every change is written to the audit log under ``cli:<login>``. Errors are one line; bad
input (an unknown user, token or subscriber, a short password) exits 2.
"""

from __future__ import annotations

from typing import IO, Any

import click

from vpop.cli.common import (
    OneLineCommand,
    OneLineGroup,
    bad_input,
    cli_actor,
    echo_views,
    reported_errors,
)


def _read_password(password_file: IO[str] | None) -> str:
    """The first line of ``password_file``, else a hidden prompt typed twice."""
    if password_file is None:
        password: str = click.prompt("password", hide_input=True, confirmation_prompt=True)
        return password
    return password_file.readline().rstrip("\n")


def _password_file_option(command: Any) -> Any:
    return click.option(
        "--password-file",
        type=click.File("r"),
        help="Read the password from this file ('-' for standard input); else prompt.",
    )(command)


@click.group(cls=OneLineGroup)
def user() -> None:
    """NOC users (sign in to /noc)."""


@user.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["noc", "admin"]))
@_password_file_option
def user_create(username: str, role: str, password_file: IO[str] | None) -> None:
    """Create a NOC user (the password is never taken from the command line)."""
    from vpop.core.db import session_scope
    from vpop.core.migrate import upgrade
    from vpop.identity.service import create_user

    password = _read_password(password_file)
    with reported_errors():
        upgrade()
        with session_scope() as session:
            create_user(session, username, password, role, actor=cli_actor())
    click.echo(f"user {username} ({role}) created")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def user_list(as_json: bool) -> None:
    """List NOC users: name, role, created, disabled (never a password hash)."""
    from vpop.core.db import session_scope
    from vpop.identity.service import list_users, user_view

    with reported_errors(), session_scope() as session:
        views = [user_view(found) for found in list_users(session)]
    echo_views(
        views,
        as_json=as_json,
        empty="no users; create one with `vpop user create NAME --role admin`",
        line=lambda view: (
            f"{view['username']:20} {view['role']:6} created {view['created']}  "
            + (f"disabled {view['disabled']}" if view["disabled"] else "enabled")
        ),
    )


@user.command("disable")
@click.argument("username")
def user_disable(username: str) -> None:
    """Disable USERNAME: no sign-in, and their open sessions end at once."""
    from vpop.core.db import session_scope
    from vpop.identity.service import disable_user

    with reported_errors(), session_scope() as session:
        disable_user(session, username, actor=cli_actor())
    click.echo(f"user {username} disabled; their sessions have ended")


@user.command("enable")
@click.argument("username")
def user_enable(username: str) -> None:
    """Let USERNAME sign in again."""
    from vpop.core.db import session_scope
    from vpop.identity.service import enable_user

    with reported_errors(), session_scope() as session:
        enable_user(session, username, actor=cli_actor())
    click.echo(f"user {username} enabled")


@user.command("reset-password")
@click.argument("username")
@_password_file_option
def user_reset_password(username: str, password_file: IO[str] | None) -> None:
    """Give USERNAME a new password; their open sessions end."""
    from vpop.core.db import session_scope
    from vpop.identity.service import get_user, reset_password

    with reported_errors(), session_scope() as session:
        get_user(session, username)  # an unknown name is refused before the prompt
    password = _read_password(password_file)
    with reported_errors(), session_scope() as session:
        reset_password(session, username, password, actor=cli_actor())
    click.echo(f"password of {username} reset; their sessions have ended")


@click.command("portal-link", cls=OneLineCommand)
@click.argument("subscriber")
@click.option(
    "--base-url",
    default=None,
    help="The address subscribers reach the portal at (default: VPOP_PUBLIC_URL).",
)
def portal_link(subscriber: str, base_url: str | None) -> None:
    """Print a signed link (valid 24 h) that lets SUBSCRIBER choose an ISP on the portal."""
    from vpop.catalogue.service import Subscriber
    from vpop.core import validate
    from vpop.core.audit import audit
    from vpop.core.db import session_scope
    from vpop.core.errors import NotFound
    from vpop.core.settings import load_settings
    from vpop.selection.service import make_token

    with reported_errors():
        base = base_url or load_settings().public_url
        if not base.startswith(("http://", "https://")):
            raise bad_input(f"--base-url: {base!r} is not an http(s) URL")
        name = validate.name(subscriber, "subscriber")
        with session_scope() as session:
            if session.get(Subscriber, name) is None:
                raise NotFound(
                    f"unknown subscriber {name!r}; no link made", code="VPOP-404-SUBSCRIBER"
                )
            audit(session, cli_actor(), "portal_link.create", f"subscriber:{name}")
        token_ = make_token(name)
    click.echo(f"{base.rstrip('/')}/?link={token_}")


@click.group(cls=OneLineGroup)
def token() -> None:
    """API bearer tokens."""


@token.command("create")
@click.option(
    "--role", required=True, type=click.Choice(["admin", "noc", "portal", "isp", "merchant"])
)
@click.option("--isp", default=None, help="The ISP an isp token is scoped to.")
@click.option(
    "--merchant",
    default=None,
    help="The merchant (see `vpop payee add`) a merchant token acts for: payments API only.",
)
@click.option("--name", default="api", show_default=True)
def token_create(role: str, isp: str | None, merchant: str | None, name: str) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from vpop.core.db import session_scope
    from vpop.core.migrate import upgrade
    from vpop.identity.service import create_token

    with reported_errors():
        upgrade()
        with session_scope() as session:
            clear = create_token(session, role, isp, name, actor=cli_actor(), merchant=merchant)
    click.echo(clear)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_list(as_json: bool) -> None:
    """List tokens: id, name, role, ISP (and merchant), created, revoked (never the token)."""
    from vpop.core.db import session_scope
    from vpop.identity.service import list_tokens, token_view

    with reported_errors(), session_scope() as session:
        views = [token_view(found) for found in list_tokens(session)]
    echo_views(
        views,
        as_json=as_json,
        empty="no tokens; create one with `vpop token create --role admin`",
        line=lambda view: (
            f"{view['id']:>5} {view['name'][:20]:20} {view['role']:8} {view['isp'] or '-':10} "
            + (f"merchant {view['merchant']}  " if view["merchant"] else "")
            + f"created {view['created']}  "
            + (f"revoked {view['revoked']}" if view["revoked"] else "live")
        ),
    )


@token.command("revoke")
@click.argument("token_id", metavar="ID", type=click.IntRange(1, 2**63 - 1))
def token_revoke(token_id: int) -> None:
    """Revoke token ID (see `vpop token list`): refused from now on."""
    from vpop.core.db import session_scope
    from vpop.identity.service import revoke_token

    with reported_errors(), session_scope() as session:
        revoked = revoke_token(session, token_id, actor=cli_actor())
        name = revoked.name
    click.echo(f"token {token_id} ({name}) revoked")
