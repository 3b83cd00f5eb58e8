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
                        "required": ["id", "name", "plans"],
                        "properties": {
                            "id": {"type": "string", "pattern": NAME_PATTERN},
                            "name": {"type": "string"},
                            "plans": {"type": "array", "items": _ref("schemas", "Plan")},
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
                "summary": "The public ISP catalogue: plans, speeds, prices",
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
