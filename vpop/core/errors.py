"""vpop's exception hierarchy.

Every operator-facing error carries a stable ``code`` that ``docs/errors.md`` explains.
"""

from __future__ import annotations


class VpopError(Exception):
    """Base class of every error vpop raises on purpose."""

    code = "VPOP-000"
    status = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadInput(VpopError):
    """A value given by a user or a caller is not acceptable."""

    code = "VPOP-400"
    status = 422


class NotFound(VpopError):
    """A named object does not exist."""

    code = "VPOP-404"
    status = 404


class LabError(VpopError):
    """The namespace lab could not be built, inspected or removed."""

    code = "VPOP-LAB"


class ConfigError(VpopError):
    """A configuration file or setting is invalid."""

    code = "VPOP-CFG"
