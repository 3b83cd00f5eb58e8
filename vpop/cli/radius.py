"""``vpop radius``: FreeRADIUS, run with vpop's own configuration (up, down, status) and its
NAS clients (client add, list, remove)."""

from __future__ import annotations

import click

from vpop.cli.common import OneLineGroup


@click.group(cls=OneLineGroup)
def radius() -> None:
    """FreeRADIUS in front of vpop: run it, and manage its NAS clients."""
