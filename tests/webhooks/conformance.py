"""The API's real responses held against its OpenAPI document.

:class:`Conformance` checks one response: its route and status must be documented, its
content type must be the documented one (``application/json`` or
``application/problem+json``) and its JSON body must validate against that status's schema
(JSON Schema 2020-12, the dialect of OpenAPI 3.1, with the document as a ``referencing``
resource so that its ``$ref`` s resolve). ``tests/webhooks/conftest.py`` connects
:meth:`Conformance.record` to Flask's ``request_finished`` signal for every test here, so
every response any of these tests provokes, from any app, is checked.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask, Response, request
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

URI = "urn:vpop:openapi"
PROBLEM = "application/problem+json"
IGNORED_METHODS = {"HEAD", "OPTIONS"}

# a Flask rule's variable (<int:order_id>) as an OpenAPI path template ({order_id})
_VARIABLE = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


def openapi_path(rule: str) -> str:
    """The OpenAPI path of a Flask URL rule."""
    return _VARIABLE.sub(r"{\1}", rule)


def checked(path: str) -> bool:
    """Whether the document describes the responses of ``path``: the API and ``/healthz``."""
    return path.startswith("/api/v1/") or path == "/healthz"


def _escape(part: str) -> str:
    """One JSON Pointer reference token (RFC 6901)."""
    return part.replace("~", "~0").replace("/", "~1")


class Conformance:
    """Checks responses against one OpenAPI document and keeps what it found."""

    def __init__(self, document: dict[str, Any]) -> None:
        """Check against ``document``."""
        self.document = document
        self.registry: Registry[Any] = Registry().with_resource(
            URI, DRAFT202012.create_resource(document)
        )
        self.violations: list[str] = []
        self.seen: set[tuple[str, str, int]] = set()
        self._validators: dict[str, Draft202012Validator] = {}

    def check(
        self, method: str, rule: str | None, status: int, mimetype: str, body: bytes
    ) -> list[str]:
        """What is wrong with one response; nothing when the document describes it.

        Args:
            method: The request's method.
            rule: The Flask URL rule that matched, None when none did (a 404 or 405 of
                routing: then the body must be a problem).
            status: The response's status code.
            mimetype: The response's content type, without parameters.
            body: The response's body.
        """
        if rule is None:
            where = f"{method} (no route) {status}"
            schemas = {PROBLEM: f"{URI}#/components/schemas/Problem"}
        else:
            path, verb = openapi_path(rule), method.lower()
            where = f"{method} {path} {status}"
            operation = self.document["paths"].get(path, {}).get(verb)
            if operation is None:
                return [f"{method} {path} is not in the document"]
            response = operation["responses"].get(str(status))
            if response is None:
                return [f"{where}: the status is not documented for this operation"]
            pointer = f"/paths/{_escape(path)}/{verb}/responses/{status}"
            if "$ref" in response:
                pointer = response["$ref"].removeprefix("#")
                response = self._resolve(pointer)
            schemas = {
                media: f"{URI}#{pointer}/content/{_escape(media)}/schema"
                for media in response.get("content", {})
            }
            self.seen.add((verb, path, status))
        if mimetype not in schemas:
            return [f"{where}: content type {mimetype!r}, documented {sorted(schemas)}"]
        if not mimetype.endswith("json"):
            return []  # a text body (CSV, HTML): documented as a string, nothing to parse
        try:
            value = json.loads(body)
        except ValueError as err:
            return [f"{where}: the body is not JSON ({err})"]
        validator = self._validator(schemas[mimetype])
        return [
            f"{where}: {error.message} at {error.json_path}"
            for error in validator.iter_errors(value)
        ]

    def record(self, _app: Flask, response: Response, **_extra: Any) -> None:
        """Check the response of the current request, if the document describes its path.

        A receiver of Flask's ``request_finished``: what it finds is kept in
        :attr:`violations` (raising here would be swallowed on error responses).
        """
        if request.method in IGNORED_METHODS or not checked(request.path):
            return
        rule = request.url_rule.rule if request.url_rule is not None else None
        try:
            found = self.check(
                request.method, rule, response.status_code, response.mimetype or "",
                response.get_data(),
            )  # fmt: skip
        except Exception as err:  # a bug in the checker must fail the test, not pass it
            found = [f"{request.method} {request.path}: the check failed: {err!r}"]
        self.violations.extend(found)

    def _resolve(self, pointer: str) -> dict[str, Any]:
        """The object a JSON Pointer names in the document (a ``$ref`` of a response)."""
        node: Any = self.document
        for part in pointer.removeprefix("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return dict(node)

    def _validator(self, uri: str) -> Draft202012Validator:
        """A validator of the schema at ``uri`` (in the document), made once."""
        if uri not in self._validators:
            self._validators[uri] = Draft202012Validator({"$ref": uri}, registry=self.registry)
        return self._validators[uri]
