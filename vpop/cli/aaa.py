"""``vpop aaa``: the authentication and ISP routing centre's policy (the rules that choose an
ISP for a line, the decisions taken)."""

from __future__ import annotations

import click

from vpop.cli.common import OneLineGroup


@click.group(cls=OneLineGroup)
def aaa() -> None:
    """The ISP routing centre's policy: rules and decisions."""
