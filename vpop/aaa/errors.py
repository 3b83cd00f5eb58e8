"""The AAA domain's errors: one base class, one subclass per way a request is refused.

Each carries a stable code (``docs/aaa.md`` lists them); a rejected Access-Request says the
same thing in its Reply-Message.
"""

from __future__ import annotations

from typing import Any

from vpop.core.errors import BadInput, NotFound, VpopError


class AaaError(VpopError):
    """Base class of the AAA domain's refusals."""

    code = "VPOP-AAA"
    status = 403


class IdentityConflict(AaaError):
    """Two identifiers of one request name two different lines."""

    code = "VPOP-409-IDENTITY"
    status = 409

    def __init__(self, first: tuple[str, str, int], second: tuple[str, str, int]) -> None:
        """Build the error from the two disagreeing identifiers.

        Args:
            first: ``(kind, value, line id)`` of the identifier that wins by precedence.
            second: ``(kind, value, line id)`` of the first one that names another line.
        """
        self.first = first
        self.second = second
        super().__init__(
            f"identifiers conflict: {first[0]} {first[1]!r} names line {first[2]}, "
            f"{second[0]} {second[1]!r} names line {second[2]}"
        )

    def details(self) -> dict[str, Any]:
        """Both identifiers as JSON, for the audit log and the decision."""
        return {
            "first": {"kind": self.first[0], "value": self.first[1], "line": self.first[2]},
            "second": {"kind": self.second[0], "value": self.second[1], "line": self.second[2]},
        }


class UnknownLine(NotFound):
    """No line matches any identifier of the request."""

    code = "VPOP-404-LINE"


class UnknownRule(NotFound):
    """No AAA rule has that id."""

    code = "VPOP-404-AAA-RULE"


class BadRule(BadInput):
    """A rule's match or priority is not acceptable."""

    code = "VPOP-400-AAA-RULE"
