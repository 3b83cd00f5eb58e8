"""The lease lifecycle without a lab: a future start, the enforced end, versions of the terms.

A migrated SQLite file and a Nornir hosts file; the queue is never opened: what the wiring
would queue is read off the ``lease_changed`` signal (the API, the domain) or the CLI's
enqueuer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.webhooks.helpers import bearer
from vpop.catalogue.models import Isp
from vpop.cli import leasing as cli_leasing
from vpop.cli.leasing import lease
from vpop.core.audit import AuditEntry
from vpop.core.db import dispose_engines, session_scope
from vpop.core.errors import BadInput, NotFound
from vpop.core.migrate import upgrade
from vpop.core.time import as_utc, utcnow
from vpop.identity.tokens import create_token
from vpop.jobs.queue import monitor_task
from vpop.jobs.scheduler import Monitor
from vpop.leasing import service as leasing
from vpop.leasing.service import Lease, LeaseVersion, UtilisationEvent, lease_changed
from vpop.monitoring.service import MonitorSettings
from webhooks import create_app

HOSTS_YAML = """\
rc1:
  hostname: 127.0.0.1
  groups: [frr, lab]
  data:
    uplinks:
      isp-a: {interface: isp-a, address: 198.51.100.1/30, next_hop: 198.51.100.2}
      isp-b: {interface: isp-b, address: 198.51.100.9/30, next_hop: 198.51.100.10}
"""


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """VPOP_DATABASE_URL: a migrated SQLite file with isp-a and isp-b; an inventory of rc1."""
    database = f"sqlite:///{tmp_path}/lifecycle.sqlite"
    monkeypatch.setenv("VPOP_DATABASE_URL", database)
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(HOSTS_YAML)
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", str(hosts))
    monkeypatch.setenv("VPOP_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.setenv("USER", "tester")
    monkeypatch.delenv("SUDO_USER", raising=False)
    upgrade(database)
    with session_scope(database) as session:
        session.add_all([Isp(id="isp-a", name="Alpha Net"), Isp(id="isp-b", name="Beta Fibre")])
    try:
        yield database
    finally:
        dispose_engines()


@pytest.fixture
def changes() -> Iterator[list[int]]:
    """Lease ids announced by ``lease_changed`` (what the wiring queues), in order."""
    seen: list[int] = []
    with lease_changed.connected_to(seen.append):
        yield seen


def create(url: str, **kwargs: Any) -> Lease:
    """A lease of isp-b's uplink on rc1 at 100 Mbit/s for 5000 minor units."""
    terms: dict[str, Any] = {"committed_mbps": 100, "price_minor": 5000, **kwargs}
    return leasing.create_lease(isp="isp-b", router="rc1", actor="tester", url=url, **terms)


def read(url: str, lease_id: int) -> Lease:
    with session_scope(url) as session:
        row = session.get(Lease, lease_id)
        assert row is not None
        return row


def versions(url: str, lease_id: int) -> list[LeaseVersion]:
    with session_scope(url) as session:
        return list(
            session.scalars(
                select(LeaseVersion)
                .where(LeaseVersion.lease_id == lease_id)
                .order_by(LeaseVersion.version)
            )
        )


def audited(url: str, action: str) -> list[AuditEntry]:
    with session_scope(url) as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def set_active(url: str, lease_id: int, **values: Any) -> None:
    """What the worker would have done: shaped, ``active`` (plus any column in ``values``)."""
    with session_scope(url) as session:
        row = session.get(Lease, lease_id)
        assert row is not None
        row.status = "active"
        for name, value in values.items():
            setattr(row, name, value)


# -- a future start ---------------------------------------------------------------------------


def test_a_lease_that_starts_later_is_scheduled_and_not_queued(
    url: str, changes: list[int]
) -> None:
    start = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    created = create(url, starts_at=start, ends_at=start + timedelta(days=30))
    assert read(url, created.id).status == "scheduled"
    assert changes == []
    (first,) = versions(url, created.id)
    assert (first.version, first.reason, first.actor) == (1, "create", "tester")
    assert as_utc(first.valid_from) == start and first.valid_to is None
    assert (first.committed_mbps, first.price_minor) == (100, 5000)
    # it is not shaped: provisioning it does nothing (and needs no router)
    assert leasing.provision(created.id, url=url) == "scheduled"
    # but it holds the uplink
    with pytest.raises(leasing.LeaseConflict):
        create(url)


def test_a_lease_that_starts_now_or_lately_is_provisioned_at_once(
    url: str, changes: list[int]
) -> None:
    lately = utcnow() - timedelta(hours=3)
    created = create(url, starts_at=lately)
    assert read(url, created.id).status == "provisioning"
    assert as_utc(read(url, created.id).starts_at) == lately
    assert changes == [created.id]
    assert as_utc(versions(url, created.id)[0].valid_from) == lately


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (timedelta(days=-2), None, "starts_at may be at most 1 day in the past"),
        (None, timedelta(minutes=-1), "ends_at must be in the future"),
        (timedelta(hours=2), timedelta(hours=1), "ends_at must be after starts_at"),
    ],
    ids=["start-two-days-ago", "end-passed", "end-before-start"],
)
def test_a_bad_start_or_end_writes_nothing(
    url: str,
    changes: list[int],
    start: timedelta | None,
    end: timedelta | None,
    message: str,
) -> None:
    now = utcnow()
    with pytest.raises(BadInput) as err:
        create(
            url,
            starts_at=None if start is None else now + start,
            ends_at=None if end is None else now + end,
        )
    assert err.value.message == message
    with session_scope(url) as session:
        assert session.scalars(select(Lease)).first() is None
        assert session.scalars(select(LeaseVersion)).first() is None
    assert changes == []


# -- the schedule -----------------------------------------------------------------------------


def test_enforce_starts_a_scheduled_lease_once_its_start_has_come(
    url: str, changes: list[int]
) -> None:
    start = utcnow() + timedelta(minutes=10)
    created = create(url, starts_at=start)
    assert leasing.enforce_schedule(url, now=start - timedelta(seconds=1)) == {
        "started": [],
        "ended": [],
    }
    assert read(url, created.id).status == "scheduled" and changes == []
    assert leasing.enforce_schedule(url, now=start) == {"started": [created.id], "ended": []}
    assert read(url, created.id).status == "provisioning"
    assert changes == [created.id]
    # again: nothing more, nothing queued twice
    assert leasing.enforce_schedule(url, now=start + timedelta(minutes=1)) == {
        "started": [],
        "ended": [],
    }
    assert changes == [created.id]
    (entry,) = audited(url, "lease.start")
    assert (entry.actor, entry.object) == ("schedule", f"lease:{created.id}")


def test_enforce_ends_a_lease_past_its_end_and_closes_its_events(
    url: str, changes: list[int]
) -> None:
    created = create(url, ends_at=utcnow() + timedelta(hours=1))
    end = utcnow() - timedelta(minutes=5)
    set_active(url, created.id, ends_at=end)
    with session_scope(url) as session:
        session.add(
            UtilisationEvent(
                lease_id=created.id,
                isp_id="isp-b",
                kind="under",
                opened_at=end - timedelta(minutes=20),
                extreme_pct=3.0,
            )
        )
    changes.clear()
    assert leasing.enforce_schedule(url) == {"started": [], "ended": [created.id]}
    ended = read(url, created.id)
    assert ended.status == "ending"  # the queue unshapes it, then marks it ended
    assert changes == [created.id]
    with session_scope(url) as session:
        (event,) = session.scalars(select(UtilisationEvent))
        assert event.closed_at is not None and as_utc(event.closed_at) == end
    assert leasing.enforce_schedule(url) == {"started": [], "ended": []}
    assert changes == [created.id]
    (entry,) = audited(url, "lease.end")
    assert entry.actor == "schedule" and entry.details["events_closed"] == 1


def test_a_lease_not_yet_due_to_end_is_left_alone(url: str, changes: list[int]) -> None:
    created = create(url, ends_at=utcnow() + timedelta(hours=1))
    set_active(url, created.id)
    assert leasing.enforce_schedule(url) == {"started": [], "ended": []}
    assert read(url, created.id).status == "active"


def test_a_scheduled_lease_whose_end_passed_ends_without_being_shaped(
    url: str, changes: list[int]
) -> None:
    start = utcnow() + timedelta(minutes=10)
    created = create(url, starts_at=start, ends_at=start + timedelta(minutes=5))
    later = start + timedelta(minutes=6)  # the scheduler was down through the whole lease
    assert leasing.enforce_schedule(url, now=later) == {"started": [], "ended": [created.id]}
    ended = read(url, created.id)
    assert ended.status == "ended" and ended.ended_at is not None
    assert changes == []  # nothing was shaped, nothing to unshape


def test_the_queue_job_leases_runs_the_schedule(url: str, changes: list[int]) -> None:
    created = create(url, starts_at=utcnow() + timedelta(seconds=30))
    set_active(url, created.id, starts_at=utcnow() - timedelta(seconds=1), status="scheduled")
    result = monitor_task.call_local("leases", None)
    assert result == {"started": [created.id], "ended": []}
    with pytest.raises(ValueError, match="unknown monitoring job"):
        monitor_task.call_local("renewals", None)


def test_the_monitor_enqueues_the_lease_check_at_its_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VPOP_LEASE_CHECK_SECONDS", "7.5")
    quiet = MonitorSettings(counters_seconds=0, probes_seconds=0, prune_seconds=0)
    assert Monitor(lambda job, router: None, quiet).lease_seconds == 7.5
    seen: list[tuple[str, str | None]] = []
    lock = threading.Lock()

    def record(job: str, router: str | None) -> None:
        with lock:
            seen.append((job, router))

    monitor = Monitor(record, quiet, lease_seconds=0.3)
    monitor.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with lock:
                if len(seen) >= 3:
                    break
            monitor.stop_event.wait(0.05)
    finally:
        monitor.stop_event.set()
        monitor.join(timeout=5)
    assert len(seen) >= 3 and set(seen) == {("leases", None)}


# -- versions ---------------------------------------------------------------------------------


def test_changes_and_renewals_chain_versions_without_gaps(url: str, changes: list[int]) -> None:
    created = create(url, ends_at=utcnow() + timedelta(days=30))
    set_active(url, created.id)
    changes.clear()
    before_change = utcnow()
    changed = leasing.change_lease(created.id, actor="noc-ann", committed_mbps=200)
    assert (changed.committed_mbps, changed.status) == (200, "provisioning")
    assert changes == [created.id]  # reshaped at the new rate
    set_active(url, created.id)
    renewed_to = (utcnow() + timedelta(days=60)).replace(microsecond=0)
    leasing.change_lease(created.id, actor="noc-bob", ends_at=renewed_to, url=url)
    leasing.change_lease(created.id, actor="noc-bob", price_minor=7000, url=url)
    assert changes == [created.id]  # a renewal or a new price is not reshaped
    assert read(url, created.id).status == "active"

    rows = versions(url, created.id)
    assert [(r.version, r.reason, r.actor) for r in rows] == [
        (1, "create", "tester"),
        (2, "change", "noc-ann"),
        (3, "renew", "noc-bob"),
        (4, "change", "noc-bob"),
    ]
    for previous, following in zip(rows, rows[1:], strict=False):
        assert previous.valid_to is not None
        assert as_utc(previous.valid_to) == as_utc(following.valid_from)
        assert as_utc(previous.valid_from) <= as_utc(previous.valid_to)
    assert rows[-1].valid_to is None
    assert [(r.committed_mbps, r.price_minor) for r in rows] == [
        (100, 5000),
        (200, 5000),
        (200, 5000),
        (200, 7000),
    ]
    assert rows[2].ends_at is not None and as_utc(rows[2].ends_at) == renewed_to
    row = read(url, created.id)
    assert (row.committed_mbps, row.price_minor, as_utc(row.ends_at or utcnow())) == (
        200,
        7000,
        renewed_to,
    )
    assert [e.details["version"] for e in audited(url, "lease.change")] == [2, 4]
    assert audited(url, "lease.renew")[0].details["ends_at"]["to"] == renewed_to.isoformat()

    # a past window reads the terms in force then
    with session_scope(url) as session:
        past = leasing.versions_between(
            session, [created.id], before_change - timedelta(hours=1), before_change
        )
        assert [(v.version, v.committed_mbps) for v in past] == [(1, 100)]
        everything = leasing.versions_between(
            session, [created.id], before_change - timedelta(hours=1), utcnow()
        )
        assert [v.version for v in everything] == [1, 2, 3, 4]
        assert leasing.versions_between(session, [], before_change, utcnow()) == []

    views = leasing.list_versions(created.id, url=url)
    assert [v["version"] for v in views] == [1, 2, 3, 4]
    assert set(views[0]) == {
        "lease",
        "version",
        "valid_from",
        "valid_to",
        "committed_mbps",
        "peak_pct",
        "price_minor",
        "currency",
        "ends_at",
        "reason",
        "actor",
        "created_at",
    }
    assert views[0]["valid_to"] == views[1]["valid_from"] and views[-1]["valid_to"] is None


def test_a_change_before_the_start_takes_force_at_the_start(url: str, changes: list[int]) -> None:
    start = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    created = create(url, starts_at=start)
    changed = leasing.change_lease(created.id, actor="noc", peak_pct=150, url=url)
    assert changed.status == "scheduled" and changes == []  # shaped when it starts
    first, second = versions(url, created.id)
    assert as_utc(first.valid_from) == as_utc(first.valid_to or start) == start
    assert as_utc(second.valid_from) == start
    with session_scope(url) as session:
        in_force = leasing.versions_between(
            session, [created.id], start - timedelta(days=1), start + timedelta(days=1)
        )
        assert [(v.version, v.peak_pct) for v in in_force] == [(2, 150)]


def test_a_lease_without_versions_gets_its_first_on_its_first_change(url: str) -> None:
    """A row written by hand (or by an old release after the migration) has no version."""
    with session_scope(url) as session:
        row = Lease(
            isp_id="isp-a",
            router="rc1",
            uplink="isp-a",
            committed_mbps=50,
            price_minor=10,
            status="active",
            starts_at=utcnow() - timedelta(days=3),
        )
        session.add(row)
        session.flush()
        lease_id = row.id
    leasing.change_lease(lease_id, actor="noc", price_minor=20, url=url)
    first, second = versions(url, lease_id)
    assert (first.version, first.price_minor, first.actor) == (1, 10, "migration")
    assert (second.version, second.price_minor) == (2, 20)
    assert as_utc(first.valid_to or utcnow()) == as_utc(second.valid_from)


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        ({}, "VPOP-400-NO-CHANGE", "nothing to change"),
        ({"committed_mbps": 100, "price_minor": 5000}, "VPOP-400-NO-CHANGE", "lease 1 already"),
        ({"committed_mbps": 0}, "VPOP-400", "committed_mbps: must be a whole number"),
        ({"peak_pct": 99}, "VPOP-400", "peak_pct: must be a whole number"),
        ({"ends_at": datetime(2001, 1, 1).astimezone()}, "VPOP-400", "ends_at must be in"),
    ],
    ids=["nothing", "same-terms", "zero-rate", "peak-below-100", "end-passed"],
)
def test_a_bad_change_writes_nothing(
    url: str, kwargs: dict[str, Any], code: str, message: str
) -> None:
    created = create(url)
    with pytest.raises(BadInput) as err:
        leasing.change_lease(created.id, actor="noc", url=url, **kwargs)
    assert err.value.code == code and err.value.message.startswith(message), err.value.message
    assert len(versions(url, created.id)) == 1
    assert read(url, created.id).committed_mbps == 100


def test_an_ended_or_unknown_lease_cannot_change(url: str) -> None:
    created = create(url)
    leasing.end_lease(created.id, "noc", url=url)
    with pytest.raises(BadInput) as err:
        leasing.change_lease(created.id, actor="noc", price_minor=1, url=url)
    assert err.value.code == "VPOP-400-LEASE-ENDED"
    with pytest.raises(NotFound) as missing:
        leasing.change_lease(999, actor="noc", price_minor=1, url=url)
    assert missing.value.code == "VPOP-404-LEASE"
    with pytest.raises(NotFound):
        leasing.list_versions(999, url=url)


def test_ending_a_scheduled_lease_ends_it_at_once(url: str, changes: list[int]) -> None:
    created = create(url, starts_at=utcnow() + timedelta(days=1))
    assert leasing.end_lease(created.id, "noc", url=url).status == "ended"
    assert changes == []
    create(url)  # the uplink is free again


# -- the API ----------------------------------------------------------------------------------


@pytest.fixture
def client(url: str) -> FlaskClient:
    return create_app({"TESTING": True, "DATABASE_URL": url}).test_client()


@pytest.fixture
def headers(url: str) -> dict[str, dict[str, str]]:
    with session_scope(url) as session:
        return {
            role: bearer(create_token(session, "isp" if "-" in role else role, isp, name=role))
            for role, isp in (("noc", None), ("isp-a", "isp-a"), ("isp-b", "isp-b"))
        }


BODY = {"isp": "isp-b", "router": "rc1", "committed_mbps": 100, "price_minor": 5000}


def problem(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == code, body
    detail: str = body["detail"]
    return detail


def test_the_api_schedules_changes_and_lists_versions(
    client: FlaskClient, headers: dict[str, dict[str, str]], changes: list[int]
) -> None:
    start = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    created = client.post(
        "/api/v1/leases", json={**BODY, "starts_at": start.isoformat()}, headers=headers["noc"]
    )
    assert created.status_code == 201, created.get_json()
    view = created.get_json()
    assert view["status"] == "scheduled" and view["starts_at"] == start.isoformat()
    assert changes == []
    path = f"/api/v1/leases/{view['lease']}/versions"
    changed = client.post(path, json={"price_minor": 6000}, headers=headers["noc"])
    assert changed.status_code == 201, changed.get_json()
    assert changed.headers["Location"] == path
    assert (changed.get_json()["version"], changed.get_json()["price_minor"]) == (2, 6000)
    listed = client.get(path, headers=headers["isp-b"])
    assert listed.status_code == 200
    assert [(v["version"], v["price_minor"]) for v in listed.get_json()["versions"]] == [
        (1, 5000),
        (2, 6000),
    ]
    problem(client.get(path, headers=headers["isp-a"]), 404, "VPOP-404-LEASE")
    problem(client.post(path, json={"price_minor": 1}, headers=headers["isp-b"]), 403, "VPOP-403")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "VPOP-400-NO-CHANGE"),
        ({"committed_mbps": "200"}, "VPOP-400-TYPE"),
        ({"committed_mbps": 0}, "VPOP-400"),
        ({"colour": "red"}, "VPOP-400-UNKNOWN-FIELD"),
        ({"ends_at": "next week"}, "VPOP-400-TIME"),
        ({"ends_at": "2001-01-01T00:00:00Z"}, "VPOP-400"),
    ],
    ids=["empty", "string-number", "zero-rate", "unknown-field", "not-a-time", "end-passed"],
)
def test_a_bad_change_request_is_a_problem(
    url: str,
    client: FlaskClient,
    headers: dict[str, dict[str, str]],
    body: dict[str, Any],
    code: str,
) -> None:
    created = create(url)
    path = f"/api/v1/leases/{created.id}/versions"
    problem(client.post(path, json=body, headers=headers["noc"]), 422, code)
    assert len(versions(url, created.id)) == 1


def test_a_start_two_days_ago_is_refused_by_the_api(
    client: FlaskClient, headers: dict[str, dict[str, str]]
) -> None:
    start = (utcnow() - timedelta(days=2)).isoformat()
    detail = problem(
        client.post("/api/v1/leases", json={**BODY, "starts_at": start}, headers=headers["noc"]),
        422,
        "VPOP-400",
    )
    assert "starts_at" in detail
    problem(client.get("/api/v1/leases/77/versions", headers=headers["noc"]), 404, "VPOP-404-LEASE")


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Lease ids the commands queue (the real queue is never opened)."""
    seen: list[int] = []
    monkeypatch.setattr(cli_leasing, "lease_enqueuer", lambda: seen.append)
    return seen


def run(command: click.Command, args: list[str]) -> Result:
    return CliRunner().invoke(command, args, catch_exceptions=False)


def one_error_line(result: Result, code: str) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {code}: "), line
    return line


CREATE = ["create", "--isp", "isp-b", "--router", "rc1", "--committed-mbps", "100"]
CREATE += ["--price-minor", "5000"]


def test_the_cli_schedules_changes_and_lists_versions(url: str, queued: list[int]) -> None:
    start = (utcnow() + timedelta(hours=1)).replace(microsecond=0).isoformat()
    created = run(lease, [*CREATE, "--starts-at", start])
    assert created.exit_code == 0, created.stderr
    assert "scheduled" in created.stdout and queued == []
    ended = run(lease, ["end", "1"])
    assert ended.exit_code == 0 and "ended" in ended.stdout
    assert queued == []  # never shaped: nothing to remove
    assert run(lease, CREATE).exit_code == 0 and queued == [2]
    queued.clear()
    set_active(url, 2)
    changed = run(lease, ["change", "2", "--committed-mbps", "200", "--peak-pct", "150"])
    assert changed.exit_code == 0, changed.stderr
    assert changed.stdout.startswith("lease 2 v2 (change by cli:tester): 200 Mbit/s (peak 150%)")
    assert queued == [2]  # reshaped
    renewed = run(lease, ["change", "2", "--ends-at", "2099-01-01"])
    assert renewed.exit_code == 0 and "v3 (renew by cli:tester)" in renewed.stdout
    assert queued == [2]
    listed = run(lease, ["versions", "2"])
    assert listed.exit_code == 0
    assert [line.split("): ")[0] for line in listed.stdout.splitlines()] == [
        "lease 2 v1 (create by cli:tester",
        "lease 2 v2 (change by cli:tester",
        "lease 2 v3 (renew by cli:tester",
    ]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["change", "1"], "VPOP-400-NO-CHANGE"),
        (["change", "1", "--committed-mbps", "0"], "VPOP-400"),
        (["change", "1", "--ends-at", "2001-01-01"], "VPOP-400"),
        (["change", "1", "--ends-at", "soon"], "VPOP-400-TIME"),
        (["change", "9", "--price-minor", "1"], "VPOP-404-LEASE"),
        (["versions", "9"], "VPOP-404-LEASE"),
        ([*CREATE, "--starts-at", "2001-01-01"], "VPOP-400"),
    ],
    ids=["nothing", "zero-rate", "end-passed", "end-not-iso", "unknown", "versions", "old-start"],
)
def test_bad_cli_input_exits_2_with_one_line(
    url: str, queued: list[int], args: list[str], code: str
) -> None:
    assert run(lease, CREATE).exit_code == 0
    one_error_line(run(lease, args), code)
    assert len(versions(url, 1)) == 1


# -- PostgreSQL -------------------------------------------------------------------------------


def test_the_schedule_and_versions_on_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: list[int]
) -> None:
    """The same start, change, end and past-window read on a real PostgreSQL (its
    timestamps are compared with a time zone, SQLite's as text)."""
    from tests.pg import postgres_cluster

    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(HOSTS_YAML)
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", str(hosts))
    monkeypatch.setenv("VPOP_LAB_DIR", str(tmp_path / "lab"))
    with postgres_cluster("lease") as pg:
        upgrade(pg)
        with session_scope(pg) as session:
            session.add(Isp(id="isp-b", name="Beta Fibre"))
        start = (utcnow() + timedelta(minutes=5)).replace(microsecond=0)
        created = create(pg, starts_at=start, ends_at=start + timedelta(hours=1))
        assert leasing.enforce_schedule(pg, now=start - timedelta(seconds=1))["started"] == []
        assert leasing.enforce_schedule(pg, now=start)["started"] == [created.id]
        assert changes == [created.id]
        set_active(pg, created.id)
        # changed now, before its start (the schedule ran early above): in force at the start
        leasing.change_lease(created.id, actor="noc", committed_mbps=300, url=pg)
        with session_scope(pg) as session:
            window = leasing.versions_between(
                session, [created.id], start - timedelta(hours=1), start + timedelta(seconds=1)
            )
            assert [(v.version, v.committed_mbps) for v in window] == [(2, 300)]
            assert leasing.versions_between(session, [created.id], utcnow(), start) == []
        rows = versions(pg, created.id)
        assert as_utc(rows[0].valid_to or utcnow()) == as_utc(rows[1].valid_from) == start
        set_active(pg, created.id)
        after_end = start + timedelta(hours=1, seconds=1)
        assert leasing.enforce_schedule(pg, now=after_end)["ended"] == [created.id]
        assert read(pg, created.id).status == "ending"
