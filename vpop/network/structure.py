"""The structure check: a rendered configuration must have exactly the shape its template gives
when rendered with placeholders, token for token, so a value can fill a slot but never add a
line, a keyword or a second command (a newline or a space smuggled into a value is refused).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from vpop.core import validate
from vpop.core.errors import BadInput


class StructureError(BadInput):
    """A rendered config does not have the line structure of its template."""

    code = "VPOP-RENDER"


#: keys whose string values are kept as they are in the placeholder render
_KEEP_KEYS = frozenset({"platform"})


_PREFIX_KEYS = frozenset({"prefix", "outbound_deny"})


_INTERFACE_ADDRESS_KEYS = frozenset({"address", "gateway"})


_ADDRESS_KEYS = frozenset({"next_hop"})


# In a placeholder render, these are the values; everything else is the template's literal
# text. IPv6 before IPv4 (an IPv6 address may end in an IPv4 one), names are the x<N>
# placeholders, numbers are derived values such as a Junos unit.
_VALUE_IN_PLACEHOLDER_TEXT = re.compile(
    r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:[0-9A-Fa-f]{1,4}|[0-9]{1,3}(?:\.[0-9]{1,3}){3})?(?:/[0-9]{1,3})?(?![0-9A-Za-z:.])"
    r"|(?<![0-9A-Za-z.])[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?:/[0-9]{1,3})?(?![0-9A-Za-z.])"
    r"|(?<![0-9A-Za-z])x[0-9]+(?![0-9])"
    r"|(?<![0-9A-Za-z])[0-9]+(?![0-9A-Za-z])",
    re.ASCII,
)


# What a value may look like in real text: no space, quote, brace, bracket, ';', ',', '!',
# '#', or anything non-ASCII, so it can never open a block, end a statement or add a token.
_VALUE_SLOT = "[A-Za-z0-9_.:/-]+"


_MAX_TOKEN = 200


class Placeholders:
    """Replaces every string leaf of the variables with a safe value of the same kind.

    Names become ``x0``, ``x1``, ... (the same name always gets the same placeholder, so
    references such as a line's ``isp`` still find their ISP). An IP value that validates
    is replaced by its own canonical form: templates and devices depend on its family, its
    length and, in nft sets, on which prefixes merge, and re-printing it through
    ``ipaddress`` keeps exactly that while dropping anything smuggled in. One that does not
    validate becomes a fresh documentation value.
    """

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.fallbacks = 0

    def _ip(self, value: str, key: str) -> str:
        try:
            if key in _PREFIX_KEYS:
                return validate.prefix(value, key)
            if key in _INTERFACE_ADDRESS_KEYS:
                return validate.interface_address(value, key)
            return validate.address(value, key)
        except BadInput:
            self.fallbacks += 1
            host = self.fallbacks % 250 + 1
            if key in _PREFIX_KEYS:
                return f"203.0.113.{host}/32"
            if key in _INTERFACE_ADDRESS_KEYS:
                return f"198.51.100.{host}/24"
            return f"192.0.2.{host}"

    def variables(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        return {str(k): self.replace(v, str(k)) for k, v in variables.items()}

    def replace(self, value: object, key: str = "") -> object:
        if isinstance(value, Mapping):
            return {k: self.replace(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.replace(v, key) for v in value]
        if not isinstance(value, str) or key in _KEEP_KEYS:
            return value
        if key in _PREFIX_KEYS | _INTERFACE_ADDRESS_KEYS | _ADDRESS_KEYS:
            return self._ip(value, key)
        if value not in self.names:
            self.names[value] = f"x{len(self.names)}"
        return self.names[value]


@functools.lru_cache(maxsize=4096)
def _token_pattern(token: str) -> re.Pattern[str]:
    parts: list[str] = []
    position = 0
    for match in _VALUE_IN_PLACEHOLDER_TEXT.finditer(token):
        parts += [re.escape(token[position : match.start()]), _VALUE_SLOT]
        position = match.end()
    parts.append(re.escape(token[position:]))
    return re.compile("".join(parts))


def _split(line: str) -> list[str]:
    """Tokens and the whitespace between them (kept, so indentation and tabs count)."""
    return re.split(r"(\s+)", line)


@functools.lru_cache(maxsize=16384)
def _line_matches(got: str, pattern_line: str) -> bool:
    """Whether a rendered line has the placeholder line's tokens (a pure function of the two
    lines, kept per process: a router's configuration repeats from run to run, and checking
    its lines token by token was a quarter of a dry run's time)."""
    got_tokens, expected_tokens = _split(got), _split(pattern_line)
    return len(got_tokens) == len(expected_tokens) and all(
        token == model
        if index % 2  # whitespace between tokens
        else len(token) <= _MAX_TOKEN and bool(_token_pattern(model).fullmatch(token))
        for index, (token, model) in enumerate(zip(got_tokens, expected_tokens, strict=True))
    )


def compare_structure(where: str, text: str, expected: str) -> None:
    """Require ``text`` to have ``expected``'s lines and literal tokens (values masked).

    Raises:
        StructureError: naming the first line that differs.
    """
    got_lines, expected_lines = text.splitlines(), expected.splitlines()
    if len(got_lines) != len(expected_lines) or text.endswith("\n") != expected.endswith("\n"):
        raise StructureError(
            f"{where}: rendered {len(got_lines)} lines where the template makes "
            f"{len(expected_lines)}; a value contains a line break"
        )
    for number, (got, pattern_line) in enumerate(zip(got_lines, expected_lines, strict=True), 1):
        if not _line_matches(got, pattern_line):
            raise StructureError(
                f"{where}: line {number} {got[:120]!r} does not have the template's "
                f"structure {pattern_line!r}"
            )
