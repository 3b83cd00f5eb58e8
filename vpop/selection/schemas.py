"""The selection domain's JSON bodies: the selection request, accepted orders, orders, runs.

:class:`SelectionBody` parses ``POST /api/v1/selections`` (strict, unknown keys refused,
every string canonicalised by :mod:`vpop.core.validate`) into the domain's
:class:`~vpop.selection.orders.SelectionRequest`. The response models describe what
:func:`~vpop.selection.orders.order_view` and the API's ``run_view`` return; the views keep
building plain dicts (they are on hot paths), and the API's tests hold every response
against these models' JSON schemas.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from vpop.core import validate
from vpop.core.errors import BadInput
from vpop.core.schemas import (
    E164_PATTERN,
    LINE_ID_PATTERN,
    NAME_PATTERN,
    URL_MAX_LENGTH,
    Canonical,
    Request,
    Strict,
)
from vpop.selection.models import OrderStatus, RunStatus
from vpop.selection.orders import SelectionRequest

#: The fields that name a line; a selection names exactly one.
LINE_IDENTIFIERS = ("subscriber", "calling_number", "circuit_id", "access_id")

#: What started a run: an order's selection, a reconcile, or an order's dry run.
RunKind = Literal["selection", "reconcile", "dry_run"]


class SelectionBody(Request):
    """Move a line to an ISP.

    Name the line with exactly one of subscriber (the subscriber's first line),
    calling_number, circuit_id or access_id.
    """

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": [name]} for name in LINE_IDENTIFIERS]}
    )

    isp: Annotated[str, Canonical(validate.name, pattern=NAME_PATTERN, examples=["isp-b"])]
    subscriber: Annotated[
        str | None, Canonical(validate.name, pattern=NAME_PATTERN, examples=["sub1"])
    ] = None
    calling_number: Annotated[
        str | None,
        Canonical(
            validate.e164,
            pattern=E164_PATTERN,
            description="E.164, with the leading +",
            examples=["+4930123456"],
        ),
    ] = None
    circuit_id: Annotated[
        str | None,
        Canonical(
            validate.circuit_id, pattern=LINE_ID_PATTERN, description="DHCP option 82 circuit id"
        ),
    ] = None
    access_id: Annotated[
        str | None,
        Canonical(
            validate.access_id,
            pattern=LINE_ID_PATTERN,
            description="the access network's line id",
        ),
    ] = None
    dry_run: Annotated[bool, Field(description="compute the diff only; change nothing")] = False
    callback_url: Annotated[
        str | None,
        Canonical(
            validate.url,
            format="uri",
            maxLength=URL_MAX_LENGTH,
            description="receives a signed callback when the order is final",
        ),
    ] = None

    @model_validator(mode="after")
    def _one_line(self) -> Self:
        """Exactly one identifier names the line (a :class:`BadInput`, not a pydantic error,
        so that it passes through with its own code)."""
        named = [name for name in LINE_IDENTIFIERS if getattr(self, name) is not None]
        if len(named) != 1:
            raise BadInput(
                f"name the line with exactly one of {', '.join(LINE_IDENTIFIERS)}",
                code="VPOP-400-LINE-ID",
            )
        return self

    def request(self) -> SelectionRequest:
        """The domain's request for :func:`~vpop.selection.orders.submit_selection`."""
        return SelectionRequest(**self.model_dump())


class Accepted(Strict):
    """The answer to a selection: the order, recorded and queued (``Location`` names it)."""

    order: int
    status: OrderStatus
    consent_url: Annotated[
        str | None,
        Field(
            description="PENDING_CONSENT only: the signed link to send the subscriber, who "
            "confirms or declines there (or on the portal)"
        ),
    ] = None
    consent_expires_at: Annotated[
        datetime | None,
        Field(description="PENDING_CONSENT only: the request expires unanswered then"),
    ] = None


class Order(Strict):
    """One order and where it stands."""

    order: int
    status: OrderStatus
    line: int
    router: str
    isp: str
    dry_run: bool
    requester: Annotated[str, Field(examples=["token:3", "webhook"])]
    run: int | None
    diff: str
    error: str | None
    callback: Annotated[str | None, Field(description="how the callback went, if any")]
    coa: Annotated[
        str | None,
        Field(
            description="the RADIUS CoA/Disconnect sent for the line's live session: ACK, "
            "NAK with its Error-Cause, or no answer (None: none was needed)"
        ),
    ]
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    final: Annotated[bool, Field(description="the order will not change any more")]
    consent_expires_at: Annotated[
        datetime | None,
        Field(description="until when the subscriber may confirm a PENDING_CONSENT order"),
    ]
    consented_by: Annotated[
        str | None,
        Field(
            description="how the subscriber confirmed an ISP's request: portal or consent-link",
            examples=["portal"],
        ),
    ]


class Run(Strict):
    """One Nornir run against one router: its diff, per-host results and timings."""

    run: int
    router: str
    kind: RunKind
    trigger: str
    requester: str
    dry_run: bool
    status: RunStatus
    diff: str
    result: Annotated[dict[str, Any], Field(description="per-host results")]
    timings: dict[str, Any]
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class RunList(Strict):
    """Runs, the newest first."""

    runs: list[Run]
