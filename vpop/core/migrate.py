"""Database migrations (Alembic), run by ``vpop db upgrade`` and on ``vpop serve`` start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from vpop.core.settings import load_settings

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at vpop's migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url or load_settings().database_url)
    return cfg


def upgrade(url: str | None = None) -> None:
    """Bring the database to the newest schema."""
    command.upgrade(alembic_config(url), "head")
