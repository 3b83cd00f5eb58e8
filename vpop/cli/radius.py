"""``vpop radius``: FreeRADIUS, run with vpop's own configuration (up, down, status) and its
NAS clients (client add, list, remove).

``up`` renders ``$VPOP_STATE_DIR/radius`` from ``templates/freeradius``, has FreeRADIUS check
it (``freeradius -C``) and runs it in the background (pid and log files in that directory)
or, with ``--foreground``, in this process (logging to standard output). ``down`` stops it by
its PID. Client changes are audited under ``cli:<login>`` and apply at the next ``up``.

Exit codes: 0 done, 1 a failed run (FreeRADIUS missing, refusing the configuration, not
starting), 2 bad input (a bad name, address, family or secret file; an unknown client).
"""

from __future__ import annotations

import json
import os
from typing import IO

import click

from vpop.cli.common import CommandError, OneLineGroup, cli_actor, echo_views, reported_errors

DEFAULT_VPOP_URL = "http://127.0.0.1:8080"


@click.group(cls=OneLineGroup)
def radius() -> None:
    """FreeRADIUS in front of vpop: run it, and manage its NAS clients."""


@radius.command("up")
@click.option("--foreground", is_flag=True, help="Run in this process, logging to stdout.")
@click.option(
    "--vpop-url",
    default=DEFAULT_VPOP_URL,
    show_default=True,
    help="Where vpop's policy endpoints answer (http:// on loopback).",
)
def radius_up(foreground: bool, vpop_url: str) -> None:
    """Render vpop's FreeRADIUS configuration, check it and run FreeRADIUS."""
    from vpop.aaa.service import RadiusPaths, foreground_argv, prepare, radius_status, start_radius
    from vpop.core.db import session_scope
    from vpop.core.migrate import upgrade

    paths = RadiusPaths.from_settings()
    with reported_errors():
        upgrade()
        with session_scope() as session:
            config_dir = prepare(session, vpop_url=vpop_url, paths=paths)
        if foreground:
            argv = foreground_argv(config_dir)
            paths.pid_file.write_text(f"{os.getpid()}\n")  # exec keeps this PID
            click.echo(f"FreeRADIUS with {config_dir} in the foreground", err=True)
            os.execv(argv[0], argv)
        start_radius(config_dir, paths=paths)
    click.echo(radius_status(paths).describe())


@radius.command("down")
def radius_down() -> None:
    """Stop vpop's FreeRADIUS (by its PID)."""
    from vpop.aaa.service import stop_radius

    with reported_errors():
        pid = stop_radius()
    click.echo(f"stopped FreeRADIUS (pid {pid})" if pid else "FreeRADIUS was not running")


@radius.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def radius_status_cmd(as_json: bool) -> None:
    """Say whether vpop's FreeRADIUS runs, with its PID and ports; exit 1 when stopped."""
    from vpop.aaa.service import radius_status

    status = radius_status()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "running": status.running,
                    "pid": status.pid,
                    "auth_port": status.auth_port,
                    "acct_port": status.acct_port,
                    "log_file": str(status.log_file),
                }
            )
        )
    elif status.running:
        click.echo(status.describe())
    if not status.running:
        raise CommandError("VPOP-RADIUS", f"FreeRADIUS is {status.describe()}; `vpop radius up`")


@radius.group("client", cls=OneLineGroup)
def client() -> None:
    """The NAS clients FreeRADIUS answers (their secrets stay in files, 0600)."""


@client.command("add")
@click.argument("name")
@click.option("--address", required=True, help="The NAS's IP address.")
@click.option(
    "--secret-file",
    required=True,
    type=click.File("r"),
    help="A file holding the shared secret on one line ('-': standard input).",
)
@click.option(
    "--family",
    default="generic",
    show_default=True,
    help="The attribute family of the NAS's replies: accel-ppp, cisco, juniper or generic.",
)
def client_add(name: str, address: str, secret_file: IO[str], family: str) -> None:
    """Add a NAS client; it is answered from the next `vpop radius up`."""
    from vpop.aaa.service import add_radius_client, radius_status
    from vpop.core.db import session_scope
    from vpop.core.migrate import upgrade

    text = secret_file.read(4096)
    with reported_errors():
        upgrade()
        with session_scope() as session:
            add_radius_client(session, name, address, text, family=family, actor=cli_actor())
    restart = " (restart it: vpop radius down && vpop radius up)" if radius_status().running else ""
    click.echo(f"RADIUS client {name} ({address}, {family}) added{restart}")


@client.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def client_list(as_json: bool) -> None:
    """List the NAS clients: name, address, family, created (never a secret)."""
    from vpop.aaa.service import list_radius_clients
    from vpop.core.db import session_scope
    from vpop.core.time import iso

    with reported_errors(), session_scope() as session:
        views = [
            {
                "name": found.name,
                "address": found.address,
                "family": found.family,
                "created": iso(found.created_at),
            }
            for found in list_radius_clients(session)
        ]
    echo_views(
        views,
        as_json=as_json,
        empty="no RADIUS clients; add one with `vpop radius client add NAME --address IP "
        "--secret-file F`",
        line=lambda view: (
            f"{view['name']:20} {view['address']:39} {view['family']:9} {view['created']}"
        ),
    )


@client.command("remove")
@click.argument("name")
def client_remove(name: str) -> None:
    """Remove a NAS client and its secret file."""
    from vpop.aaa.service import remove_radius_client
    from vpop.core.db import session_scope

    with reported_errors(), session_scope() as session:
        remove_radius_client(session, name, actor=cli_actor())
    click.echo(f"RADIUS client {name} removed")
