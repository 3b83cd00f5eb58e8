"""The ``vpop`` command: one module per command group, attached to :func:`main` here.

Exit codes: 0 success, 1 a failed run, 2 bad input (one line that says what to fix);
``docs/cli.md`` lists them per command.
"""

from __future__ import annotations

import click

from vpop.cli.aaa import aaa
from vpop.cli.billing import bill, mandate, payee, payment, settlement
from vpop.cli.common import OneLineGroup
from vpop.cli.db import db
from vpop.cli.identity import portal_link, token, user
from vpop.cli.lab import lab
from vpop.cli.leasing import lease
from vpop.cli.radius import radius
from vpop.cli.reports import report
from vpop.cli.router import router
from vpop.cli.selection import reconcile, runs, select_cmd
from vpop.cli.serve import scheduler, serve, worker


@click.group(cls=OneLineGroup)
def main() -> None:
    """vpop: a virtual point of presence for many ISPs."""


for _command in (
    lab,
    serve,
    worker,
    scheduler,
    db,
    select_cmd,
    runs,
    reconcile,
    user,
    portal_link,
    token,
    lease,
    report,
    radius,
    aaa,
    payee,
    payment,
    settlement,
    bill,
    mandate,
    router,
):
    main.add_command(_command)
