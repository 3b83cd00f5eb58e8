"""The OpenAPI 3.1 document at ``/api/v1/openapi.json``, generated from the domains' models.

:data:`OPERATIONS`, the routes (method, path, operationId, summary, parameters, request and
success models and status, problems, security), becomes the document in :func:`document` with
pydantic's JSON schema of every model as ``components/schemas`` (the request models are the
routes' parsers: no drift). Tests check every route is here, the document is valid, and every
API response in a test matches it."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel, json_schema
from pydantic_core import core_schema

from vpop.aaa.service import schemas as aaa
from vpop.billing import service as billing
from vpop.catalogue.service import schemas as catalogue
from vpop.core.schemas import NAME_PATTERN, Health, Problem, json_pattern
from vpop.leasing.service import KINDS, LEASE_STATUSES, LeaseChangeRequest, LeaseRequest
from vpop.leasing.service import schemas as leasing
from vpop.monitoring.service import schemas as monitoring
from vpop.reports.service import schemas as reports
from vpop.selection.service import SelectionBody
from vpop.selection.service import schemas as selection
from webhooks.api import aaa as aaa_api
from webhooks.api import catalogue as catalogue_api
from webhooks.api import leasing as leasing_api
from webhooks.api import payments as payments_api
from webhooks.api import reports as reports_api
from webhooks.api import selection as selection_api
from webhooks.api import settlements as settlements_api
from webhooks.api.common import bp
from webhooks.auth import MESSAGE_ID, TIMESTAMP

JSON = "application/json"
PROBLEM = "application/problem+json"
REF = "#/components/schemas/{model}"

Security = list[dict[str, list[str]]]
READ: Security = [{"bearerAuth": []}]
WRITE: Security = [{"bearerAuth": []}, {"webhookSignature": []}]
PUBLIC: Security = []

PROBLEM_RESPONSES = {
    400: "Malformed request: the body is not UTF-8 JSON, or a header is malformed.",
    401: "Not authenticated: missing, malformed, repeated or wrong credentials.",
    403: "Authenticated, but not allowed: the token's role may not use this route (a merchant "
    "token any but the payments API), or an ISP token acts for another ISP.",
    404: "No such object, or no such endpoint.",
    405: "The endpoint does not accept this method.",
    409: "The request conflicts with the current state (a busy uplink, a captured payment).",
    413: "The body is larger than the limit (64 KiB by default).",
    415: "The body is not declared as application/json.",
    422: "The JSON is well formed but a value is not acceptable, or the idempotency key "
    "was used with another body.",
    500: "Internal error.",
    503: "Busy: the order could not be recorded now; retry.",
}


# the schemas of the parameters: an id in a path, a name, a time in a query
ID = {"type": "integer", "minimum": 0}
NAME = {"type": "string", "pattern": NAME_PATTERN}
TIME = {"type": "string", "format": "date-time"}
ISO = " ISO 8601 with a UTC offset (`2025-06-01T12:00:00Z`; write `+` as `%2B`), or a date alone."


def _param(where: str, name: str, schema: dict[str, Any], text: str = "") -> dict[str, Any]:
    """One parameter object; a path parameter is required, the others are not."""
    param = {"name": name, "in": where, "required": where == "path", "schema": schema}
    return {**param, "description": text} if text else param


def limit_arg(default: int, maximum: int) -> dict[str, Any]:
    """The ``limit`` query parameter of a list: 1 to ``maximum``, ``default`` when absent."""
    schema = {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
    return _param("query", "limit", schema)


@dataclass(frozen=True)
class Operation:
    """One route: what it is called, takes, answers and needs."""

    method: str
    path: str
    operation_id: str
    summary: str
    model: type[BaseModel] | None  # the success body; None: any JSON object
    status: int = 200  # the success status
    ok: str = ""  # what the success means (default: the model's summary)
    problems: tuple[int, ...] = ()  # its problems' statuses; every route may also answer 500
    security: Security = field(default_factory=lambda: READ)
    parameters: tuple[dict[str, Any], ...] = ()
    request: type[BaseModel] | None = None
    description: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # success headers: what they say
    also: Mapping[int, str] = field(default_factory=dict)  # statuses answered with the model
    media: tuple[str, ...] = ()  # other media types of the success body (text, not JSON)


API = "/api/v1"
LEASE_ID = _param("path", "lease_id", ID)
HEADER_ID = {"type": "string", "pattern": json_pattern(MESSAGE_ID)}
# fmt: off
INFO = {"title": "vpop API", "version": "1",
        "description": "Subscribers pick their ISP; routers follow. Errors are RFC 9457 problem "
        "details with a stable `code` (see docs/errors.md)."}
PARAMETERS = {  # the headers of a signed (or idempotent) request
    "IdempotencyKey": _param("header", "Idempotency-Key", HEADER_ID,
                             "bearer callers: the same key and body return the same order"),
    "WebhookId": _param("header", "webhook-id", HEADER_ID,
                        "Standard Webhooks message id; also the idempotency key"),
    "WebhookTimestamp": _param("header", "webhook-timestamp",
                               {"type": "string", "pattern": json_pattern(TIMESTAMP)},
                               "Standard Webhooks timestamp: Unix seconds, within 5 minutes"),
}
SIGNED = tuple({"$ref": f"#/components/parameters/{name}"} for name in PARAMETERS)
IDEMPOTENT = ({**_param("header", "Idempotency-Key", HEADER_ID, payments_api.KEY_TEXT),
               "required": True},)
PAYMENT_ID, SUBSCRIBER_ID = _param("path", "payment_id", ID), _param("path", "subscriber_id", NAME)
SETTLEMENT_ID, PERIOD = _param("path", "settlement_id", ID), settlements_api.PERIOD_SCHEMA
STATUS = {"type": "string", "enum": list(billing.PAYMENT_STATUSES)}
OPS = "admin and noc tokens only."
PAYMENT_HEADERS = {"Location": "the payment's URL", "Idempotent-Replayed": "`true` on a replay"}
PAYMENT_ROLES = payments_api.ACTIONS_TEXT
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "vpop_... tokens from `vpop token create`; roles admin, noc, "
                   "portal, isp (an isp token acts only for its own ISP), merchant (the "
                   "payments API only, for its own merchant)."},
    "webhookSignature": {"type": "apiKey", "in": "header", "name": "webhook-signature",
                         "description": "Standard Webhooks: `v1,<base64 HMAC-SHA256>` of "
                         "`{webhook-id}.{webhook-timestamp}.{raw body}` with a shared `whsec_` "
                         "secret; send webhook-id and webhook-timestamp too."},
}
OPERATIONS = (
    Operation("post", f"{API}/selections", "createSelection", "Order a line's move to an ISP",
              selection.Accepted, status=202, ok="The order is recorded and queued.",
              problems=(400, 401, 403, 404, 413, 415, 422, 503), security=WRITE,
              parameters=SIGNED, request=SelectionBody,
              description="Authenticate with a bearer token or a Standard Webhooks signature. "
              "Replays (same webhook-id, or same Idempotency-Key for a token) return the same "
              "order with `Idempotent-Replayed: true`. An ISP token asking for a line that does "
              "not use its ISP now gets a `PENDING_CONSENT` order and a signed `consent_url` to "
              "send the subscriber, who confirms or declines it (or does so on the portal) "
              "before `consent_expires_at`; confirmed, it runs like any order (docs/tenancy.md).",
              headers={"Location": "the order's URL", "Idempotent-Replayed": "`true` on a replay"}),
    Operation("get", f"{API}/orders/{{order_id}}", "getOrder", "One order", selection.Order,
              problems=(401, 404), parameters=(_param("path", "order_id", ID), _param(
                  "header", "Prefer", {"type": "string"}, "`wait=N` (1-60 s): answer when the "
                  "order is final or after N seconds (RFC 7240)")),
              headers={"Preference-Applied": "`wait=N` when the request's wait was honoured"},
              description="admin and noc tokens read every order with the run's whole diff. "
              "An ISP token reads the orders its ISP requested, a portal token the orders it "
              "requested, with only the order's own line's part of the diff; any other order "
              "is 404, as an unknown id is."),
    Operation("get", f"{API}/subscribers/{{subscriber_id}}", "getSubscriber",
              "A subscriber's lines and current ISPs", catalogue.Subscriber,
              problems=(401, 403, 404, 422), parameters=(_param("path", "subscriber_id", NAME),),
              description="admin and noc tokens read every subscriber; an ISP token those with "
              "a line that uses its ISP or had an order for it accepted (any other is 404, as an "
              "unknown id is); portal tokens are refused."),
    Operation("get", f"{API}/runs", "listRuns", "Recent runs, newest first", selection.RunList,
              problems=(401, 403, 422), parameters=(
                  limit_arg(selection_api.RUNS_DEFAULT_LIMIT, selection_api.RUNS_MAX_LIMIT),
                  _param("query", "router", NAME)),
              description="admin and noc tokens only: a run's diff shows every line of its "
              "router."),
    Operation("get", f"{API}/runs/{{run_id}}", "getRun", "One run", selection.Run,
              problems=(401, 403, 404), parameters=(_param("path", "run_id", ID),),
              description="admin and noc tokens only (403 for any other token, whatever the id)."),
    Operation("get", f"{API}/isps", "listIsps",
              "The public ISP catalogue: plans, speeds, prices, current QoS",
              monitoring.Catalogue, security=PUBLIC),
    Operation("get", f"{API}/openapi.json", "getOpenapi", "This document", None,
              ok="The OpenAPI 3.1 document.", security=PUBLIC),
    Operation("get", "/healthz", "getHealth", "The queue's and the routers' state", Health,
              ok="Everything holds.", security=PUBLIC,
              also={503: "Degraded: `reasons` says what (a stuck lock, an unreachable queue, a "
                    "failing router, an order waiting too long)."}),
    Operation("get", f"{API}/isps/{{isp_id}}/qos", "listIspQos",
              "An ISP's QoS samples, newest first", monitoring.QosSampleList,
              problems=(401, 403, 404, 422), parameters=(
                  _param("path", "isp_id", NAME),
                  _param("query", "since", TIME, "Samples at or after this time." + ISO),
                  _param("query", "until", TIME, "Samples before this time." + ISO),
                  limit_arg(catalogue_api.SAMPLES_DEFAULT_LIMIT, catalogue_api.SAMPLES_MAX_LIMIT),
                  _param("query", "router", NAME)),
              description="Any token; an ISP token reads only its own ISP."),
    Operation("get", f"{API}/leases", "listLeases", "Leases by id", leasing.LeaseList,
              problems=(401, 403, 422), parameters=(
                  _param("query", "isp", NAME),
                  _param("query", "status", {"type": "string", "enum": list(LEASE_STATUSES)})),
              description="admin and noc tokens see every lease, an ISP token its ISP's; "
              "portal tokens are refused."),
    Operation("post", f"{API}/leases", "createLease", "Lease an ISP's uplink on a router",
              leasing.Lease, status=201, ok="The lease is recorded and queued for provisioning.",
              problems=(400, 401, 403, 404, 409, 413, 415, 422), request=LeaseRequest,
              description="admin and noc tokens only. The lease is written as `provisioning` "
              "and queued; the worker shapes the uplink and marks it `active`. A `starts_at` "
              "more than a second ahead writes it `scheduled`: it holds the uplink and is "
              "queued when it starts.",
              headers={"Location": "the lease's URL"}),
    Operation("get", f"{API}/leases/{{lease_id}}", "getLease", "One lease", leasing.Lease,
              problems=(401, 403, 404), parameters=(LEASE_ID,),
              description="admin and noc tokens read every lease, an ISP token its ISP's (another "
              "ISP's is 404, as an unknown id is); portal tokens are refused."),
    Operation("post", f"{API}/leases/{{lease_id}}/end", "endLease", "End a lease", leasing.Lease,
              status=202, ok="The end is recorded and queued.",
              problems=(400, 401, 403, 404, 413, 415, 422), parameters=(LEASE_ID,),
              description="admin and noc tokens only; no body (or `{}`). The lease is "
              "`ending` until the worker removes its shaping, then `ended`.",
              headers={"Location": "the lease's URL"}),
    Operation("get", f"{API}/leases/{{lease_id}}/utilisation", "getLeaseUtilisation",
              "A lease's utilisation samples, 95th percentile and open events",
              leasing.Utilisation, problems=(401, 403, 404, 422), parameters=(
                  LEASE_ID, _param("query", "since", TIME, "Window start (inclusive)." + ISO),
                  _param("query", "until", TIME, "Window end (exclusive)." + ISO)),
              description="The window defaults to the day before `until` (default now) and "
              f"is at most {leasing_api.UTILISATION_MAX_WINDOW.days} days."),
    Operation("get", f"{API}/leases/{{lease_id}}/versions", "listLeaseVersions",
              "A lease's versions: its terms over time, oldest first", leasing.LeaseVersionList,
              problems=(401, 403, 404), parameters=(LEASE_ID,),
              description="Read like the lease: admin and noc tokens every lease's, an ISP token "
              "its ISP's (another ISP's is 404, as an unknown id is); portal tokens are refused."),
    Operation("post", f"{API}/leases/{{lease_id}}/versions", "changeLease",
              "Renew a lease or change its terms", leasing.LeaseVersion, status=201,
              ok="The new version, in force from now.",
              problems=(400, 401, 403, 404, 413, 415, 422), parameters=(LEASE_ID,),
              request=LeaseChangeRequest,
              description="admin and noc tokens only. The version in force ends now and the next "
              "starts now (at the lease's start if it has not started). A new `ends_at` alone is "
              "a renewal; a new committed rate or peak reshapes a shaped lease (it is "
              "`provisioning` until the worker has reshaped it). Ending or ended leases cannot "
              "change (422).",
              headers={"Location": "the lease's versions"}),
    Operation("get", f"{API}/events", "listEvents",
              "Under- and over-utilisation events, newest first", leasing.EventList,
              problems=(401, 403, 422), parameters=(
                  _param("query", "open", {"type": "boolean"}),
                  _param("query", "since", TIME, "Events open at or after this time." + ISO),
                  _param("query", "kind", {"type": "string", "enum": list(KINDS)}),
                  limit_arg(leasing_api.EVENTS_DEFAULT_LIMIT, leasing_api.EVENTS_MAX_LIMIT)),
              description="admin and noc tokens see every ISP's events, an ISP token its own; "
              "portal tokens are refused."),
    Operation("get", f"{API}/radius/sessions", "listRadiusSessions",
              "RADIUS sessions (live and past), the latest started first",
              aaa.RadiusSessionList, problems=(401, 403, 422), parameters=(
                  _param("query", "subscriber", NAME), _param("query", "line", ID),
                  _param("query", "isp", NAME), _param("query", "nas", NAME),
                  _param("query", "open", {"type": "boolean"},
                         "true: live sessions only (no Stop yet); false: ended ones only"),
                  limit_arg(aaa_api.SESSIONS_DEFAULT_LIMIT, aaa_api.SESSIONS_MAX_LIMIT)),
              description="admin and noc tokens see every ISP's sessions, an ISP token its "
              "own ISP's (naming another ISP is 403); portal tokens are refused."),
    Operation("get", f"{API}/aaa/decisions", "listAaaDecisions",
              "The decision log: Access-Requests answered, newest first", aaa.DecisionList,
              problems=(401, 403, 422), parameters=(
                  _param("query", "subscriber", NAME), _param("query", "line", ID),
                  _param("query", "isp", NAME), _param("query", "nas", NAME),
                  _param("query", "outcome", {"type": "string", "enum": list(aaa_api.OUTCOMES)}),
                  limit_arg(aaa_api.DECISIONS_DEFAULT_LIMIT, aaa_api.DECISIONS_MAX_LIMIT)),
              description="admin and noc tokens see every decision, an ISP token the ones "
              "that chose its ISP; portal tokens are refused."),
    Operation("get", f"{API}/aaa/rules", "listAaaRules",
              "The rules that choose an ISP, in the order they are tried", aaa.RuleList,
              problems=(401, 403, 422), description="admin and noc tokens only."),
    Operation("post", f"{API}/aaa/rules", "createAaaRule", "Add a rule that chooses an ISP",
              aaa.Rule, status=201, ok="The rule is stored and applies to the next request.",
              problems=(400, 401, 403, 404, 413, 415, 422), request=aaa.RuleRequest,
              description="admin and noc tokens only; audited. An unknown ISP is 404."),
    Operation("delete", f"{API}/aaa/rules/{{rule_id}}", "deleteAaaRule", "Remove a rule",
              aaa.Rule, ok="The rule is removed; the body is what it was.",
              problems=(401, 403, 404), parameters=(_param("path", "rule_id", ID),),
              description="admin and noc tokens only; audited."),
    Operation("get", f"{API}/radius/clients", "listRadiusClients",
              "The NAS clients (never their secrets)", aaa.RadiusClientList,
              problems=(401, 403, 422),
              description="admin and noc tokens only. Clients and their secrets are added and "
              "removed with `vpop radius client add|remove`, never over the API."),
    Operation("get", f"{API}/reports/usage", "getUsageReport",
              "Usage by subscriber, ISP or lease over a window", reports.UsageReport,
              ok="The report as JSON; with `format=csv` or `format=html` the same report as "
              "text/csv (an attachment) or a self-contained text/html page.",
              problems=(401, 403, 422), parameters=(
                  {**_param("query", "by", {"type": "string", "enum": list(reports_api.USAGE_BY)},
                            "one row per subscriber (and ISP), per ISP, or per lease version"),
                   "required": True},
                  {**_param("query", "from", TIME, "Window start (inclusive)." + ISO),
                   "required": True},
                  {**_param("query", "to", TIME, "Window end (exclusive)." + ISO),
                   "required": True},
                  _param("query", "format", {"type": "string", "default": "json",
                                             "enum": list(reports_api.USAGE_FORMATS)}),
                  _param("query", "isp", NAME, "only this ISP's usage"),
                  _param("query", "subscriber", NAME, "only this subscriber's usage")),
              description="admin and noc tokens read every ISP's usage; an ISP token's report "
              "is scoped to its own ISP (naming another ISP is 403); portal tokens are refused. "
              f"The window is at most {reports_api.USAGE_MAX_WINDOW.days} days. Each row's "
              "`coverage_pct` below 100 says some of its time was not measured by a regular "
              "poll.",
              media=("text/csv", "text/html"),
              headers={"Content-Disposition": "with format=csv: "
                       "`attachment; filename=\"usage-<by>-<from>-<to>.csv\"`"}),
    Operation("post", f"{API}/payments", "createPayment", "Authorise a payment",
              payments_api.PaymentModel, status=201,
              ok="AUTHORISED (held on the subscriber's spending limit until `expires_at`) or "
              "DECLINED with `decline_reason` (holding nothing).", headers=PAYMENT_HEADERS,
              problems=(400, 401, 403, 413, 415, 422), parameters=IDEMPOTENT,
              request=billing.PaymentBody, description="isp and merchant tokens only: the "
              "payee is the caller's ISP or merchant. `source_address` is the address the "
              "merchant saw the request come from."),
    Operation("get", f"{API}/payments", "listPayments", "Payments, newest first",
              payments_api.PaymentList, problems=(401, 403, 422), parameters=(
                  _param("query", "payee", NAME), _param("query", "subscriber", NAME),
                  _param("query", "status", STATUS),
                  _param("query", "since", TIME, "Created at or after this time." + ISO),
                  _param("query", "until", TIME, "Created before this time." + ISO),
                  limit_arg(payments_api.PAYMENTS_DEFAULT_LIMIT, payments_api.PAYMENTS_MAX_LIMIT)),
              description="admin and noc tokens see every payment, an ISP token its ISP's (its "
              "own and its merchants'), a merchant token its own (naming another payee is "
              "403); portal tokens are refused."),
    Operation("get", f"{API}/payments/{{payment_id}}", "getPayment",
              "One payment with its history", payments_api.PaymentModel,
              problems=(401, 404), parameters=(PAYMENT_ID,),
              description="Read like the list; another payee's is 404, as an unknown id is."),
    Operation("post", f"{API}/payments/{{payment_id}}/capture", "capturePayment",
              "Capture an authorised payment", payments_api.PaymentModel,
              ok="CAPTURED: the amount (or `amount_minor`, at most the authorised amount) is "
              "owed to the payee; the rest of the hold is released.",
              problems=(400, 401, 404, 409, 413, 415, 422), parameters=(PAYMENT_ID, *IDEMPOTENT),
              request=billing.CaptureBody, description=PAYMENT_ROLES + "A payment is captured "
              "once: another capture, or one of a voided or expired payment, is 409.",
              headers=PAYMENT_HEADERS),
    Operation("post", f"{API}/payments/{{payment_id}}/void", "voidPayment",
              "Void an authorised payment", payments_api.PaymentModel,
              ok="VOIDED: the whole hold is released.",
              problems=(400, 401, 404, 409, 413, 415, 422), parameters=(PAYMENT_ID, *IDEMPOTENT),
              description=PAYMENT_ROLES + "No body (or `{}`).", headers=PAYMENT_HEADERS),
    Operation("post", f"{API}/payments/{{payment_id}}/refunds", "refundPayment",
              "Refund (part of) a captured payment", payments_api.PaymentModel,
              ok="The payment with the refund; REFUNDED once all that was captured is.",
              problems=(400, 401, 404, 409, 413, 415, 422), parameters=(PAYMENT_ID, *IDEMPOTENT),
              request=billing.RefundBody, description=PAYMENT_ROLES + "Refunds may be several; "
              "in all never more than was captured (422).", headers=PAYMENT_HEADERS),
    Operation("get", f"{API}/subscribers/{{subscriber_id}}/spending-limit", "getSpendingLimit",
              "A subscriber's spending limit this month", payments_api.SpendingModel,
              problems=(401, 403, 404, 422), parameters=(SUBSCRIBER_ID,), description=OPS),
    Operation("put", f"{API}/subscribers/{{subscriber_id}}/spending-limit", "setSpendingLimit",
              "Change a subscriber's spending limit", payments_api.SpendingModel,
              ok="The limit, applied to this month at once.",
              problems=(400, 401, 403, 404, 413, 415, 422), parameters=(SUBSCRIBER_ID,),
              request=billing.LimitBody, description=OPS + " Audited."),
    Operation("get", f"{API}/subscribers/{{subscriber_id}}/bill", "getRunningBill",
              "A subscriber's running bill", None,
              ok="The bill of the period so far: plan charges, purchases, refunds and total.",
              problems=(401, 403, 404, 422), parameters=(
                  SUBSCRIBER_ID, _param("query", "period", PERIOD, "YYYY-MM; default this month")),
              description=OPS),
    Operation("get", f"{API}/payees", "listPayees", "Payees, by id", payments_api.PayeeList,
              problems=(401, 403, 422), parameters=(_param("query", "isp", NAME),),
              description="admin and noc tokens see every payee, an ISP token its ISP's own "
              "and its merchants (naming another ISP is 403), a merchant token its own."),
    Operation("post", f"{API}/payees", "createPayee", "Register a merchant under an ISP",
              payments_api.PayeeModel, status=201, ok="The merchant is registered.",
              problems=(400, 401, 403, 404, 409, 413, 415, 422), request=billing.PayeeBody,
              description="admin tokens only; audited. Its token: `vpop token create --role "
              "merchant --merchant ID`.", headers={"Location": "the ISP's payees"}),
    Operation("patch", f"{API}/payees/{{payee_id}}", "changePayee", "Change a payee",
              payments_api.PayeeModel, problems=(400, 401, 403, 404, 413, 415, 422),
              parameters=(_param("path", "payee_id", NAME),), request=billing.PayeePatch,
              description="admin tokens only; audited. Only the fields given change."),
    Operation("get", f"{API}/settlements", "listSettlements", "Settlements",
              settlements_api.SettlementList, problems=(401, 403, 422), parameters=(
                  _param("query", "period", PERIOD), _param("query", "payee", NAME)),
              description="admin and noc tokens see every settlement, an ISP token its ISP's "
              "and its merchants', a merchant token its own; portal tokens are refused."),
    Operation("get", f"{API}/settlements/{{settlement_id}}", "getSettlement", "One settlement",
              settlements_api.SettlementModel, problems=(401, 404), parameters=(SETTLEMENT_ID,),
              description="Read like the list; another payee's is 404, as an unknown id is."),
    Operation("get", f"{API}/settlements/{{settlement_id}}/statement", "getStatement",
              "A settlement's statement", None, ok="format=json: the stored canonical JSON, "
              "byte for byte; csv and html are rendered from it.",
              problems=(401, 404, 422), parameters=(SETTLEMENT_ID, _param(
                  "query", "format", {"type": "string", "default": "json",
                                      "enum": list(settlements_api.STATEMENT_FORMATS)})),
              description="Read like the settlement.", media=("text/csv", "text/html"),
              headers={"X-Content-SHA256": "SHA-256 of the body (json: `statement_sha256`)"}),
    Operation("post", f"{API}/settlements/runs", "runSettlements", "Settle a period",
              settlements_api.SettlementList, ok="One settlement per payee and currency with "
              "anything to settle; a final period settled before answers the same ones.",
              problems=(400, 401, 403, 404, 413, 415, 422),
              request=settlements_api.SettlementRunBody, headers={"Location": "the period's "
              "settlements"}, description="admin and noc tokens only. A month that has ended "
              "is settled finally, the current month up to now (interim)."),
    Operation("get", f"{API}/sessions", "listServiceSessions",
              "Service sessions (open and closed), the latest started first",
              reports.ServiceSessionList, problems=(401, 403, 422), parameters=(
                  _param("query", "subscriber", NAME), _param("query", "isp", NAME),
                  _param("query", "line", ID),
                  _param("query", "from", TIME, "Sessions not ended before this time." + ISO),
                  _param("query", "to", TIME, "Sessions started before this time." + ISO),
                  _param("query", "open", {"type": "boolean"},
                         "true: open sessions only; false: ended ones only"),
                  limit_arg(reports_api.SESSIONS_DEFAULT_LIMIT, reports_api.SESSIONS_MAX_LIMIT)),
              description="admin and noc tokens see every ISP's sessions, an ISP token its "
              "own ISP's (naming another ISP is 403); portal tokens are refused."),
)
# fmt: on


class SchemaGenerator(json_schema.GenerateJsonSchema):
    """pydantic's generator without field titles (the property name says it) and without
    ``null`` defaults (an optional request field is left out, never sent as null)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        """Never: a title copied from the field name says nothing."""
        return False

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        """The field's default, except None (see the class)."""
        default = super().get_default_value(schema)
        return json_schema.NoDefault if default is None else default


def _operation(op: Operation, refs: Mapping[Any, Any]) -> dict[str, Any]:
    """The OpenAPI operation object of one row of the table."""
    schema = refs[op.model, "serialization"] if op.model else {"type": "object"}
    text = op.ok or (op.model.__doc__ or "").split("\n")[0]
    ok: dict[str, Any] = {"description": text, "content": {JSON: {"schema": schema}}}
    ok["content"] |= {media: {"schema": {"type": "string"}} for media in op.media}
    if op.headers:
        ok["headers"] = {
            name: {"description": what, "schema": {"type": "string"}}
            for name, what in op.headers.items()
        }
    item: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    item |= {"description": op.description} if op.description else {}
    item |= {"security": op.security, "parameters": list(op.parameters)}
    if op.request:
        content = {JSON: {"schema": refs[op.request, "validation"]}}
        item["requestBody"] = {"required": True, "content": content}
    # any token's route refuses a merchant token (403) but the payments API's
    refused = {403} if op.security != PUBLIC else set()
    problems = {
        str(code): {"$ref": f"#/components/responses/Problem{code}"}
        for code in sorted({*op.problems, *refused, 500})
    }
    answers = {
        str(code): {"description": what, "content": {JSON: {"schema": schema}}}
        for code, what in op.also.items()
    }
    item["responses"] = {str(op.status): ok, **answers, **problems}
    return item


@cache
def _document() -> dict[str, Any]:
    """The document, assembled once per process (the models do not change while it runs)."""
    models: list[tuple[type[BaseModel], json_schema.JsonSchemaMode]] = [(Problem, "serialization")]
    models += [(op.request, "validation") for op in OPERATIONS if op.request]
    models += [(op.model, "serialization") for op in OPERATIONS if op.model]
    refs, defs = json_schema.models_json_schema(
        list(dict.fromkeys(models)), ref_template=REF, schema_generator=SchemaGenerator
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    problem = {PROBLEM: {"schema": {"$ref": REF.format(model="Problem")}}}
    responses = {
        f"Problem{status}": {"description": text, "content": problem}
        for status, text in PROBLEM_RESPONSES.items()
    }
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "responses": responses,
            "parameters": PARAMETERS,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API (a copy: the caller may change it)."""
    return copy.deepcopy(_document())


@bp.get("/openapi.json")
def get_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API."""
    return document()
