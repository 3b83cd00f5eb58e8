"""Alembic environment: the URL comes from vpop's settings (or the caller's config)."""

from __future__ import annotations

from typing import Any

from alembic import context

from vpop.core.db import UTCDateTime, get_engine
from vpop.models import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url") or None


def render_item(kind: str, obj: Any, autogen_context: Any) -> Any:
    """Render vpop's UTCDateTime as the plain column type it stores."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations() -> None:
    """Run migrations online, on vpop's engine (SQLite gets batch mode for ALTERs)."""
    engine = get_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
