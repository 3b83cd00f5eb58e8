"""The ``vpop`` command.

Exit codes: 0 success, 1 a failed run, 2 bad input (one line that says what to fix).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from vpop.errors import BadInput, VpopError

F = TypeVar("F", bound=Callable[..., Any])


def _fail(err: VpopError) -> None:
    click.echo(f"error: {err.code}: {err.message}", err=True)
    sys.exit(2 if isinstance(err, BadInput) else 1)


@click.group()
def main() -> None:
    """vpop: a virtual point of presence for many ISPs."""


@main.group()
def lab() -> None:
    """The namespace lab of real FRR routers."""


@lab.command("up")
@click.option("--subscribers", default=4, show_default=True, type=click.IntRange(1, 64))
def lab_up(subscribers: int) -> None:
    """Build the lab (removing an old one first)."""
    from vpop.lab import Lab

    try:
        state = Lab().up(subscribers=subscribers)
    except VpopError as err:
        _fail(err)
        return
    routers = {n: v["ssh"]["port"] for n, v in state["nodes"].items() if "ssh" in v}
    ports = ", ".join(f"{r} ssh 127.0.0.1:{p}" for r, p in routers.items())
    click.echo(f"lab up in {state['up_seconds']:.2f}s: {len(state['nodes'])} nodes; {ports}")
    try:
        from vpop.registry import register_lab
    except ImportError:
        return
    register_lab(state)


@lab.command("down")
def lab_down() -> None:
    """Remove the lab: namespaces, links, processes, files."""
    from vpop.lab import Lab

    Lab().down()
    click.echo("lab down")


@lab.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lab_status(as_json: bool) -> None:
    """Show the lab's nodes, namespaces and management ports."""
    from vpop.lab import Lab

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
    from vpop.lab import Lab

    try:
        code = Lab().exec(node, command)
    except VpopError as err:
        click.echo(f"error: {err.code}: {err.message}", err=True)
        sys.exit(2)
    sys.exit(code)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--with-lab", is_flag=True, help="Bring the namespace lab up first.")
def serve(host: str, port: int, with_lab: bool) -> None:
    """Run the API server, the worker and the scheduler in one process."""
    from webhooks import create_app

    if with_lab:
        ctx = click.get_current_context()
        ctx.invoke(lab_up, subscribers=4)
    app = create_app()
    app.run(host=host, port=port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
