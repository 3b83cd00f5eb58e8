"""Read a router's state back and turn it into data (TextFSM, never a raw string)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nornir.core.task import Result, Task

TEXTFSM_DIR = Path(__file__).resolve().parent.parent / "templates" / "textfsm"


class ParseError(Exception):
    """A command's output did not match its TextFSM template."""


def get_version(task: Task) -> Result:
    """Read the router's software version through Netmiko and parse it with TextFSM.

    Sets ``Result.result`` to a dict (``version``, ``hostname``, ``os``, ``kernel``);
    ``changed`` is always False.
    """
    conn = task.host.get_connection("netmiko", task.nornir.config)
    parsed: Any = conn.send_command(
        "vtysh -c 'show version'",
        use_textfsm=True,
        textfsm_template=str(TEXTFSM_DIR / "frr_vtysh_show_version.textfsm"),
        raise_parsing_error=True,
    )
    if not isinstance(parsed, list) or len(parsed) != 1:
        raise ParseError(f"show version: expected one record, got {parsed!r}")
    return Result(host=task.host, result=dict(parsed[0]))
