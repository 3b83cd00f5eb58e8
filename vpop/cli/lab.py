"""``vpop lab``: the namespace lab (FRR routers, ISPs and subscribers in Linux network
namespaces, reached over real SSH) that the tests, the benchmarks and ``vpop serve --lab`` use.

``status`` shows each router's sshd and FRR daemons as they really are (PIDs alive, sshd
answering) and exits 1 when a node is not up; ``restore ROUTER`` restarts what is dead;
``shop`` points the ISP hosts' web shops at a payments API (``vpop serve`` does it by itself
while a lab is up).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import click

from vpop.cli.common import CommandError, OneLineGroup, bad_input, cli_actor, reported_errors

SHOP_TOKEN_NAME = "lab shop"


def _need_root(command: str) -> None:
    """Refuse on one line (exit 2) when not root: the lab makes namespaces and links."""
    if os.geteuid() != 0:
        raise bad_input(
            f"`vpop lab {command}` needs root (network namespaces, FRR, sshd); run it with sudo"
        )


@click.group(cls=OneLineGroup)
def lab() -> None:
    """The namespace lab of real FRR routers."""


def _logins(node: dict[str, Any]) -> str:
    """A router's two logins: ``ssh 127.0.0.1:P cli 127.0.0.1:Q``."""
    text = f"ssh 127.0.0.1:{node['ssh']['port']}"
    if "cli" in node:  # a lab built before the CLI login existed has none
        text += f" cli 127.0.0.1:{node['cli']['port']}"
    return text


@lab.command("up")
@click.option("--subscribers", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--routers",
    default=2,
    show_default=True,
    type=click.IntRange(2, 8),
    help="Routers rc1..rcN; every ISP has an uplink on each, subscribers go round-robin.",
)
def lab_up(subscribers: int, routers: int) -> None:
    """Build the lab (removing an old one first)."""
    from vpop.lab.service import Lab, register_lab

    _need_root("up")
    with reported_errors():
        state = Lab().up(subscribers=subscribers, routers=routers)
    ports = ", ".join(f"{n} {_logins(v)}" for n, v in state["nodes"].items() if "ssh" in v)
    click.echo(f"lab up in {state['up_seconds']:.2f}s: {len(state['nodes'])} nodes; {ports}")
    with reported_errors():
        register_lab(state)


@lab.command("down")
def lab_down() -> None:
    """Remove the lab: namespaces, links, processes, files."""
    from vpop.lab.service import Lab

    _need_root("down")
    with reported_errors():
        Lab().down()
    click.echo("lab down")


def _node_line(name: str, node: dict[str, Any]) -> str:
    """One node of ``lab status``: kind, namespace, state, ssh port, processes, problems."""
    ssh = f"  {_logins(node)}" if "ssh" in node else ""
    mark = {"up": "up", "degraded": "DEGRADED", "missing": "MISSING"}[node["state"]]
    line = f"{name:8} {node['kind']:10} {node['namespace']:14} {mark:8}{ssh}"
    processes = node.get("processes")
    if processes:
        shown = []
        for proc_name, proc in processes.items():
            if not proc["alive"]:
                shown.append(f"{proc_name} DEAD")
            elif proc_name == "sshd" and not proc["answers"]:
                shown.append(f"sshd {proc['pid']} NOT ANSWERING")
            else:
                shown.append(f"{proc_name} {proc['pid']}")
        line += "  " + ", ".join(shown)
    return line


@lab.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lab_status(as_json: bool) -> None:
    """Show the lab's nodes, each router's sshd and FRR daemons; exit 1 unless all are up."""
    from vpop.lab.service import Lab

    with reported_errors():
        status = Lab().status()
    if as_json:
        click.echo(json.dumps(status, indent=2))
    elif not status["nodes"]:
        click.echo(
            "lab is down" + (f" (stray: {status['namespaces']})" if status["namespaces"] else "")
        )
    else:
        for name, node in status["nodes"].items():
            click.echo(_node_line(name, node))
    if not status["nodes"]:
        raise CommandError("VPOP-LAB", "no lab is up; run `vpop lab up`")
    bad = {n: v for n, v in status["nodes"].items() if v["state"] != "up"}
    if bad:
        what = "; ".join(
            f"{n} {v['state']}" + (f" ({', '.join(v['problems'])})" if v.get("problems") else "")
            for n, v in bad.items()
        )
        routers = [n for n, v in bad.items() if v["state"] == "degraded"]
        fix = (
            "run " + " and ".join(f"`vpop lab restore {r}`" for r in routers)
            if routers
            else "rebuild it with `vpop lab up`"
        )
        raise CommandError("VPOP-LAB", f"lab not fully up: {what}; {fix}")


@lab.command("restore")
@click.argument("router")
def lab_restore(router: str) -> None:
    """Restart what is dead on ROUTER (sshd, FRR daemons) and bring its management back."""
    from vpop.lab.service import Lab

    _need_root("restore")
    with reported_errors():
        restarted = Lab().restore(router)
    if not restarted:
        click.echo(f"{router} is up: nothing to restore")
        return
    click.echo(f"{router} restored: restarted {', '.join(restarted)}")
    if set(restarted) - {"sshd"}:
        click.echo(
            f"{router}'s FRR daemons started afresh without vpop's selections: "
            f"run `vpop reconcile --router {router}` to push them again"
        )


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def lab_exec(node: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside NODE's namespace: vpop lab exec sub1 -- curl -s http://203.0.113.100/"""
    from vpop.core.errors import VpopError
    from vpop.lab.service import Lab

    try:
        code = Lab().exec(node, command)
    except VpopError as err:
        raise bad_input(err.message, err.code) from err
    sys.exit(code)


def _shop_token(lab_dir: Path, isp: str, actor: str) -> Path:
    """A fresh ISP token for ``isp``'s shop, in ``<lab_dir>/shop/<isp>.token`` (0600).

    The token that file held before (a shop token of the same ISP in this database) is
    revoked, so restarts of ``vpop serve`` do not leave live tokens behind.
    """
    from vpop.core.db import session_scope
    from vpop.identity.service import create_token, lookup_token, revoke_token
    from vpop.lab.service import write_shop_token

    path = lab_dir / "shop" / f"{isp}.token"
    with session_scope() as session:
        try:
            old = lookup_token(session, path.read_text().strip())
        except OSError:
            old = None
        if old is not None and (old.role, old.isp_id, old.name) == ("isp", isp, SHOP_TOKEN_NAME):
            revoke_token(session, old.id, actor=actor)
        token = create_token(session, "isp", isp, name=SHOP_TOKEN_NAME, actor=actor)
        write_shop_token(path, token)  # before the commit: a token nobody holds is never live
    return path


def configure_shops(
    api: str, *, isps: list[str] | None = None, token_file: Path | None = None, actor: str
) -> list[str]:
    """Point the lab ISP hosts' shops at the payments API ``api``.

    Args:
        api: The API's base URL as the hosts reach it (``http://127.0.0.1:8080``).
        isps: The shops to configure; None: every ISP of the lab that is up.
        token_file: A file holding the token to use (0600); None: create an ISP token per
            shop in the database and write it under the lab dir.
        actor: Who configures, for the audit log of created tokens.

    Returns:
        The ISPs whose shop now points at ``api``.

    Raises:
        BadInput: no lab is up and no ISP is named, or a bad API URL.
        NotFound: an ISP is not in the database (when a token is to be created).
    """
    from vpop.core.errors import BadInput
    from vpop.core.settings import load_settings
    from vpop.lab.service import Lab, write_shop_config

    lab = Lab()
    if isps is None:
        state = lab.state()
        if state is None:
            raise BadInput("no lab is up: run `vpop lab up`, or name the shop with --isp")
        isps = [name for name, node in state["nodes"].items() if node["kind"] == "isp"]
    currency = load_settings().billing_currency
    for isp in isps:
        path = token_file or _shop_token(lab.dir, isp, actor)
        try:
            write_shop_config(lab.dir, isp, api=api, token_file=path.resolve(), currency=currency)
        except ValueError as err:
            raise BadInput(str(err)) from err
    return isps


@lab.command("shop")
@click.option("--api", required=True, help="The payments API as the hosts reach it.")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file (mode 0600) holding the ISP token the shop uses; default: a new token each.",
)
@click.option("--isp", "isps", multiple=True, help="Configure this ISP's shop (repeatable).")
def lab_shop(api: str, token_file: Path | None, isps: tuple[str, ...]) -> None:
    """Point the ISP hosts' web shops (http://203.0.113.100/shop/) at a payments API."""
    if token_file is not None:
        try:
            mode = token_file.stat().st_mode
            text = token_file.read_text().strip()
        except OSError as err:
            raise bad_input(f"--token-file {token_file}: {err.strerror}") from err
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise bad_input(f"--token-file {token_file} is readable by others: chmod 600 it")
        if not text:
            raise bad_input(f"--token-file {token_file} is empty: put the shop's ISP token in it")
    with reported_errors():
        done = configure_shops(
            api, isps=list(isps) or None, token_file=token_file, actor=cli_actor()
        )
    for isp in done:
        click.echo(f"{isp}: shop at http://203.0.113.100/shop/ pays through {api}")
