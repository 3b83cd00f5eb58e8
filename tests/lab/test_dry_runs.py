"""In the lab: the dry runs a round claims for one router are answered together, from one
read of the router, each with its own run and its own diff; orders for the same line and
ISP are rendered once; one that cannot be rendered fails alone; nothing reaches the
router."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.lab.helpers import pbrd_config
from vpop.catalogue.models import Isp
from vpop.core.db import session_scope
from vpop.lab.registry import register_lab
from vpop.network.service import render_router
from vpop.selection import dry_runs, engine
from vpop.selection.models import Order, Run
from vpop.selection.service import Caller, SelectionRequest, submit_selection

pytestmark = pytest.mark.lab


def test_a_routers_dry_runs_share_one_read_and_each_gets_its_own_diff(
    lab: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path / 'vpop.sqlite'}"
    register_lab(lab, db_url)
    # earlier modules may have left other selections: converge rc1 to this database
    assert engine.reconcile("rc1", url=db_url).status == "SUCCESS"
    with session_scope(db_url) as session:  # an ISP no router has an uplink to
        session.add(Isp(id="isp-z", name="Nowhere"))
    lines = [line for line in lab["lines"] if line["router"] == "rc1"]
    assert len(lines) >= 3
    caller = Caller(name="test", role="noc")
    wanted = [
        (lines[0], "isp-b"),
        (lines[1], "isp-c"),
        (lines[2], "isp-z"),
        (lines[0], "isp-b"),  # the first order again: rendered once for both
        (lines[0], "isp-c"),  # the same line for another ISP: a render of its own
    ]
    renders: list[str] = []

    def counted(intent: Any) -> dict[str, str]:
        renders.append(intent["router"])
        return render_router(intent)

    monkeypatch.setattr(dry_runs, "render_router", counted)
    before = pbrd_config("rc1", lab["lab_dir"])
    ids = [
        submit_selection(
            SelectionRequest(subscriber=line["subscriber"], isp=isp, dry_run=True),
            caller,
            None,
            db_url,
        )[0].id
        for line, isp in wanted
    ]

    runs = engine.process_router("rc1", url=db_url)

    assert len(set(runs)) == 5
    assert len(renders) == 3  # (line 0, isp-b), (line 1, isp-c), (line 0, isp-c)
    with session_scope(db_url) as session:
        orders = [session.get(Order, i) for i in ids]
        assert all(o is not None for o in orders)
        ok = [o for o in orders if o is not None and o.status == "DONE_SUCCESS"]
        assert [o.id for o in ok] == ids[:2] + ids[3:], [(o.status, o.error) for o in orders if o]
        for order, (line, isp) in zip(ok, wanted[:2] + wanted[3:], strict=True):
            assert f"+ set nexthop-group vpop-{isp}" in order.diff
            others = {i for _, i in wanted} - {isp}
            assert not any(f"+ set nexthop-group vpop-{o}" in order.diff for o in others)
            assert f"vpop-{line['interface']}" in order.diff
        assert ok[0].diff == ok[2].diff  # the same line and ISP: the same diff
        assert ok[3].diff != ok[0].diff
        failed = orders[2]
        assert failed is not None and failed.status == "DONE_FAILED"
        assert "no uplink to ['isp-z']" in (failed.error or "")
        run_rows = [session.get(Run, o.run_id) for o in orders if o is not None]
        assert sorted(r.id for r in run_rows if r is not None) == sorted(runs)
        assert all(r is not None and r.dry_run and r.kind == "dry_run" for r in run_rows)
        # the rendered orders were diffed against the same read of the router
        device = {r.timings["device"] for r in run_rows if r is not None and "device" in r.timings}
        assert len(device) == 1, device
    assert pbrd_config("rc1", lab["lab_dir"]) == before
