"""``vpop lab``: the namespace lab (FRR routers, ISPs and subscribers in Linux network
namespaces, reached over real SSH) that the tests, the benchmarks and ``vpop serve --lab`` use.
"""

from __future__ import annotations

import json
import sys

import click

from vpop.cli.common import fail
from vpop.core.errors import VpopError


@click.group()
def lab() -> None:
    """The namespace lab of real FRR routers."""


@lab.command("up")
@click.option("--subscribers", default=4, show_default=True, type=click.IntRange(1, 64))
def lab_up(subscribers: int) -> None:
    """Build the lab (removing an old one first)."""
    from vpop.lab.service import Lab

    try:
        state = Lab().up(subscribers=subscribers)
    except VpopError as err:
        fail(err)
        return
    routers = {n: v["ssh"]["port"] for n, v in state["nodes"].items() if "ssh" in v}
    ports = ", ".join(f"{r} ssh 127.0.0.1:{p}" for r, p in routers.items())
    click.echo(f"lab up in {state['up_seconds']:.2f}s: {len(state['nodes'])} nodes; {ports}")
    try:
        from vpop.lab.service import register_lab
    except ImportError:
        return
    register_lab(state)


@lab.command("down")
def lab_down() -> None:
    """Remove the lab: namespaces, links, processes, files."""
    from vpop.lab.service import Lab

    Lab().down()
    click.echo("lab down")


@lab.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lab_status(as_json: bool) -> None:
    """Show the lab's nodes, namespaces and management ports."""
    from vpop.lab.service import Lab

    status = Lab().status()
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    if not status["nodes"]:
        click.echo(
            "lab is down" + (f" (stray: {status['namespaces']})" if status["namespaces"] else "")
        )
        return
    for name, node in status["nodes"].items():
        ssh = f"  ssh 127.0.0.1:{node['ssh']['port']}" if "ssh" in node else ""
        mark = "up" if node["present"] else "MISSING"
        click.echo(f"{name:8} {node['kind']:10} {node['namespace']:14} {mark}{ssh}")


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def lab_exec(node: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside NODE's namespace: vpop lab exec sub1 -- curl -s http://203.0.113.100/"""
    from vpop.lab.service import Lab

    try:
        code = Lab().exec(node, command)
    except VpopError as err:
        click.echo(f"error: {err.code}: {err.message}", err=True)
        sys.exit(2)
    sys.exit(code)
