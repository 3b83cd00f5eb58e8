"""The JSON shapes of vpop's API as pydantic v2 models: what every domain's schemas build on.

Each domain declares its request and response bodies in its own ``schemas.py`` on
:class:`Strict` (strict types, unknown keys refused, frozen); ``webhooks/api/openapi.py``
assembles their JSON schemas into the OpenAPI document, so the document and the parsers are
one thing.

The field validators stay :mod:`vpop.core.validate`'s functions, with their messages and
codes: :class:`Canonical` runs one on a JSON string field, :class:`Bounds` holds an integer
field to a range, and :func:`bad_input` turns pydantic's ``ValidationError`` into the
:class:`~vpop.core.errors.BadInput` the API has always answered with.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    ValidationInfo,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema
from pydantic_core.core_schema import CoreSchema

from vpop.core import validate
from vpop.core.errors import BadInput

#: A :mod:`vpop.core.validate` function: the untrusted value and its field name in, the
#: canonical value out, or :class:`BadInput`.
Check = Callable[[Any, str], Any]

# pydantic's strict type errors, as the JSON type the caller should have sent
JSON_TYPES = {"string_type": "string", "int_type": "integer", "bool_type": "boolean"}

# the error type that carries a vpop.core.validate problem through pydantic
VPOP_ERROR = "vpop"


def json_pattern(regex: re.Pattern[str]) -> str:
    """A Python full-match regex as the JSON Schema ``pattern`` that means the same.

    JSON Schema patterns search, so the regex is anchored; vpop's regexes use only syntax
    that ECMA-262 reads alike (character classes and counted repeats).
    """
    return f"^(?:{regex.pattern})$"


# the validators' own patterns, so that the document says exactly what they accept
NAME_PATTERN = json_pattern(validate.NAME)
E164_PATTERN = json_pattern(validate.E164)
LINE_ID_PATTERN = json_pattern(validate.LINE_ID)
URL_MAX_LENGTH = validate.URL_MAX


def short(text: str, limit: int = 40) -> str:
    """``repr`` of a caller's string, cut short: safe to echo in a problem detail."""
    shown = repr(text[:limit])
    return shown + "..." if len(text) > limit else shown


def _carried(err: BadInput) -> PydanticCustomError:
    """A vpop problem as a pydantic error, so that pydantic reports it in field order."""
    return PydanticCustomError(VPOP_ERROR, "{message}", {"message": err.message, "code": err.code})


class Canonical:
    """Field metadata: a JSON string in, a :mod:`vpop.core.validate` function's result out.

    Only a ``str`` passes (``null``, numbers and lists are type errors, even where the field
    may be absent); the function then canonicalises it or refuses it with its own message
    and code. The JSON schema says ``string`` plus the keywords given here (``pattern``,
    ``format``, ``description``, ``examples``).
    """

    def __init__(self, check: Check, **schema: Any) -> None:
        """Wrap ``check``; ``schema`` are the JSON Schema keywords that describe its rule."""
        self.check = check
        self.schema = schema

    def __get_pydantic_core_schema__(
        self, _source: Any, _handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        """Replace the annotated type's validation with :meth:`validate`."""
        return core_schema.with_info_plain_validator_function(self.validate)

    def __get_pydantic_json_schema__(
        self, _schema: CoreSchema, _handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """A JSON string with this rule's keywords."""
        return {"type": "string", **self.schema}

    def validate(self, value: Any, info: ValidationInfo) -> Any:
        """Check one value of the field ``info`` names.

        Raises:
            PydanticCustomError: ``string_type`` for a non-string, else the check's problem.
        """
        if type(value) is not str:
            raise PydanticCustomError("string_type", "Input should be a valid string")
        try:
            return self.check(value, info.field_name or "value")
        except BadInput as err:
            raise _carried(err) from None


class Bounds:
    """Field metadata and rule: a whole number from ``low`` to ``high``, both included.

    The same object checks the API's bodies (as pydantic metadata), the domain functions'
    arguments (:meth:`check`) and the command line's options (``click.IntRange(low, high)``),
    and gives the JSON schema its ``minimum`` and ``maximum``.
    """

    def __init__(self, low: int, high: int, description: str) -> None:
        """The range ``low..high`` of a field that ``description`` explains."""
        self.low = low
        self.high = high
        self.description = description

    def __repr__(self) -> str:
        """``Bounds(low, high)``, for test reports."""
        return f"Bounds({self.low}, {self.high})"

    def check(self, value: object, field: str) -> int:
        """``value`` if it is an ``int`` (not a ``bool``) within the range.

        Raises:
            BadInput: anything else, naming the field and the range.
        """
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not self.low <= value <= self.high
        ):
            raise BadInput(
                f"{field}: must be a whole number from {self.low} to {self.high}, not {value!r}"
            )
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        """The strict integer schema, then :meth:`check` under the field's name."""

        def within(value: int, info: ValidationInfo) -> int:
            """:meth:`check`, its problem carried through pydantic in field order."""
            try:
                return self.check(value, info.field_name or "value")
            except BadInput as err:
                raise _carried(err) from None

        return core_schema.with_info_after_validator_function(within, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The integer schema with this range and description."""
        return {
            **handler(schema),
            "minimum": self.low,
            "maximum": self.high,
            "description": self.description,
        }


class Strict(BaseModel):
    """The base of every API body: strict JSON types, unknown keys refused, immutable.

    Strict means no coercion: ``"1"`` is not an integer, ``1`` is not ``true``.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Request(Strict):
    """A request body, parsed by :meth:`parse` into a model or one :class:`BadInput`.

    Subclasses say how a missing field is worded (:attr:`missing_message`, with
    ``{missing}`` and ``{required}``) and whether missing fields are reported before
    malformed ones (:attr:`missing_first`), as their parsers always have.
    """

    missing_message: ClassVar[str] = "{missing} is required"
    missing_first: ClassVar[bool] = False

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Self:
        """The model of a decoded JSON body.

        Raises:
            BadInput: the first problem (see :func:`bad_input`); a model validator's own
                :class:`BadInput` passes through unchanged.
        """
        try:
            return cls.model_validate(body)
        except ValidationError as err:
            raise bad_input(err, cls) from err


def bad_input(err: ValidationError, model: type[Request]) -> BadInput:
    """The one :class:`BadInput` that reports a request body's first problem.

    In order: an unknown key (the caller's first, ``VPOP-400-UNKNOWN-FIELD``); missing
    fields, when the model reports them first (``VPOP-400-MISSING``); the first field, in
    the model's order, with the wrong JSON type (``VPOP-400-TYPE``) or a value its validator
    refused (that validator's message and code); then missing fields.
    """
    errors = err.errors(include_url=False)
    for error in errors:
        if error["type"] == "extra_forbidden":
            return BadInput(
                f"unknown field {short(str(error['loc'][0]))}; "
                f"allowed: {', '.join(model.model_fields)}",
                code="VPOP-400-UNKNOWN-FIELD",
            )
    missing = [str(error["loc"][0]) for error in errors if error["type"] == "missing"]
    required = [name for name, field in model.model_fields.items() if field.is_required()]
    missed = BadInput(
        model.missing_message.format(missing=", ".join(missing), required=", ".join(required)),
        code="VPOP-400-MISSING",
    )
    if missing and model.missing_first:
        return missed
    for error in errors:
        name = ".".join(str(part) for part in error["loc"])
        if error["type"] in JSON_TYPES and name:
            return BadInput(
                f"{name} must be a JSON {JSON_TYPES[error['type']]}", code="VPOP-400-TYPE"
            )
        if error["type"] == VPOP_ERROR:
            context = error.get("ctx", {})
            return BadInput(str(context["message"]), code=str(context["code"]))
        if error["type"] == "model_type":
            return BadInput("the body must be a JSON object", code="VPOP-400-TYPE")
    if missing:
        return missed
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return BadInput(f"{where}: {first['msg']}")


# --- bodies shared by every domain ----------------------------------------------------------

#: An ISO 4217 currency code, as every price carries.
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])]


class Problem(Strict):
    """RFC 9457 problem details; ``code`` is the stable code in docs/errors.md.

    Every error of the API is this body, as ``application/problem+json``.
    """

    type: Annotated[
        str,
        Field(json_schema_extra={"format": "uri", "examples": ["tag:vpop,2025:VPOP-404-ISP"]}),
    ]
    title: Annotated[str, Field(description="the HTTP reason phrase")]
    status: Annotated[int, Field(description="the HTTP status code")]
    detail: Annotated[str, Field(description="what happened to this request, what to change")]
    code: Annotated[str, Field(pattern=r"^VPOP-", examples=["VPOP-404-ISP"])]


class QueueHealth(Strict):
    """Whether the queue's storage (SQLite file or Redis) answers."""

    reachable: bool


class StuckLock(Strict):
    """A lock held past its lease: its holder died and nobody has recovered its work yet."""

    name: str
    holder: str | None
    expired_at: Annotated[str | None, Field(json_schema_extra={"format": "date-time"})]


class FailingRouter(Strict):
    """A router whose latest poll of a job failed."""

    router: str
    job: str
    at: Annotated[str | None, Field(json_schema_extra={"format": "date-time"})]
    error: str


class Health(Strict):
    """The queue's and the routers' real state: ``ok``, or ``degraded`` with the reasons."""

    status: Literal["ok", "degraded"]
    reasons: list[str]
    queue: QueueHealth
    stuck_locks: list[StuckLock]
    failing_routers: list[FailingRouter]
    oldest_waiting_order_seconds: float | None
