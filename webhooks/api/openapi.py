"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``.

Written by hand next to the views, and kept honest by a test that walks ``app.url_map``: every
rule under ``/api/v1`` (path and method) must be described here, and nothing else.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"


PROBLEM = "application/problem+json"


NAME_PATTERN = "^[a-z0-9][a-z0-9-]{0,30}$"


# kept equal to webhooks.api.LINE_IDENTIFIERS by a test
LINE_IDENTIFIERS = ("subscriber", "calling_number", "circuit_id", "access_id")


Security = list[dict[str, list[str]]]


READ: Security = [{"bearerAuth": []}]


WRITE: Security = [{"bearerAuth": []}, {"webhookSignature": []}]


PUBLIC: Security = []


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("schemas", schema)}}}


def _problems(*statuses: int) -> dict[str, Any]:
    return {str(status): _ref("responses", f"Problem{status}") for status in statuses}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _number(description: str | None = None) -> dict[str, Any]:
    extra = {"description": description} if description else {}
    return _nullable("number", **extra)


def _time_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description + " ISO 8601 with a UTC offset (`2025-06-01T12:00:00Z`; "
        "write `+` as `%2B`), or a date alone (midnight UTC).",
        "schema": {"type": "string", "format": "date-time"},
    }


def _limit_param(default: int, maximum: int) -> dict[str, Any]:
    return {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
    }


def _int_field(low: int, high: int, description: str, default: int | None = None) -> dict[str, Any]:
    field: dict[str, Any] = {
        "type": "integer",
        "minimum": low,
        "maximum": high,
        "description": description,
    }
    if default is not None:
        field["default"] = default
    return field


QOS_FIGURES = ("latency_ms", "jitter_ms", "loss_pct", "throughput_mbps")


def _monitoring_schemas() -> dict[str, Any]:
    return {
        "Qos": {
            "type": "object",
            "description": "An ISP's current QoS. Per figure: each router's newest sample "
            "with that figure counts if it is at most 5 minutes old; the figure is the mean "
            "over those routers, null when there is none. `age_seconds` gives each figure's "
            "age (its oldest sample); `measured_at` is the oldest sample shown.",
            "required": [*QOS_FIGURES, "measured_at", "age_seconds"],
            "properties": {
                "latency_ms": _number("round-trip time through the ISP"),
                "jitter_ms": _number(),
                "loss_pct": _number("probe loss, percent"),
                "throughput_mbps": _number(),
                "measured_at": _nullable("string", format="date-time"),
                "age_seconds": {
                    "type": "object",
                    "required": list(QOS_FIGURES),
                    "properties": {figure: _number() for figure in QOS_FIGURES},
                },
            },
        },
        "QosSample": {
            "type": "object",
            "required": ["at", "router", *QOS_FIGURES, "sent", "received"],
            "properties": {
                "at": {"type": "string", "format": "date-time"},
                "router": {"type": "string"},
                **{figure: _number() for figure in QOS_FIGURES},
                "sent": {"type": "integer", "description": "probes sent"},
                "received": {"type": "integer", "description": "probe answers received"},
            },
        },
        "QosSampleList": {
            "type": "object",
            "required": ["isp", "samples"],
            "properties": {
                "isp": {"type": "string", "pattern": NAME_PATTERN},
                "samples": {"type": "array", "items": _ref("schemas", "QosSample")},
            },
        },
        "LeaseRequest": {
            "type": "object",
            "description": "Lease an ISP's uplink on a router. The uplink is shaped to "
            "committed_mbps * peak_pct / 100; utilisation is measured against committed_mbps.",
            "additionalProperties": False,
            "required": ["isp", "router", "committed_mbps", "price_minor"],
            "properties": {
                "isp": {"type": "string", "pattern": NAME_PATTERN, "examples": ["isp-b"]},
                "router": {"type": "string", "pattern": NAME_PATTERN, "examples": ["rc1"]},
                "committed_mbps": _int_field(1, 400_000, "committed rate, Mbit/s"),
                "price_minor": _int_field(0, 10**12, "price in minor units (cents)"),
                "peak_pct": _int_field(100, 1000, "shaped peak, percent of committed", 125),
                "under_pct": _int_field(0, 99, "under-utilisation below this percent", 10),
                "over_pct": _int_field(1, 1000, "over-utilisation above this percent", 100),
                "hysteresis_pct": _int_field(
                    0, 50, "how far back inside the band an event must be to close", 5
                ),
                "event_seconds": _int_field(
                    1, 86_400, "how long a condition lasts before an event opens or closes", 60
                ),
                "ends_at": {
                    "type": "string",
                    "format": "date-time",
                    "description": "planned end, ISO 8601 with a UTC offset; after now",
                },
            },
        },
        "Lease": {
            "type": "object",
            "required": ["lease", "isp", "router", "uplink", "committed_mbps", "status"],
            "properties": {
                "lease": {"type": "integer"},
                "isp": {"type": "string"},
                "router": {"type": "string"},
                "uplink": {"type": "string", "description": "the uplink interface"},
                "committed_mbps": {"type": "integer"},
                "peak_pct": {"type": "integer"},
                "price_minor": {"type": "integer"},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "starts_at": _nullable("string", format="date-time"),
                "ends_at": _nullable("string", format="date-time"),
                "under_pct": {"type": "integer"},
                "over_pct": {"type": "integer"},
                "hysteresis_pct": {"type": "integer"},
                "event_seconds": {"type": "integer"},
                "status": {
                    "type": "string",
                    "enum": ["provisioning", "active", "ending", "ended"],
                },
            },
        },
        "LeaseList": {
            "type": "object",
            "required": ["leases"],
            "properties": {"leases": {"type": "array", "items": _ref("schemas", "Lease")}},
        },
        "UtilisationSample": {
            "type": "object",
            "required": ["at", "rate_mbps", "utilisation_pct"],
            "properties": {
                "at": {"type": "string", "format": "date-time"},
                "rate_mbps": {"type": "number"},
                "utilisation_pct": {"type": "number", "description": "rate / committed * 100"},
            },
        },
        "UtilisationEvent": {
            "type": "object",
            "required": ["event", "lease", "isp", "kind", "open", "opened_at", "seconds"],
            "properties": {
                "event": {"type": "integer"},
                "lease": {"type": "integer"},
                "isp": {"type": "string"},
                "kind": {"type": "string", "enum": ["under", "over"]},
                "open": {"type": "boolean"},
                "opened_at": {"type": "string", "format": "date-time"},
                "closed_at": _nullable("string", format="date-time"),
                "seconds": {"type": "number", "description": "duration; until now while open"},
                "extreme_pct": {
                    "type": "number",
                    "description": "peak (over) or lowest (under) utilisation, percent",
                },
            },
        },
        "Utilisation": {
            "type": "object",
            "required": ["lease", "since", "until", "samples", "p95_mbps", "p95_pct"],
            "properties": {
                "lease": _ref("schemas", "Lease"),
                "since": {"type": "string", "format": "date-time"},
                "until": {"type": "string", "format": "date-time"},
                "samples": {
                    "type": "array",
                    "description": "oldest first",
                    "items": _ref("schemas", "UtilisationSample"),
                },
                "p95_mbps": _number(
                    "95th-percentile rate of the window's samples, picked as LibreNMS bills"
                ),
                "p95_pct": _number("p95_mbps over the committed rate, percent"),
                "open_events": {
                    "type": "array",
                    "items": _ref("schemas", "UtilisationEvent"),
                },
            },
        },
        "EventList": {
            "type": "object",
            "required": ["events"],
            "properties": {
                "events": {"type": "array", "items": _ref("schemas", "UtilisationEvent")}
            },
        },
    }


def _monitoring_paths() -> dict[str, Any]:
    lease_id = _id_param("lease_id")
    return {
        "/api/v1/isps/{isp_id}/qos": {
            "get": {
                "operationId": "listIspQos",
                "summary": "An ISP's QoS samples, newest first",
                "description": "Any token; an ISP token reads only its own ISP.",
                "security": READ,
                "parameters": [
                    {
                        "name": "isp_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": NAME_PATTERN},
                    },
                    _time_param("since", "Samples at or after this time."),
                    _time_param("until", "Samples before this time."),
                    _limit_param(100, 1000),
                    {
                        "name": "router",
                        "in": "query",
                        "schema": {"type": "string", "pattern": NAME_PATTERN},
                    },
                ],
                "responses": {
                    "200": _ok("The samples.", "QosSampleList"),
                    **_problems(401, 403, 404, 422),
                },
            }
        },
        "/api/v1/leases": {
            "get": {
                "operationId": "listLeases",
                "summary": "Leases by id",
                "description": "admin and noc tokens see every lease, an ISP token its "
                "ISP's; portal tokens are refused.",
                "security": READ,
                "parameters": [
                    {
                        "name": "isp",
                        "in": "query",
                        "schema": {"type": "string", "pattern": NAME_PATTERN},
                    },
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["provisioning", "active", "ending", "ended"],
                        },
                    },
                ],
                "responses": {
                    "200": _ok("The leases.", "LeaseList"),
                    **_problems(401, 403, 422),
                },
            },
            "post": {
                "operationId": "createLease",
                "summary": "Lease an ISP's uplink on a router",
                "description": "admin and noc tokens only. The lease is written as "
                "`provisioning` and queued; the worker shapes the uplink and marks it "
                "`active`.",
                "security": READ,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("schemas", "LeaseRequest")}},
                },
                "responses": {
                    "201": {
                        "description": "The lease is recorded and queued for provisioning.",
                        "headers": {
                            "Location": {
                                "description": "the lease's URL",
                                "schema": {"type": "string"},
                            }
                        },
                        "content": {JSON: {"schema": _ref("schemas", "Lease")}},
                    },
                    **_problems(400, 401, 403, 404, 409, 413, 415, 422),
                },
            },
        },
        "/api/v1/leases/{lease_id}": {
            "get": {
                "operationId": "getLease",
                "summary": "One lease",
                "security": READ,
                "parameters": [lease_id],
                "responses": {
                    "200": _ok("The lease.", "Lease"),
                    **_problems(401, 403, 404),
                },
            }
        },
        "/api/v1/leases/{lease_id}/end": {
            "post": {
                "operationId": "endLease",
                "summary": "End a lease",
                "description": "admin and noc tokens only; no body (or `{}`). The lease is "
                "`ending` until the worker removes its shaping, then `ended`.",
                "security": READ,
                "parameters": [lease_id],
                "responses": {
                    "202": {
                        "description": "The end is recorded and queued.",
                        "content": {JSON: {"schema": _ref("schemas", "Lease")}},
                    },
                    **_problems(400, 401, 403, 404, 415, 422),
                },
            }
        },
        "/api/v1/leases/{lease_id}/utilisation": {
            "get": {
                "operationId": "getLeaseUtilisation",
                "summary": "A lease's utilisation samples, 95th percentile and open events",
                "description": "The window defaults to the day before `until` (default now) "
                "and is at most 31 days.",
                "security": READ,
                "parameters": [
                    lease_id,
                    _time_param("since", "Window start (inclusive)."),
                    _time_param("until", "Window end (exclusive)."),
                ],
                "responses": {
                    "200": _ok("The utilisation.", "Utilisation"),
                    **_problems(401, 403, 404, 422),
                },
            }
        },
        "/api/v1/events": {
            "get": {
                "operationId": "listEvents",
                "summary": "Under- and over-utilisation events, newest first",
                "description": "admin and noc tokens see every ISP's events, an ISP token "
                "its own; portal tokens are refused.",
                "security": READ,
                "parameters": [
                    {"name": "open", "in": "query", "schema": {"type": "boolean"}},
                    _time_param("since", "Events open at or after this time."),
                    {
                        "name": "kind",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["under", "over"]},
                    },
                    _limit_param(100, 1000),
                ],
                "responses": {
                    "200": _ok("The events.", "EventList"),
                    **_problems(401, 403, 422),
                },
            }
        },
    }


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM: {"schema": _ref("schemas", "Problem")}},
    }


PROBLEM_RESPONSES = {
    400: "Malformed request: the body is not UTF-8 JSON, or a header is malformed.",
    401: "Not authenticated: missing, malformed, repeated or wrong credentials.",
    403: "Authenticated, but not allowed (an ISP token acting for another ISP).",
    404: "No such object, or no such endpoint.",
    405: "The endpoint does not accept this method.",
    409: "The request conflicts with the current state (the uplink already has a lease).",
    413: "The body is larger than the limit (64 KiB by default).",
    415: "The body is not declared as application/json.",
    422: "The JSON is well formed but a value is not acceptable, or the idempotency key "
    "was used with another body.",
    500: "Internal error.",
}


def _schemas() -> dict[str, Any]:
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; `code` is the stable code in docs/errors.md.",
            "required": ["type", "title", "status", "detail", "code"],
            "properties": {
                "type": {
                    "type": "string",
                    "format": "uri",
                    "examples": ["tag:vpop,2025:VPOP-404-ISP"],
                },
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "code": {"type": "string", "pattern": "^VPOP-", "examples": ["VPOP-404-ISP"]},
            },
        },
        "SelectionRequest": {
            "type": "object",
            "description": "Move a line to an ISP. Name the line with exactly one of "
            "subscriber (the subscriber's first line), calling_number, circuit_id or access_id.",
            "additionalProperties": False,
            "required": ["isp"],
            "properties": {
                "isp": {"type": "string", "pattern": NAME_PATTERN, "examples": ["isp-b"]},
                "subscriber": {"type": "string", "pattern": NAME_PATTERN, "examples": ["sub1"]},
                "calling_number": {
                    "type": "string",
                    "description": "E.164, with the leading +",
                    "examples": ["+4930123456"],
                },
                "circuit_id": {"type": "string", "description": "DHCP option 82 circuit id"},
                "access_id": {"type": "string", "description": "the access network's line id"},
                "dry_run": {
                    "type": "boolean",
                    "default": False,
                    "description": "compute the diff only; change nothing",
                },
                "callback_url": {
                    "type": "string",
                    "format": "uri",
                    "description": "receives a signed callback when the order is final",
                },
            },
            "oneOf": [{"required": [name]} for name in LINE_IDENTIFIERS],
        },
        "Accepted": {
            "type": "object",
            "required": ["order", "status"],
            "properties": {
                "order": {"type": "integer"},
                "status": _ref("schemas", "OrderStatus"),
            },
        },
        "OrderStatus": {
            "type": "string",
            "enum": [
                "RECEIVED",
                "RUNNING",
                "DONE_SUCCESS",
                "DONE_FAILED",
                "UNKNOWN",
                "RECONCILED",
            ],
        },
        "Order": {
            "type": "object",
            "required": ["order", "status", "line", "router", "isp", "dry_run", "final"],
            "properties": {
                "order": {"type": "integer"},
                "status": _ref("schemas", "OrderStatus"),
                "line": {"type": "integer"},
                "router": {"type": "string"},
                "isp": {"type": "string"},
                "dry_run": {"type": "boolean"},
                "requester": {"type": "string", "examples": ["token:3", "webhook"]},
                "run": _nullable("integer"),
                "diff": {"type": "string"},
                "error": _nullable("string"),
                "callback": _nullable("string"),
                "created_at": _nullable("string", format="date-time"),
                "started_at": _nullable("string", format="date-time"),
                "finished_at": _nullable("string", format="date-time"),
                "final": {"type": "boolean"},
            },
        },
        "Line": {
            "type": "object",
            "required": ["line", "router", "interface", "prefix", "current_isp", "default"],
            "properties": {
                "line": {"type": "integer"},
                "router": {"type": "string"},
                "interface": {"type": "string"},
                "prefix": {"type": "string"},
                "calling_number": _nullable("string"),
                "circuit_id": _nullable("string"),
                "access_id": _nullable("string"),
                "current_isp": _nullable(
                    "string", description="the selected ISP; null: the router's default route"
                ),
                "default": {"type": "boolean", "description": "true when no ISP is selected"},
            },
        },
        "Subscriber": {
            "type": "object",
            "required": ["subscriber", "name", "lines"],
            "properties": {
                "subscriber": {"type": "string"},
                "name": {"type": "string"},
                "lines": {"type": "array", "items": _ref("schemas", "Line")},
            },
        },
        "Run": {
            "type": "object",
            "required": ["run", "router", "kind", "status", "dry_run"],
            "properties": {
                "run": {"type": "integer"},
                "router": {"type": "string"},
                "kind": {"type": "string", "enum": ["selection", "reconcile", "dry_run"]},
                "trigger": {"type": "string"},
                "requester": {"type": "string"},
                "dry_run": {"type": "boolean"},
                "status": {"type": "string", "enum": ["RUNNING", "SUCCESS", "FAILED", "UNKNOWN"]},
                "diff": {"type": "string"},
                "result": {"type": "object", "description": "per-host results"},
                "timings": {"type": "object"},
                "error": _nullable("string"),
                "started_at": _nullable("string", format="date-time"),
                "finished_at": _nullable("string", format="date-time"),
            },
        },
        "RunList": {
            "type": "object",
            "required": ["runs"],
            "properties": {"runs": {"type": "array", "items": _ref("schemas", "Run")}},
        },
        "Plan": {
            "type": "object",
            "required": ["id", "name", "speed_mbps", "monthly_price_minor", "currency"],
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "speed_mbps": {"type": "integer"},
                "monthly_price_minor": {
                    "type": "integer",
                    "description": "price per month in minor units (cents)",
                },
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            },
        },
        "Catalogue": {
            "type": "object",
            "required": ["isps"],
            "properties": {
                "isps": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "name", "plans", "qos"],
                        "properties": {
                            "id": {"type": "string", "pattern": NAME_PATTERN},
                            "name": {"type": "string"},
                            "plans": {"type": "array", "items": _ref("schemas", "Plan")},
                            "qos": _ref("schemas", "Qos"),
                        },
                    },
                }
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        },
        **_monitoring_schemas(),
    }


def _paths() -> dict[str, Any]:
    return {
        "/api/v1/selections": {
            "post": {
                "operationId": "createSelection",
                "summary": "Order a line's move to an ISP",
                "description": "Authenticate with a bearer token or a Standard Webhooks "
                "signature. Replays (same webhook-id, or same Idempotency-Key for a token) "
                "return the same order with `Idempotent-Replayed: true`.",
                "security": WRITE,
                "parameters": [
                    _ref("parameters", "IdempotencyKey"),
                    _ref("parameters", "WebhookId"),
                    _ref("parameters", "WebhookTimestamp"),
                ],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("schemas", "SelectionRequest")}},
                },
                "responses": {
                    "202": {
                        "description": "The order is recorded and queued.",
                        "headers": {
                            "Location": {
                                "description": "the order's URL",
                                "schema": {"type": "string"},
                            },
                            "Idempotent-Replayed": {
                                "description": "present (true) on a replay",
                                "schema": {"type": "string", "const": "true"},
                            },
                        },
                        "content": {JSON: {"schema": _ref("schemas", "Accepted")}},
                    },
                    **_problems(400, 401, 403, 404, 413, 415, 422),
                },
            }
        },
        "/api/v1/orders/{order_id}": {
            "get": {
                "operationId": "getOrder",
                "summary": "One order",
                "description": "An ISP token reads only the orders its ISP requested.",
                "security": READ,
                "parameters": [_id_param("order_id")],
                "responses": {"200": _ok("The order.", "Order"), **_problems(401, 403, 404)},
            }
        },
        "/api/v1/subscribers/{subscriber_id}": {
            "get": {
                "operationId": "getSubscriber",
                "summary": "A subscriber's lines and current ISPs",
                "security": READ,
                "parameters": [
                    {
                        "name": "subscriber_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": NAME_PATTERN},
                    }
                ],
                "responses": {
                    "200": _ok("The subscriber.", "Subscriber"),
                    **_problems(401, 404, 422),
                },
            }
        },
        "/api/v1/runs": {
            "get": {
                "operationId": "listRuns",
                "summary": "Recent runs, newest first",
                "security": READ,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    },
                    {
                        "name": "router",
                        "in": "query",
                        "schema": {"type": "string", "pattern": NAME_PATTERN},
                    },
                ],
                "responses": {"200": _ok("The runs.", "RunList"), **_problems(401, 422)},
            }
        },
        "/api/v1/runs/{run_id}": {
            "get": {
                "operationId": "getRun",
                "summary": "One run",
                "security": READ,
                "parameters": [_id_param("run_id")],
                "responses": {"200": _ok("The run.", "Run"), **_problems(401, 404)},
            }
        },
        "/api/v1/isps": {
            "get": {
                "operationId": "listIsps",
                "summary": "The public ISP catalogue: plans, speeds, prices, current QoS",
                "security": PUBLIC,
                "responses": {"200": _ok("The catalogue.", "Catalogue")},
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getOpenapi",
                "summary": "This document",
                "security": PUBLIC,
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "getHealth",
                "summary": "Liveness",
                "security": PUBLIC,
                "responses": {"200": _ok("The process is up.", "Health")},
            }
        },
        **_monitoring_paths(),
    }


def _id_param(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }


def _header(name: str, description: str, pattern: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string", "pattern": pattern},
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API."""
    key_pattern = "^[A-Za-z0-9][A-Za-z0-9_.:~-]{0,199}$"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vpop API",
            "version": "1",
            "description": "Subscribers pick their ISP; routers follow. Errors are RFC 9457 "
            "problem details with a stable `code` (see docs/errors.md).",
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": {
                f"Problem{status}": _problem_response(text)
                for status, text in PROBLEM_RESPONSES.items()
            },
            "parameters": {
                "IdempotencyKey": _header(
                    "Idempotency-Key",
                    "bearer callers: the same key and body return the same order",
                    key_pattern,
                ),
                "WebhookId": _header(
                    "webhook-id",
                    "Standard Webhooks message id; also the idempotency key",
                    key_pattern,
                ),
                "WebhookTimestamp": _header(
                    "webhook-timestamp",
                    "Standard Webhooks timestamp, Unix seconds, within 5 minutes of now",
                    "^[0-9]{1,12}$",
                ),
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "vpop_... tokens from `vpop token create`; roles admin, "
                    "noc, portal, isp (an isp token acts only for its own ISP).",
                },
                "webhookSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "webhook-signature",
                    "description": "Standard Webhooks: `v1,<base64 HMAC-SHA256>` of "
                    "`{webhook-id}.{webhook-timestamp}.{raw body}` with a shared `whsec_` "
                    "secret; send webhook-id and webhook-timestamp too.",
                },
            },
        },
    }
