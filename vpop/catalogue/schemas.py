"""The catalogue domain's JSON bodies: plans, subscribers and their lines.

They describe what the API's views return (``GET /api/v1/subscribers/<id>``, and the plans
in ``GET /api/v1/isps``); the views build plain dicts, and the API's tests hold every
response against these models' JSON schemas.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vpop.core.schemas import NAME_PATTERN, Currency, Strict


class Plan(Strict):
    """One of an ISP's plans: speed and monthly price."""

    id: int
    name: str
    speed_mbps: int
    monthly_price_minor: Annotated[int, Field(description="price per month in minor units (cents)")]
    currency: Currency


class Line(Strict):
    """One of a subscriber's lines, with the ISP it uses now."""

    line: int
    router: str
    interface: str
    prefix: str
    calling_number: str | None
    circuit_id: str | None
    access_id: str | None
    current_isp: Annotated[
        str | None, Field(description="the selected ISP; null: the router's default route")
    ]
    default: Annotated[bool, Field(description="true when no ISP is selected")]


class Subscriber(Strict):
    """A subscriber's lines and the ISP each line uses now."""

    subscriber: Annotated[str, Field(pattern=NAME_PATTERN)]
    name: str
    lines: list[Line]
