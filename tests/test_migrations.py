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


def test_events_that_ended_leases_left_open_are_closed_at_the_lease_end(tmp_path: Path) -> None:
    from datetime import timedelta

    from alembic import command

    from vpop.catalogue.models import Isp
    from vpop.core.db import dispose_engines, session_scope
    from vpop.core.migrate import alembic_config
    from vpop.core.time import utcnow
    from vpop.leasing.models import Lease, UtilisationEvent

    url = f"sqlite:///{tmp_path / 'vpop.sqlite'}"
    command.upgrade(alembic_config(url), "0005")
    start = utcnow() - timedelta(days=2)
    end = start + timedelta(hours=5)
    with session_scope(url) as session:
        session.add(Isp(id="isp-a", name="Alpha"))
        session.flush()
        for status, ends_at in (("ended", end), ("active", None)):
            lease = Lease(
                isp_id="isp-a", router="rc1", uplink="isp-a", committed_mbps=100,
                price_minor=1, starts_at=start, ends_at=ends_at, status=status,
            )  # fmt: skip
            session.add(lease)
            session.flush()
            session.add(
                UtilisationEvent(
                    lease_id=lease.id,
                    isp_id="isp-a",
                    kind="under",
                    opened_at=start + timedelta(hours=1),
                    extreme_pct=3.0,
                )  # fmt: skip
            )
    upgrade(url)
    with session_scope(url) as session:
        closed = {
            event.lease_id: event.closed_at
            for event in session.query(UtilisationEvent).order_by(UtilisationEvent.lease_id)
        }
    dispose_engines()
    assert closed == {1: end, 2: None}
