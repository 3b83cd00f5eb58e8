"""The migrations build exactly the schema the models describe, and go down again."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from vpop import models
from vpop.core.migrate import upgrade


def test_the_migrated_schema_is_the_models_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vpop.sqlite'}"
    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, models.metadata)
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert diff == [], "the models and the migrations disagree: add a migration"
    assert {"locks", "orders"} <= tables
