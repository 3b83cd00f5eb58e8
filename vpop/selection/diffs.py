"""One line's part of a router diff: what a tenant may see of a run that served several orders.

A run renders a router's whole configuration, so its unified diff (``tasks.deploy``:
``pbr`` and ``acl`` for FRR; the ios and junos features are diffed the same way) names
every subscriber whose stanza changed or merely sits next to a change. Orders coalesced
into one run share that diff, and even a lone order's three context lines name its
neighbours. :func:`line_diff` keeps only what belongs to one line:

* a config line that names the line (:func:`line_names`: its policy, interface, prefix as
  each platform prints it, its ``vpop line <subscriber>`` description), and
* the rest of a stanza whose header names it (``pbr-map vpop-eth1 seq 10`` owns its
  ``set nexthop-group`` and its closing ``exit`` / ``!``; ``interface eth1`` its body).

Everything else goes: other lines' stanzas and context, the ISPs' shared stanzas
(nexthop-groups, VRFs, uplinks), file headers of features with nothing left. Ownership is
tracked separately on the running and the intended side, so a change that difflib aligns
across two stanzas is judged by the stanza each side really belongs to. The hunks left are
renumbered, so the result is still a unified diff ``patch`` understands.

Operators read the run's whole diff (``GET /api/v1/runs``, the NOC pages); this filter is
for everyone else (see docs/tenancy.md).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from vpop.selection.intent import INSTANCE_PREFIX

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
# characters that continue a name or an address: a match must not be part of a longer one
_WORD = r"A-Za-z0-9_.:/-"
_CLOSERS = ("exit", "!", "}")


def line_names(interface: str, prefix: str, subscriber: str) -> tuple[str, ...]:
    """Every spelling by which the templates name one line.

    Args:
        interface: The line's interface (``eth1``, ``GigabitEthernet0/1``, ``ge-0/0/1.100``).
        prefix: The line's canonical prefix.
        subscriber: The line's subscriber id.

    Returns:
        The names, longest first: the policy (also as a Junos filter name), the interface
        (also as Junos ``ifd unit n`` and logical ``ifd.0``), the prefix (nft prints a host
        prefix as a bare address) and the interface description.
    """
    policy = INSTANCE_PREFIX + interface
    names = {policy, re.sub(r"[^A-Za-z0-9_-]", "_", policy), interface}
    ifd, dot, unit = interface.partition(".")
    names.add(f"{ifd} unit {unit if dot else '0'}")
    if not dot:
        names.add(f"{interface}.0")
    net = ipaddress.ip_network(prefix, strict=False)
    names.add(str(net))
    if net.prefixlen == net.max_prefixlen:
        names.add(str(net.network_address))
    names.add(f"vpop line {subscriber}")
    return tuple(sorted(names, key=lambda name: (-len(name), name)))


@dataclass
class _Side:
    """Ownership of the current stanza on one side (running or intended) of the diff."""

    owned: bool = False

    def judge(self, text: str, names_line: bool) -> bool:
        """Whether ``text`` belongs to the line, and move the stanza state past it."""
        stripped = text.strip()
        if text[:1].isspace():  # a stanza's body (FRR, IOS, nft rules inside their chain)
            return self.owned or names_line
        if stripped in _CLOSERS:
            kept = self.owned
            if stripped != "exit":  # FRR closes a stanza with "exit" then "!"
                self.owned = False
            return kept
        self.owned = names_line  # a header (or a Junos set statement, its own stanza)
        return names_line


@dataclass
class _Hunk:
    """Kept lines of one hunk, with where they start on each side."""

    old_start: int
    new_start: int
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The hunk with a header counting its lines, as difflib writes it."""
        old = sum(1 for line in self.lines if line[:1] in (" ", "-"))
        new = sum(1 for line in self.lines if line[:1] in (" ", "+"))
        header = f"@@ -{_range(self.old_start, old)} +{_range(self.new_start, new)} @@\n"
        return header + "".join(self.lines)


def _range(start: int, length: int) -> str:
    """A unified diff range (``difflib``'s ``_format_range_unified``); ``start`` is 0-based."""
    first = start + 1
    if length == 1:
        return f"{first}"
    if not length:
        first -= 1
    return f"{first},{length}"


def line_diff(diff: str, names: Iterable[str]) -> str:
    """The part of a unified diff that belongs to the line ``names`` name.

    Args:
        diff: A unified diff of one or more features (``--- pbr (running)`` ...).
        names: The line's names (:func:`line_names`).

    Returns:
        A unified diff with only the line's stanzas and config lines; empty when none is left.
    """
    pattern = _names_pattern(names)
    out: list[str] = []
    headers: list[str] = []
    old = _Side()
    new = _Side()
    hunks: list[_Hunk] = []
    old_no = new_no = 0
    current: _Hunk | None = None

    def flush() -> None:
        nonlocal current
        if current is not None and current.lines:
            hunks.append(current)
        current = None

    def close_file() -> None:
        flush()
        if hunks:
            out.extend(headers)
            out.extend(hunk.text() for hunk in hunks)
        hunks.clear()

    for raw in diff.splitlines(keepends=True):
        if raw.startswith("--- "):
            close_file()
            headers = [raw]
            old, new = _Side(), _Side()
            continue
        if raw.startswith("+++ ") and len(headers) == 1:
            headers.append(raw)
            continue
        match = _HUNK.match(raw)
        if match:
            flush()
            old_no = int(match.group(1)) - (0 if match.group(2) == "0" else 1)
            new_no = int(match.group(3)) - (0 if match.group(4) == "0" else 1)
            old, new = _Side(), _Side()
            continue
        kind, text = raw[:1], raw[1:]
        if kind not in (" ", "-", "+"):
            continue  # "\ No newline at end of file" and anything unexpected
        names_line = pattern is not None and pattern.search(text) is not None
        if kind == "-":
            kept = old.judge(text, names_line)
        elif kind == "+":
            kept = new.judge(text, names_line)
        else:
            kept_old = old.judge(text, names_line)
            kept = new.judge(text, names_line) and kept_old
        if kept:
            if current is None:
                current = _Hunk(old_no, new_no)
            current.lines.append(raw if raw.endswith("\n") else raw + "\n")
        else:
            flush()
        old_no += kind in (" ", "-")
        new_no += kind in (" ", "+")
    close_file()
    return "".join(out)


def _names_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching any of ``names`` as a whole word (not inside a longer name)."""
    alternatives = [re.escape(name) for name in sorted(set(names), key=len, reverse=True)]
    if not alternatives:
        return None
    # "ge-0/0/1" names a line on unit 0 but not "ge-0/0/1 unit 5", another line's (Junos)
    return re.compile(rf"(?<![{_WORD}])(?:{'|'.join(alternatives)})(?![{_WORD}])(?! unit \d)")
