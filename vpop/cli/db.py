"""``vpop db``: the database schema (Alembic migrations shipped in :mod:`vpop.migrations`)."""

from __future__ import annotations

import click

from vpop.cli.common import OneLineGroup, reported_errors


@click.group(cls=OneLineGroup)
def db() -> None:
    """The database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database named by VPOP_DATABASE_URL to the newest schema."""
    from vpop.core.migrate import upgrade
    from vpop.core.settings import load_settings

    with reported_errors():
        upgrade()
        url = load_settings().database_url
    click.echo(f"database at newest schema: {url}")
