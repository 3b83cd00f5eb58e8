"""The request models: one statement of each rule, and the API's messages kept word for word."""

from __future__ import annotations

import inspect
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import BigInteger

from vpop.cli.leasing import LeaseRange, lease, lease_create
from vpop.core.errors import BadInput
from vpop.leasing.models import Lease
from vpop.leasing.service import (
    LEASE_DEFAULTS,
    LEASE_RANGES,
    LEASE_REQUIRED,
    LeaseRequest,
    create_lease,
)
from vpop.selection.service import SelectionBody
from webhooks.api import openapi

LEASE: dict[str, Any] = {
    "isp": "isp-b",
    "router": "rc1",
    "committed_mbps": 100,
    "price_minor": 5000,
}


def _cli_options() -> dict[str, click.Option]:
    """The options of ``vpop lease create`` by parameter name."""
    return {
        param.name or "": param for param in lease_create.params if isinstance(param, click.Option)
    }


def test_the_lease_ranges_are_one_table() -> None:
    properties = openapi.document()["components"]["schemas"]["LeaseRequest"]["properties"]
    options = _cli_options()
    assert set(LEASE_RANGES) == {
        name for name, o in options.items() if isinstance(o.type, LeaseRange)
    }
    for name, bounds in LEASE_RANGES.items():
        # the API: the model's field carries the table's object, and the document says so
        assert any(meta is bounds for meta in LeaseRequest.model_fields[name].metadata)
        assert (properties[name]["minimum"], properties[name]["maximum"]) == (
            bounds.low,
            bounds.high,
        )
        # the CLI: click's IntRange over the same bounds
        cli_range = options[name].type
        assert isinstance(cli_range, LeaseRange)
        assert (cli_range.resolve().min, cli_range.max) == (bounds.low, bounds.high)
        # the domain: create_lease refuses one past either end with the table's message
        for value in (bounds.low - 1, bounds.high + 1):
            with pytest.raises(BadInput) as err:
                create_lease(**{**LEASE, name: value}, actor="test")
            assert err.value.message == (
                f"{name}: must be a whole number from {bounds.low} to {bounds.high}, not {value}"
            )


def test_the_lease_defaults_and_required_fields_are_one_table() -> None:
    properties = openapi.document()["components"]["schemas"]["LeaseRequest"]["properties"]
    signature = inspect.signature(create_lease).parameters
    options = _cli_options()
    for name, default in LEASE_DEFAULTS.items():
        assert properties[name]["default"] == default
        assert signature[name].default == default
        assert options[name].get_default(click.Context(lease_create)) == default
    assert {name for name in LEASE_RANGES if options[name].required} == (
        set(LEASE_REQUIRED) & set(LEASE_RANGES)
    )
    assert set(LEASE_REQUIRED) == {"isp", "router", "committed_mbps", "price_minor"}


def test_the_help_shows_the_tables_ranges() -> None:
    result = CliRunner().invoke(lease, ["create", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for name, bounds in LEASE_RANGES.items():
        assert f"{bounds.low}<=x<={bounds.high}" in result.output, name


def test_the_largest_accepted_price_is_what_the_column_holds() -> None:
    column = Lease.__table__.c.price_minor
    assert isinstance(column.type, BigInteger)
    assert 0 <= LEASE_RANGES["price_minor"].low <= LEASE_RANGES["price_minor"].high <= 2**63 - 1


@pytest.mark.parametrize(
    ("model", "body", "code", "message"),
    [
        (
            SelectionBody,
            {"isp": "isp-b", "subscriber": "sub1", "x" * 50: 1},
            "VPOP-400-UNKNOWN-FIELD",
            f"unknown field {'x' * 40!r}...; allowed: isp, subscriber, calling_number, "
            "circuit_id, access_id, dry_run, callback_url",
        ),
        (SelectionBody, {"subscriber": "sub1"}, "VPOP-400-MISSING", "isp is required"),
        (SelectionBody, {"subscriber": 1}, "VPOP-400-TYPE", "subscriber must be a JSON string"),
        (
            SelectionBody,
            {"isp": "isp-b", "subscriber": None},
            "VPOP-400-TYPE",
            "subscriber must be a JSON string",
        ),
        (
            SelectionBody,
            {"isp": "isp-b", "subscriber": "sub1", "dry_run": 1},
            "VPOP-400-TYPE",
            "dry_run must be a JSON boolean",
        ),
        (
            SelectionBody,
            {"isp": "isp-b", "subscriber": "sub1\n"},
            "VPOP-400",
            "subscriber: 'sub1\\n' is not a valid id; use 1-31 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit",
        ),
        (
            SelectionBody,
            {"isp": "isp-b"},
            "VPOP-400-LINE-ID",
            "name the line with exactly one of subscriber, calling_number, circuit_id, access_id",
        ),
        (
            LeaseRequest,
            {"isp": "isp-b", "committed_mbps": "100"},
            "VPOP-400-MISSING",
            "missing field(s) router, price_minor; required: isp, router, committed_mbps, "
            "price_minor",
        ),
        (
            LeaseRequest,
            {**LEASE, "committed_mbps": 100.0},
            "VPOP-400-TYPE",
            "committed_mbps must be a JSON integer",
        ),
        (
            LeaseRequest,
            {**LEASE, "ends_at": "soon"},
            "VPOP-400-TIME",
            "ends_at: 'soon' is not an ISO 8601 time such as 2025-06-01T12:00:00Z or 2025-06-01",
        ),
    ],
    ids=[
        "unknown-key-cut-short",
        "missing-isp",
        "int-string",
        "null-string",
        "int-boolean",
        "newline",
        "no-line",
        "missing-lease-fields",
        "float-integer",
        "bad-time",
    ],
)
def test_a_body_is_refused_with_the_apis_message(
    model: type[SelectionBody] | type[LeaseRequest], body: dict[str, Any], code: str, message: str
) -> None:
    with pytest.raises(BadInput) as err:
        model.parse(body)
    assert (err.value.code, err.value.message) == (code, message)


def test_a_selection_body_is_the_domains_request() -> None:
    body = {"isp": "isp-b", "calling_number": "+31205550001", "dry_run": True}
    request = SelectionBody.parse(body).request()
    assert (request.isp, request.calling_number, request.dry_run) == ("isp-b", "+31205550001", True)
    assert request.subscriber is None
