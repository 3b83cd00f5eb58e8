"""Alembic environment: the URL comes from vpop's settings (or the caller's config)."""

from __future__ import annotations

from alembic import context

from vpop.db import Base, get_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or None


def run_migrations() -> None:
    """Run migrations online, on vpop's engine (SQLite gets batch mode for ALTERs)."""
    engine = get_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
