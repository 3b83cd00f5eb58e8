"""Read an IOS router's interface counters as data (ntc-templates' TextFSM, never raw text).

``show interfaces`` is parsed by ntc-templates' ``cisco_ios_show_interfaces`` template, through
Netmiko on a device (:func:`collect_interface_counters_ios`) or directly on captured text
(:func:`parse_show_interfaces`); :func:`interfaces_from_ntc` turns its rows into counters.

What the template captures (ntc-templates 9.3.0) decides what can be reported:

* ``rx_packets`` / ``tx_packets``: ``INPUT_PACKETS`` / ``OUTPUT_PACKETS``.
* ``errors``: ``INPUT_ERRORS`` + ``OUTPUT_ERRORS``.
* ``drops``: ``QUEUE_DROPS`` (the drops of ``Input queue: size/max/drops/flushes``) +
  ``QUEUE_OUTPUT_DROPS`` (``Total output drops``).
* ``rx_bytes`` / ``tx_bytes``: ``INPUT_BYTES`` / ``OUTPUT_BYTES``, the names ntc-templates uses
  on other platforms. The IOS template of ntc-templates 9.3.0 matches the byte counts of
  ``N packets input, M bytes`` but does not capture them, so these counters are absent until
  the template (or a custom one) captures them.

A counter whose fields the device did not print (an IOS sub-interface prints no counters at
all) is left out of its interface's mapping: an empty field means "not shown", not zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import textfsm
from netmiko.exceptions import NetmikoParsingException
from nornir.core.task import Result, Task

from tasks.verify import ParseError

COMMAND = "show interfaces"
NTC_PLATFORM = "cisco_ios"
# ntc-templates' cisco_ios_show_interfaces plus byte counters (which it matches but does not
# capture) and an Error on unexpected lines: templates/textfsm/cisco_ios_show_interfaces.textfsm
TEMPLATE = (
    Path(__file__).resolve().parent.parent
    / "templates"
    / "textfsm"
    / ("cisco_ios_show_interfaces.textfsm")
)

#: The width IOS ``show interfaces`` counters wrap at on many platforms (classic IOS, ISR G2).
COUNTER_WIDTH = 32
#: The width reported when a counter is already past ``2**32 - 1`` (IOS XE prints 64-bit ones).
WIDE_COUNTER_WIDTH = 64

#: vpop's counter name -> the ntc-templates fields (lower case) whose values it adds up.
COUNTER_FIELDS: Mapping[str, tuple[str, ...]] = {
    "rx_bytes": ("input_bytes",),
    "tx_bytes": ("output_bytes",),
    "rx_packets": ("input_packets",),
    "tx_packets": ("output_packets",),
    "errors": ("input_errors", "output_errors"),
    "drops": ("queue_drops", "queue_output_drops"),
}


class InterfaceCountersError(ParseError):
    """``show interfaces`` output did not become interface counters."""


def _rows(parsed: object) -> list[dict[str, str]]:
    """The parse as a list of ``{field: text}`` rows, or :class:`InterfaceCountersError`."""
    if not isinstance(parsed, list) or not parsed:
        raise InterfaceCountersError(
            f"{COMMAND}: expected a list of parsed records, got {repr(parsed)[:120]}"
        )
    rows: list[dict[str, str]] = []
    for index, row in enumerate(parsed):
        if not isinstance(row, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in row.items()
        ):
            raise InterfaceCountersError(
                f"{COMMAND}: record {index} is not a mapping of text fields: {repr(row)[:120]}"
            )
        rows.append(row)
    return rows


def _count(row: Mapping[str, str], field: str, interface: str) -> int | None:
    value = row.get(field, "")
    if value == "":
        return None
    if not (value.isascii() and value.isdigit()):
        raise InterfaceCountersError(
            f"{COMMAND}: {interface}: {field} is {value!r}, not a whole number"
        )
    return int(value)


def interfaces_from_ntc(rows: list[dict[str, str]]) -> dict[str, dict[str, int]]:
    """Turn ntc-templates ``cisco_ios_show_interfaces`` rows into counters per interface.

    Args:
        rows: the parsed records, keys in lower case as ntc-templates returns them
            (``interface``, ``input_packets``, ``queue_drops``, ...).

    Returns:
        ``{interface: {counter: value}}`` with the counters of :data:`COUNTER_FIELDS` whose
        fields are all present and not empty; an interface that printed no counters maps
        to ``{}``. Sums are plain sums: their differences modulo the counter width stay right.

    Raises:
        InterfaceCountersError: a record without an interface name, an interface listed
            twice, or a counter field that is not a whole number.
    """
    interfaces: dict[str, dict[str, int]] = {}
    for index, row in enumerate(rows):
        name = row.get("interface", "")
        if not name:
            raise InterfaceCountersError(f"{COMMAND}: record {index} has no interface name")
        if name in interfaces:
            raise InterfaceCountersError(f"{COMMAND}: interface {name!r} is listed twice")
        counters: dict[str, int] = {}
        for counter, fields in COUNTER_FIELDS.items():
            values = [_count(row, field, name) for field in fields]
            if all(value is not None for value in values):
                counters[counter] = sum(value for value in values if value is not None)
        interfaces[name] = counters
    return interfaces


def counter_width(rows: list[dict[str, str]]) -> int:
    """The bit width at which the device's counters wrap, as far as the output shows.

    IOS ``show interfaces`` counters are 32-bit on many platforms, so :data:`COUNTER_WIDTH`
    unless a counter field is already past ``2**32 - 1`` (:data:`WIDE_COUNTER_WIDTH`).

    Args:
        rows: the parsed records, as for :func:`interfaces_from_ntc`.

    Returns:
        32 or 64.

    Raises:
        InterfaceCountersError: a counter field that is not a whole number.
    """
    limit = 2**COUNTER_WIDTH - 1
    for row in rows:
        for fields in COUNTER_FIELDS.values():
            for field in fields:
                value = _count(row, field, row.get("interface", "?"))
                if value is not None and value > limit:
                    return WIDE_COUNTER_WIDTH
    return COUNTER_WIDTH


def parse_show_interfaces(raw: str) -> list[dict[str, str]]:
    """Parse captured ``show interfaces`` text with ntc-templates, as Netmiko would.

    Args:
        raw: the command's output.

    Returns:
        One ``{field: text}`` record per interface, fields in lower case.

    Raises:
        InterfaceCountersError: when ntc-templates has no template for the command or
            the text yields no record.
    """
    try:
        with TEMPLATE.open() as fh:
            fsm = textfsm.TextFSM(fh)
        records = fsm.ParseText(raw)
    except (textfsm.TextFSMError, textfsm.TextFSMTemplateError) as err:
        raise InterfaceCountersError(f"{COMMAND}: {err}") from err
    header = [name.lower() for name in fsm.header]
    return _rows([dict(zip(header, record, strict=True)) for record in records])


def collect_interface_counters_ios(task: Task) -> Result:
    """Read ``show interfaces`` through the host's Netmiko connection, as counters.

    IOS ``show interfaces`` counters are 32-bit on many platforms (they wrap at
    ``2**32``): compute rates from differences modulo ``2**width``. ``width`` is 64 when a
    counter already shows a larger value (IOS XE).

    Sets ``Result.result`` to ``{"interfaces": {name: {counter: int}}, "width": 32 | 64}``
    (counters as in :func:`interfaces_from_ntc`); ``changed`` is always False.

    Raises:
        InterfaceCountersError: the output did not parse (no record, or not records).
    """
    conn = task.host.get_connection("netmiko", task.nornir.config)
    try:
        parsed: Any = conn.send_command(
            COMMAND,
            use_textfsm=True,
            textfsm_template=str(TEMPLATE),
            raise_parsing_error=True,
        )
    except (NetmikoParsingException, textfsm.TextFSMError) as err:
        # a custom template's Error state surfaces as TextFSMError, not Netmiko's own error
        raise InterfaceCountersError(f"{task.host.name}: {COMMAND}: {err}") from err
    rows = _rows(parsed)
    return Result(
        host=task.host,
        result={"interfaces": interfaces_from_ntc(rows), "width": counter_width(rows)},
    )
