"""The monitoring side of the API: live QoS, QoS samples, leases, utilisation, events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from tests.webhooks.helpers import SECRETS, assert_problem, bearer, sign_headers
from vpop.catalogue.models import Isp
from vpop.core.audit import AuditEntry
from vpop.core.db import get_engine, session_scope
from vpop.core.time import utcnow
from vpop.leasing.models import Lease, UtilisationEvent, UtilisationSample
from vpop.leasing.service import LEASE_REQUIRED, LeaseRequest, lease_changed
from vpop.monitoring.models import QosSample
from webhooks import create_app
from webhooks.api import openapi


@pytest.fixture
def lease_changes() -> Iterator[list[int]]:
    """Lease ids announced by ``lease_changed`` (what the wiring queues), in order."""
    seen: list[int] = []
    with lease_changed.connected_to(seen.append):
        yield seen


@pytest.fixture
def app(database_url: str, enqueued: list[str], lease_changes: list[int]) -> Flask:
    """The app; the fixtures record its signals (the queue is never opened)."""
    return create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "WEBHOOK_SECRETS": ",".join(SECRETS),
        }
    )


@pytest.fixture
def now() -> datetime:
    """The time the test's rows are dated against."""
    return utcnow()


def add_qos(url: str, isp: str, router: str, at: datetime, **figures: float | None) -> None:
    """Insert one QoS sample."""
    with session_scope(url) as session:
        session.add(QosSample(isp_id=isp, router=router, at=at, **figures))


@pytest.fixture
def leases(database_url: str, now: datetime) -> list[int]:
    """Lease 1: isp-a on rc1 (100 Mbit/s); lease 2: isp-b on rc2 (200 Mbit/s)."""
    with session_scope(database_url) as session:
        rows = [
            Lease(
                isp_id="isp-a",
                router="rc1",
                uplink="isp-a",
                committed_mbps=100,
                price_minor=10_000,
                status="active",
                starts_at=now - timedelta(days=30),
            ),
            Lease(
                isp_id="isp-b",
                router="rc2",
                uplink="isp-b",
                committed_mbps=200,
                price_minor=20_000,
                status="active",
                starts_at=now - timedelta(days=30),
            ),
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def lease_count(url: str) -> int:
    """How many leases the database holds."""
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(Lease)) or 0)


# --- the catalogue's live QoS -------------------------------------------------------------


def test_the_catalogue_carries_each_isps_current_qos(
    client: FlaskClient, database_url: str, now: datetime
) -> None:
    ago = lambda minutes: now - timedelta(minutes=minutes)  # noqa: E731
    # isp-a: rc1 and rc2 fresh; rc2's newest sample has no throughput, an older one has
    add_qos(database_url, "isp-a", "rc1", ago(2), latency_ms=50.0)
    add_qos(
        database_url,
        "isp-a",
        "rc1",
        ago(1),
        latency_ms=10.0,
        jitter_ms=1.0,
        loss_pct=0.0,
        throughput_mbps=90.0,
    )
    add_qos(database_url, "isp-a", "rc2", ago(4), throughput_mbps=70.0)
    add_qos(database_url, "isp-a", "rc2", ago(2), latency_ms=20.0, jitter_ms=3.0, loss_pct=2.0)
    add_qos(database_url, "isp-a", "rc3", ago(10), latency_ms=1000.0)  # stale: left out
    add_qos(database_url, "isp-b", "rc1", ago(6), latency_ms=5.0)  # only a stale sample

    body = client.get("/api/v1/isps").get_json()
    qos = {isp["id"]: isp["qos"] for isp in body["isps"]}
    alpha = qos["isp-a"]
    assert (alpha["latency_ms"], alpha["jitter_ms"], alpha["loss_pct"]) == (15.0, 2.0, 1.0)
    assert alpha["throughput_mbps"] == 80.0
    ages = alpha["age_seconds"]
    assert ages["latency_ms"] == pytest.approx(120, abs=5)
    assert ages["jitter_ms"] == pytest.approx(120, abs=5)
    assert ages["throughput_mbps"] == pytest.approx(240, abs=5)
    # the oldest sample shown: rc2's throughput, four minutes ago
    assert datetime.fromisoformat(alpha["measured_at"]) == ago(4)
    empty = {
        "latency_ms": None,
        "jitter_ms": None,
        "loss_pct": None,
        "throughput_mbps": None,
        "measured_at": None,
        "age_seconds": dict.fromkeys(["latency_ms", "jitter_ms", "loss_pct", "throughput_mbps"]),
    }
    assert qos["isp-b"] == empty
    assert qos["isp-c"] == empty


@pytest.fixture
def statements(database_url: str) -> Iterator[list[str]]:
    """Every SQL statement the test's engine runs."""
    seen: list[str] = []
    engine = get_engine(database_url)

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_the_catalogue_reads_qos_in_one_query(
    client: FlaskClient, database_url: str, now: datetime, statements: list[str]
) -> None:
    with session_scope(database_url) as session:
        session.add_all(Isp(id=f"isp-{k}", name=f"ISP {k}") for k in range(10))
    for k in range(10):
        for router in ("rc1", "rc2", "rc3"):
            add_qos(database_url, f"isp-{k}", router, now, latency_ms=float(k))
    statements.clear()
    body = client.get("/api/v1/isps").get_json()
    assert len(body["isps"]) == 13
    assert [isp["qos"]["latency_ms"] for isp in body["isps"][:10]] == [float(k) for k in range(10)]
    queries = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    # the ISPs, their plans (selectinload), the QoS of all of them
    assert len(queries) <= 3, queries
    assert sum("qos_samples" in q for q in queries) == 1


# --- QoS samples -----------------------------------------------------------------------


@pytest.fixture
def samples(database_url: str, now: datetime) -> list[datetime]:
    """Five isp-a samples a minute apart (oldest first; rc1, rc2 alternating), one isp-b."""
    times = [now - timedelta(minutes=5 - k) for k in range(5)]
    for k, at in enumerate(times):
        add_qos(database_url, "isp-a", "rc1" if k % 2 == 0 else "rc2", at, latency_ms=float(k))
    add_qos(database_url, "isp-b", "rc1", now, latency_ms=99.0)
    return times


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("role", "status"),
    [("admin", 200), ("noc", 200), ("portal", 200), ("isp-a", 200), ("isp-b", 403)],
    ids=["admin", "noc", "portal", "own-isp", "other-isp"],
)
def test_qos_samples_need_a_token_of_the_right_isp(
    client: FlaskClient, tokens: dict[str, str], samples: list[datetime], role: str, status: int
) -> None:
    response = client.get("/api/v1/isps/isp-a/qos", headers=bearer(tokens[role]))
    if status == 403:
        assert_problem(response, 403, "VPOP-403")
    else:
        assert response.status_code == 200
        assert len(response.get_json()["samples"]) == 5


def test_qos_samples_without_a_token_are_401(client: FlaskClient) -> None:
    assert_problem(client.get("/api/v1/isps/isp-a/qos"), 401, "VPOP-401-MISSING")


def test_qos_samples_come_newest_first_and_filter(
    client: FlaskClient, admin_headers: dict[str, str], samples: list[datetime]
) -> None:
    def get(query: str) -> list[dict[str, Any]]:
        response = client.get(f"/api/v1/isps/isp-a/qos?{query}", headers=admin_headers)
        assert response.status_code == 200, response.get_json()
        result: list[dict[str, Any]] = response.get_json()["samples"]
        return result

    every = get("")
    assert [s["latency_ms"] for s in every] == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert set(every[0]) == {
        "at",
        "router",
        "latency_ms",
        "jitter_ms",
        "loss_pct",
        "throughput_mbps",
        "sent",
        "received",
    }
    assert datetime.fromisoformat(every[0]["at"]) == samples[4]
    assert [s["latency_ms"] for s in get("limit=2")] == [4.0, 3.0]
    window = f"since={_iso(samples[1])}&until={_iso(samples[3])}"
    assert [s["latency_ms"] for s in get(window)] == [2.0, 1.0]  # since inclusive, until not
    offset = samples[1].astimezone().isoformat().replace("+", "%2B")
    assert [s["latency_ms"] for s in get(f"since={offset}")] == [4.0, 3.0, 2.0, 1.0]
    assert [s["router"] for s in get("router=rc2")] == ["rc2", "rc2"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("since=yesterday", "VPOP-400-TIME"),
        ("since=2025-06-01T12:00:00", "VPOP-400-TIME"),
        ("since=2025-06-01T12:00:00 02:00", "VPOP-400-TIME"),
        ("since=0001-01-01T00:00:00%2B01:00", "VPOP-400-TIME"),
        ("since=2025-06-02&until=2025-06-01", "VPOP-400-TIME"),
        ("since=2025-06-01&since=2025-06-02", "VPOP-400-TYPE"),
        ("limit=0", "VPOP-400-RANGE"),
        ("limit=1001", "VPOP-400-RANGE"),
        ("limit=ten", "VPOP-400-TYPE"),
        ("router=RC1", "VPOP-400"),
        ("page=2", "VPOP-400-UNKNOWN-FIELD"),
    ],
    ids=[
        "not-iso",
        "no-offset",
        "plus-lost-in-url",
        "out-of-range",
        "until-before-since",
        "repeated",
        "limit-zero",
        "limit-too-big",
        "limit-not-a-number",
        "bad-router",
        "unknown-parameter",
    ],
)
def test_bad_qos_queries_are_422(
    client: FlaskClient, admin_headers: dict[str, str], query: str, code: str
) -> None:
    body = assert_problem(
        client.get(f"/api/v1/isps/isp-a/qos?{query}", headers=admin_headers), 422, code
    )
    if "02:00" in query:
        assert "%2B" in body["detail"]


@pytest.mark.parametrize(
    ("isp", "status", "code"),
    [("isp-z", 404, "VPOP-404-ISP"), ("ISP_A", 422, "VPOP-400")],
    ids=["unknown", "invalid"],
)
def test_qos_of_a_bad_isp(
    client: FlaskClient, admin_headers: dict[str, str], isp: str, status: int, code: str
) -> None:
    assert_problem(client.get(f"/api/v1/isps/{isp}/qos", headers=admin_headers), status, code)


# --- leases: reading -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "query", "expected"),
    [
        ("admin", "", [0, 1]),
        ("noc", "", [0, 1]),
        ("isp-a", "", [0]),
        ("isp-b", "", [1]),
        ("isp-b", "isp=isp-b", [1]),
        ("admin", "isp=isp-b", [1]),
        ("admin", "status=ended", []),
        ("admin", "status=active", [0, 1]),
    ],
    ids=[
        "admin",
        "noc",
        "isp-a",
        "isp-b",
        "isp-b-own-filter",
        "admin-filter",
        "status-ended",
        "status-active",
    ],
)
def test_leases_are_listed_per_role(
    client: FlaskClient,
    tokens: dict[str, str],
    leases: list[int],
    role: str,
    query: str,
    expected: list[int],
) -> None:
    response = client.get(f"/api/v1/leases?{query}", headers=bearer(tokens[role]))
    assert response.status_code == 200, response.get_json()
    assert [lease["lease"] for lease in response.get_json()["leases"]] == [
        leases[k] for k in expected
    ]


@pytest.mark.parametrize(
    ("role", "query", "status", "code"),
    [
        ("portal", "", 403, "VPOP-403"),
        ("isp-b", "isp=isp-a", 403, "VPOP-403"),
        ("admin", "status=gone", 422, "VPOP-400"),
        ("admin", "router=rc1", 422, "VPOP-400-UNKNOWN-FIELD"),
    ],
    ids=["portal", "isp-asks-for-another", "bad-status", "unknown-parameter"],
)
def test_lease_listing_refusals(
    client: FlaskClient,
    tokens: dict[str, str],
    leases: list[int],
    role: str,
    query: str,
    status: int,
    code: str,
) -> None:
    assert_problem(
        client.get(f"/api/v1/leases?{query}", headers=bearer(tokens[role])), status, code
    )


@pytest.mark.parametrize(
    ("role", "status"),
    [("admin", 200), ("noc", 200), ("isp-a", 200), ("isp-b", 404), ("portal", 403)],
    ids=["admin", "noc", "own-isp", "other-isp", "portal"],
)
def test_one_lease_is_read_by_operators_and_its_isp(
    client: FlaskClient, tokens: dict[str, str], leases: list[int], role: str, status: int
) -> None:
    response = client.get(f"/api/v1/leases/{leases[0]}", headers=bearer(tokens[role]))
    assert response.status_code == status
    if status == 200:
        body = response.get_json()
        assert (body["lease"], body["isp"], body["uplink"]) == (leases[0], "isp-a", "isp-a")
    elif status == 404:  # another ISP's lease is "not there", as an unknown id is
        assert_problem(response, 404, "VPOP-404-LEASE")
    else:
        assert_problem(response, 403, "VPOP-403")


def test_an_unknown_lease_is_404(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    for path in ("/api/v1/leases/999", "/api/v1/leases/999/utilisation"):
        assert_problem(client.get(path, headers=admin_headers), 404, "VPOP-404-LEASE")
    assert_problem(
        client.post("/api/v1/leases/999/end", headers=admin_headers), 404, "VPOP-404-LEASE"
    )


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("get", "/api/v1/leases/{id}", "VPOP-404-LEASE"),
        ("get", "/api/v1/leases/{id}/utilisation", "VPOP-404-LEASE"),
        ("post", "/api/v1/leases/{id}/end", "VPOP-404-LEASE"),
        ("get", "/api/v1/orders/{id}", "VPOP-404-ORDER"),
        ("get", "/api/v1/runs/{id}", "VPOP-404-RUN"),
    ],
    ids=["lease", "utilisation", "end", "order", "run"],
)
def test_an_id_too_large_for_the_database_is_404(
    client: FlaskClient, admin_headers: dict[str, str], method: str, path: str, code: str
) -> None:
    url = path.format(id=2**64)
    assert_problem(getattr(client, method)(url, headers=admin_headers), 404, code)


# --- leases: creating and ending ----------------------------------------------------------

LEASE_BODY: dict[str, Any] = {
    "isp": "isp-b",
    "router": "rc1",
    "committed_mbps": 100,
    "price_minor": 50_000,
}


@pytest.mark.usefixtures("inventory")
def test_an_operator_creates_a_lease(
    client: FlaskClient,
    tokens: dict[str, str],
    database_url: str,
    lease_changes: list[int],
) -> None:
    body = {**LEASE_BODY, "peak_pct": 150, "event_seconds": 30, "ends_at": "2099-01-01"}
    response = client.post("/api/v1/leases", json=body, headers=bearer(tokens["noc"]))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["status"] == "provisioning"
    assert (created["isp"], created["router"], created["uplink"]) == ("isp-b", "rc1", "isp-b")
    assert (created["committed_mbps"], created["peak_pct"], created["event_seconds"]) == (
        100,
        150,
        30,
    )
    assert created["ends_at"] == "2099-01-01T00:00:00+00:00"
    assert lease_changes == [created["lease"]]
    assert response.headers["Location"] == f"/api/v1/leases/{created['lease']}"
    read = client.get(response.headers["Location"], headers=bearer(tokens["admin"]))
    assert read.get_json() == created
    with session_scope(database_url) as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "lease.create"))
        assert entry.one().actor.startswith("token:")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({**LEASE_BODY, "colour": "red"}, 422, "VPOP-400-UNKNOWN-FIELD"),
        ({**LEASE_BODY, "committed_mbps": "100"}, 422, "VPOP-400-TYPE"),
        ({**LEASE_BODY, "committed_mbps": 100.0}, 422, "VPOP-400-TYPE"),
        ({**LEASE_BODY, "committed_mbps": True}, 422, "VPOP-400-TYPE"),
        ({**LEASE_BODY, "isp": 7}, 422, "VPOP-400-TYPE"),
        ({k: v for k, v in LEASE_BODY.items() if k != "price_minor"}, 422, "VPOP-400-MISSING"),
        ({**LEASE_BODY, "ends_at": "next week"}, 422, "VPOP-400-TIME"),
        ({**LEASE_BODY, "ends_at": "2001-01-01T00:00:00Z"}, 422, "VPOP-400"),
        ({**LEASE_BODY, "committed_mbps": 0}, 422, "VPOP-400"),
        ({**LEASE_BODY, "under_pct": 60, "over_pct": 60}, 422, "VPOP-400"),
        ({**LEASE_BODY, "isp": "Isp B"}, 422, "VPOP-400"),
        ([LEASE_BODY], 422, "VPOP-400-TYPE"),
        ({**LEASE_BODY, "router": "rc9"}, 404, "VPOP-404-ROUTER"),
        ({**LEASE_BODY, "isp": "isp-c"}, 404, "VPOP-404-UPLINK"),
        ({**LEASE_BODY, "isp": "isp-z"}, 404, "VPOP-404-ISP"),
    ],
    ids=[
        "unknown-field",
        "string-number",
        "float-number",
        "bool-number",
        "number-isp",
        "missing-price",
        "ends-at-not-iso",
        "ends-at-past",
        "zero-rate",
        "no-band",
        "invalid-isp",
        "not-an-object",
        "unknown-router",
        "no-uplink",
        "unknown-isp",
    ],
)
@pytest.mark.usefixtures("inventory")
def test_bad_lease_requests_write_nothing(
    client: FlaskClient,
    admin_headers: dict[str, str],
    database_url: str,
    lease_changes: list[int],
    body: Any,
    status: int,
    code: str,
) -> None:
    response = client.post("/api/v1/leases", json=body, headers=admin_headers)
    assert_problem(response, status, code)
    assert lease_count(database_url) == 0
    assert lease_changes == []


@pytest.mark.usefixtures("inventory")
def test_a_second_lease_of_a_busy_uplink_is_409(
    client: FlaskClient, admin_headers: dict[str, str], database_url: str
) -> None:
    assert client.post("/api/v1/leases", json=LEASE_BODY, headers=admin_headers).status_code == 201
    again = client.post("/api/v1/leases", json=LEASE_BODY, headers=admin_headers)
    assert_problem(again, 409, "VPOP-409-LEASE")
    assert lease_count(database_url) == 1


@pytest.mark.parametrize("role", ["portal", "isp-b"], ids=["portal", "isp"])
@pytest.mark.usefixtures("inventory")
def test_only_operators_create_leases(
    client: FlaskClient, tokens: dict[str, str], database_url: str, role: str
) -> None:
    response = client.post("/api/v1/leases", json=LEASE_BODY, headers=bearer(tokens[role]))
    assert_problem(response, 403, "VPOP-403")
    assert lease_count(database_url) == 0


@pytest.mark.usefixtures("inventory")
def test_a_signed_webhook_may_not_create_leases(client: FlaskClient, database_url: str) -> None:
    raw = json.dumps(LEASE_BODY)
    response = client.post("/api/v1/leases", data=raw, headers=sign_headers(raw))
    assert_problem(response, 403, "VPOP-403")
    assert_problem(client.post("/api/v1/leases", json=LEASE_BODY), 401, "VPOP-401-MISSING")
    assert lease_count(database_url) == 0


@pytest.mark.usefixtures("inventory")
def test_a_failing_lease_changed_still_answers_201(
    database_url: str, admin_headers: dict[str, str]
) -> None:
    def broken(_lease_id: int) -> None:
        raise ConnectionError("queue down")

    app = create_app({"TESTING": True, "DATABASE_URL": database_url})
    with lease_changed.connected_to(broken):
        response = app.test_client().post("/api/v1/leases", json=LEASE_BODY, headers=admin_headers)
    assert response.status_code == 201
    assert lease_count(database_url) == 1


def test_an_operator_ends_a_lease(
    client: FlaskClient,
    tokens: dict[str, str],
    leases: list[int],
    lease_changes: list[int],
) -> None:
    path = f"/api/v1/leases/{leases[0]}/end"
    response = client.post(path, headers=bearer(tokens["noc"]))
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["status"] == "ending"
    assert response.get_json()["ends_at"] is not None
    assert lease_changes == [leases[0]]
    assert client.post(path, json={}, headers=bearer(tokens["admin"])).status_code == 202


@pytest.mark.parametrize(
    ("role", "body", "status", "code"),
    [
        ("isp-a", None, 403, "VPOP-403"),
        ("portal", None, 403, "VPOP-403"),
        ("admin", {"now": True}, 422, "VPOP-400-UNKNOWN-FIELD"),
        ("admin", "ended", 422, "VPOP-400"),
    ],
    ids=["isp", "portal", "body-with-fields", "already-ended"],
)
def test_ending_a_lease_refusals(
    client: FlaskClient,
    tokens: dict[str, str],
    database_url: str,
    leases: list[int],
    lease_changes: list[int],
    role: str,
    body: Any,
    status: int,
    code: str,
) -> None:
    if body == "ended":
        with session_scope(database_url) as session:
            lease = session.get(Lease, leases[0])
            assert lease is not None
            lease.status = "ended"
        body = None
    kwargs: dict[str, Any] = {"json": body} if body is not None else {}
    response = client.post(
        f"/api/v1/leases/{leases[0]}/end", headers=bearer(tokens[role]), **kwargs
    )
    assert_problem(response, status, code)
    assert lease_changes == []


# --- utilisation ------------------------------------------------------------------------


@pytest.fixture
def utilisation(database_url: str, leases: list[int], now: datetime) -> list[datetime]:
    """Eleven samples of lease 2 (committed 200) a minute apart, 10..110 Mbit/s shuffled;
    an open over event and a closed under event of lease 2; one sample of lease 1."""
    rates = [30, 110, 10, 90, 50, 20, 100, 70, 40, 60, 80]
    times = [now - timedelta(minutes=11 - k) for k in range(11)]
    with session_scope(database_url) as session:
        for at, rate in zip(times, rates, strict=True):
            session.add(
                UtilisationSample(
                    lease_id=leases[1], at=at, rate_mbps=float(rate), utilisation_pct=rate / 2
                )
            )
        session.add(
            UtilisationSample(lease_id=leases[0], at=now, rate_mbps=1.0, utilisation_pct=1.0)
        )
        session.add_all(
            [
                UtilisationEvent(
                    lease_id=leases[1],
                    isp_id="isp-b",
                    kind="over",
                    opened_at=now - timedelta(minutes=3),
                    extreme_pct=55.0,
                ),
                UtilisationEvent(
                    lease_id=leases[1],
                    isp_id="isp-b",
                    kind="under",
                    opened_at=now - timedelta(hours=3),
                    closed_at=now - timedelta(hours=2),
                    extreme_pct=1.0,
                ),
            ]
        )
    return times


def test_utilisation_has_samples_p95_and_open_events(
    client: FlaskClient, tokens: dict[str, str], leases: list[int], utilisation: list[datetime]
) -> None:
    response = client.get(
        f"/api/v1/leases/{leases[1]}/utilisation", headers=bearer(tokens["isp-b"])
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["lease"]["lease"] == leases[1]
    assert [s["rate_mbps"] for s in body["samples"]] == [
        30.0,
        110.0,
        10.0,
        90.0,
        50.0,
        20.0,
        100.0,
        70.0,
        40.0,
        60.0,
        80.0,
    ]
    assert body["samples"][0]["utilisation_pct"] == 15.0
    assert datetime.fromisoformat(body["samples"][0]["at"]) == utilisation[0]
    # LibreNMS: index round(11 * 0.95) - 1 = 9 of the ascending rates: the 10th of 11
    # (100 Mbit/s), not the largest as ceil(0.95 * n) would pick
    assert body["p95_mbps"] == 100.0
    assert body["p95_pct"] == 50.0
    (event_,) = body["open_events"]
    assert (event_["kind"], event_["open"], event_["closed_at"]) == ("over", True, None)
    assert event_["seconds"] == pytest.approx(180, abs=5)


def test_utilisation_window(
    client: FlaskClient,
    admin_headers: dict[str, str],
    leases: list[int],
    utilisation: list[datetime],
) -> None:
    query = f"since={_iso(utilisation[2])}&until={_iso(utilisation[5])}"
    body = client.get(
        f"/api/v1/leases/{leases[1]}/utilisation?{query}", headers=admin_headers
    ).get_json()
    assert [s["rate_mbps"] for s in body["samples"]] == [10.0, 90.0, 50.0]
    assert body["p95_mbps"] == 90.0  # n = 3: index round(2.85) - 1 = 2
    assert datetime.fromisoformat(body["since"]) == utilisation[2]
    old = "since=2001-01-01T00:00:00Z&until=2001-01-02T00:00:00Z"
    empty = client.get(
        f"/api/v1/leases/{leases[1]}/utilisation?{old}", headers=admin_headers
    ).get_json()
    assert (empty["samples"], empty["p95_mbps"], empty["p95_pct"]) == ([], None, None)


@pytest.mark.parametrize(
    ("role", "query", "status", "code"),
    [
        ("isp-a", "", 404, "VPOP-404-LEASE"),
        ("portal", "", 403, "VPOP-403"),
        ("admin", "since=last-tuesday", 422, "VPOP-400-TIME"),
        ("admin", "since=2025-01-01&until=2025-03-01", 422, "VPOP-400-RANGE"),
        ("admin", "until=2001-01-01&since=2001-01-01", 422, "VPOP-400-TIME"),
        ("admin", "limit=5", 422, "VPOP-400-UNKNOWN-FIELD"),
    ],
    ids=["other-isp", "portal", "bad-since", "window-too-long", "empty-window", "unknown"],
)
def test_utilisation_refusals(
    client: FlaskClient,
    tokens: dict[str, str],
    leases: list[int],
    role: str,
    query: str,
    status: int,
    code: str,
) -> None:
    response = client.get(
        f"/api/v1/leases/{leases[1]}/utilisation?{query}", headers=bearer(tokens[role])
    )
    assert_problem(response, status, code)


# --- events --------------------------------------------------------------------------------


@pytest.fixture
def events(database_url: str, leases: list[int], now: datetime) -> dict[str, int]:
    """a-over (open, isp-a), a-under (closed an hour ago), b-over (closed three days ago)."""
    rows = {
        "a-over": UtilisationEvent(
            lease_id=leases[0],
            isp_id="isp-a",
            kind="over",
            opened_at=now - timedelta(minutes=10),
            extreme_pct=140.0,
        ),
        "a-under": UtilisationEvent(
            lease_id=leases[0],
            isp_id="isp-a",
            kind="under",
            opened_at=now - timedelta(hours=2),
            closed_at=now - timedelta(hours=1),
            extreme_pct=2.0,
        ),
        "b-over": UtilisationEvent(
            lease_id=leases[1],
            isp_id="isp-b",
            kind="over",
            opened_at=now - timedelta(days=3, hours=1),
            closed_at=now - timedelta(days=3),
            extreme_pct=120.0,
        ),
    }
    with session_scope(database_url) as session:
        session.add_all(rows.values())
        session.flush()
        return {name: row.id for name, row in rows.items()}


@pytest.mark.parametrize(
    ("role", "query", "expected"),
    [
        ("admin", "", ["a-over", "a-under", "b-over"]),
        ("noc", "open=true", ["a-over"]),
        ("admin", "open=false", ["a-under", "b-over"]),
        ("admin", "kind=under", ["a-under"]),
        ("admin", "kind=over&open=false", ["b-over"]),
        ("admin", "since=SINCE", ["a-over", "a-under"]),
        ("admin", "limit=1", ["a-over"]),
        ("isp-a", "", ["a-over", "a-under"]),
        ("isp-b", "", ["b-over"]),
        ("isp-b", "open=true", []),
    ],
    ids=[
        "all",
        "open",
        "closed",
        "under",
        "closed-over",
        "since",
        "limit",
        "isp-a",
        "isp-b",
        "isp-b-open",
    ],
)
def test_events_are_filtered_and_scoped(
    client: FlaskClient,
    tokens: dict[str, str],
    events: dict[str, int],
    leases: list[int],
    now: datetime,
    role: str,
    query: str,
    expected: list[str],
) -> None:
    query = query.replace("SINCE", _iso(now - timedelta(days=1)))
    response = client.get(f"/api/v1/events?{query}", headers=bearer(tokens[role]))
    assert response.status_code == 200, response.get_json()
    listed = response.get_json()["events"]
    assert [e["event"] for e in listed] == [events[name] for name in expected]
    if listed and listed[0]["event"] == events["a-over"]:
        first = listed[0]
        assert (first["lease"], first["isp"], first["kind"], first["open"]) == (
            leases[0],
            "isp-a",
            "over",
            True,
        )
        assert first["seconds"] == pytest.approx(600, abs=5)
        assert first["extreme_pct"] == 140.0


@pytest.mark.parametrize(
    ("role", "query", "status", "code"),
    [
        ("portal", "", 403, "VPOP-403"),
        ("admin", "open=yes", 422, "VPOP-400-TYPE"),
        ("admin", "kind=sideways", 422, "VPOP-400"),
        ("admin", "since=2025-13-01T00:00:00Z", 422, "VPOP-400-TIME"),
        ("admin", "isp=isp-a", 422, "VPOP-400-UNKNOWN-FIELD"),
    ],
    ids=["portal", "open-not-boolean", "unknown-kind", "bad-since", "unknown-parameter"],
)
def test_event_refusals(
    client: FlaskClient, tokens: dict[str, str], role: str, query: str, status: int, code: str
) -> None:
    assert_problem(
        client.get(f"/api/v1/events?{query}", headers=bearer(tokens[role])), status, code
    )


def test_the_lease_schema_matches_the_parser() -> None:
    schema = openapi.document()["components"]["schemas"]["LeaseRequest"]
    assert set(schema["properties"]) == set(LeaseRequest.model_fields)
    assert schema["required"] == list(LEASE_REQUIRED)
    assert schema["additionalProperties"] is False
