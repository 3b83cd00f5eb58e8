"""FRR (pbrd) configuration text as blocks: the parts vpop owns, their diff, and the commands
that turn running blocks into intended blocks without a gap in forwarding.

vpop owns, in pbrd's running configuration: ``nexthop-group vpop-*`` (an ISP's routing
instance), ``pbr-map vpop-* seq N`` (a line's policy) and ``pbr-policy vpop-*`` lines inside
``interface`` blocks. Everything else on the router is left alone.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass

OWNED_PREFIX = "vpop-"
# pbrd prints interfaces, then nexthop-groups, then pbr-maps
_KIND_ORDER = {"interface": 0, "nexthop-group": 1, "pbr-map": 2}


@dataclass(frozen=True)
class Block:
    """One configuration block: its header line and its body lines (indented, stripped)."""

    header: str
    body: tuple[str, ...]

    @property
    def kind(self) -> str:
        """``interface``, ``nexthop-group`` or ``pbr-map``."""
        return self.header.split()[0]

    def text(self) -> str:
        """The block as pbrd prints it."""
        return "\n".join([self.header, *(f" {line}" for line in self.body), "exit", "!"]) + "\n"


def parse_blocks(text: str) -> list[Block]:
    """The vpop-owned blocks of a pbrd configuration, in pbrd's order.

    Interface blocks keep only their ``pbr-policy vpop-*`` lines and are dropped when none
    is left; other blocks are kept only when their name starts with ``vpop-``.
    """
    return list(_parsed(text))


@functools.lru_cache(maxsize=64)
def _parsed(text: str) -> tuple[Block, ...]:
    """:func:`parse_blocks`, kept per text (blocks are immutable): a push parses the same
    running and intended texts several times (diff, commands, read-back, installed rules),
    10 ms of a run with 100 lines per router."""
    blocks: list[Block] = []
    header: str | None = None
    body: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("!"):
            continue
        if not raw.startswith(" ") and line != "exit":
            header, body = line, []
            continue
        if line == "exit":
            if header is not None:
                blocks.append(Block(header, tuple(body)))
            header, body = None, []
            continue
        if header is not None:
            body.append(line.strip())
    owned: list[Block] = []
    for block in blocks:
        words = block.header.split()
        if words[0] == "interface" and len(words) == 2:
            lines = tuple(b for b in block.body if b.startswith(f"pbr-policy {OWNED_PREFIX}"))
            if lines:
                owned.append(Block(block.header, lines))
        elif (
            words[0] in ("nexthop-group", "pbr-map")
            and len(words) >= 2
            and words[1].startswith(OWNED_PREFIX)
        ):
            owned.append(block)
    return tuple(sorted(owned, key=_sort_key))


def _sort_key(block: Block) -> tuple[int, str]:
    return (_KIND_ORDER.get(block.kind, 9), block.header)


def canonical(text: str) -> str:
    """The vpop-owned part of a pbrd configuration as canonical text."""
    return "".join(b.text() for b in parse_blocks(text))


def unified_diff(running: str, intended: str, label: str) -> str:
    """A unified diff from running to intended text (empty when equal)."""
    return "".join(
        difflib.unified_diff(
            running.splitlines(keepends=True),
            intended.splitlines(keepends=True),
            fromfile=f"{label} (running)",
            tofile=f"{label} (intended)",
        )
    )


def commands(running: str, intended: str) -> list[str]:
    """vtysh configuration commands that turn the running blocks into the intended ones.

    Make before break: new nexthop-groups and changed policies are written before anything
    is removed, and a changed ``set nexthop-group`` is replaced in place (pbrd swaps the
    rule's table atomically) rather than deleted and re-added, so a moving subscriber never
    falls back to the default route in between.
    """
    have = {b.header: b for b in parse_blocks(running)}
    want = {b.header: b for b in parse_blocks(intended)}
    out: list[str] = []
    for block in sorted(want.values(), key=_sort_key):
        current = have.get(block.header)
        if current is not None and current.body == block.body:
            continue
        old = set(current.body) if current else set()
        new_keys = {_key(line) for line in block.body if line not in old}
        removals = [
            f"no {line}"
            for line in (current.body if current else ())
            if line not in block.body and _key(line) not in new_keys
        ]
        additions = [line for line in block.body if line not in old]
        out += [block.header, *removals, *additions, "exit"]
    # removals last, reverse order: bindings, then policies, then routing instances
    for block in sorted(have.values(), key=_sort_key, reverse=True):
        if block.header in want:
            continue
        if block.kind == "interface":
            out += [block.header, *(f"no {line}" for line in block.body), "exit"]
        else:
            out.append(f"no {block.header}")
    return _order(out)


def _key(line: str) -> str:
    """The part of a body line that identifies what it sets (``set nexthop-group``)."""
    words = line.split()
    return " ".join(words[:2]) if words and words[0] == "set" else line


def _order(cmds: list[str]) -> list[str]:
    """Group into blocks and order additions: nexthop-groups, pbr-maps, then interfaces."""
    groups: list[list[str]] = []
    current: list[str] = []
    for cmd in cmds:
        current.append(cmd)
        if cmd == "exit" or cmd.startswith("no nexthop-group") or cmd.startswith("no pbr-map"):
            groups.append(current)
            current = []
    if current:
        groups.append(current)

    def rank(group: list[str]) -> int:
        head = group[0]
        if head.startswith("no "):
            return 10 + {"no pbr-map": 1, "no nexthop-group": 2}.get(" ".join(head.split()[:2]), 0)
        if any(line.startswith("no pbr-policy") for line in group):
            return 10
        return {"nexthop-group": 0, "pbr-map": 1, "interface": 2}.get(head.split()[0], 3)

    return [cmd for group in sorted(groups, key=rank) for cmd in group]


def nft_transaction(table: str) -> str:
    """The ``nft -f`` script that replaces ``table inet vpop`` atomically with ``table``.

    ``nft -f`` runs a file as one transaction: creating the table first makes the delete
    valid on a router that has none, and a failure anywhere leaves the old table in place.

    Args:
        table: the rendered ``acl`` text.

    Returns:
        The script to feed to ``nft -f -``.
    """
    return "table inet vpop {}\ndelete table inet vpop\n" + table


_COUNTER = re.compile(r"\bcounter packets [0-9]+ bytes [0-9]+")


def zero_nft_counters(listing: str) -> str:
    """Zero the counters of an ``nft list`` output so it compares with rendered text.

    Args:
        listing: what ``nft list table inet vpop`` printed.

    Returns:
        The same text with every ``counter packets N bytes M`` at zero.
    """
    return _COUNTER.sub("counter packets 0 bytes 0", listing)
