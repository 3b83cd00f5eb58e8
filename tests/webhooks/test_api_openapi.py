"""The OpenAPI document describes exactly the routes the app serves, and is valid OpenAPI."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from vpop.selection.service import LINE_IDENTIFIERS, OrderStatus, SelectionBody
from webhooks.api import openapi

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def _served(app: Flask) -> set[tuple[str, str]]:
    """(OpenAPI path, method) for every rule under /api/v1, plus /healthz."""
    served = set()
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/api/v1/") or rule.rule == "/healthz"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in IGNORED_METHODS:
                served.add((path, method.lower()))
    return served


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_route_is_described_and_nothing_else(app: Flask, client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    described = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    served = _served(app)
    assert len(served) >= 7
    assert served - described == set(), "routes missing from the OpenAPI document"
    assert described - served == set(), "the OpenAPI document describes routes that do not exist"


# error statuses answered with the operation's own body rather than a problem
NON_PROBLEM_ERRORS = {("getHealth", "503")}


def test_the_document_is_well_formed(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["components"]["securitySchemes"]) == {"bearerAuth", "webhookSignature"}
    for ref in _refs(doc):
        assert ref.startswith("#/")
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, f"dangling $ref {ref}"
            node = node[part]
    operation_ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))
    for item in doc["paths"].values():
        for op in item.values():
            assert "security" in op
            assert {"200", "201", "202"} & set(op["responses"])
            for status, response in op["responses"].items():
                if int(status) >= 400 and (op["operationId"], status) not in NON_PROBLEM_ERRORS:
                    assert response["$ref"].startswith("#/components/responses/Problem")


def test_the_selection_schema_matches_the_parser() -> None:
    schema = openapi.document()["components"]["schemas"]["SelectionBody"]
    assert set(schema["properties"]) == set(SelectionBody.model_fields)
    assert schema["oneOf"] == [{"required": [name]} for name in LINE_IDENTIFIERS]
    assert schema["additionalProperties"] is False


def test_the_document_passes_the_openapi_validator(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    validate(doc)  # raises OpenAPIValidationError with the first problem
    assert doc["openapi"] == "3.1.0"
    broken = {**doc, "paths": {**doc["paths"], "/healthz": {"get": {"responses": {"200": {}}}}}}
    with pytest.raises(OpenAPIValidationError):
        validate(broken)  # a response without a description: the validator does look


def test_the_document_is_generated_from_the_models() -> None:
    schemas = openapi.document()["components"]["schemas"]
    assert schemas["SelectionBody"] == SelectionBody.model_json_schema(
        ref_template=openapi.REF, schema_generator=openapi.SchemaGenerator
    )
    assert set(schemas["OrderStatus"]["enum"]) == set(OrderStatus)
