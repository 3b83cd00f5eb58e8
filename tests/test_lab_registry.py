"""Registering labs of different router counts in one database: each lab subscriber keeps one
line, on the router the current lab puts it on."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import select

from vpop.catalogue.models import Line
from vpop.core.db import session_scope
from vpop.lab.registry import register_lab
from vpop.lab.topology import build_topology


def lab_state(subscribers: int, routers: int) -> dict[str, Any]:
    """The parts of a lab's state that registration reads."""
    topo = build_topology(subscribers, routers=routers)
    return {
        "lines": [asdict(line) for line in topo.lines],
        "nodes": {r: {"kind": "router"} for r in topo.routers},
    }


def lines_by_subscriber(url: str) -> dict[str, list[tuple[int, str, str, str | None]]]:
    found: dict[str, list[tuple[int, str, str, str | None]]] = {}
    with session_scope(url) as session:
        for line in session.scalars(select(Line).order_by(Line.id)):
            found.setdefault(line.subscriber_id, []).append(
                (line.id, line.router, line.interface, line.calling_number)
            )
    return found


def test_a_lab_with_more_routers_moves_the_subscribers_lines(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vpop.sqlite'}"
    register_lab(lab_state(8, 2), url)
    two = lines_by_subscriber(url)
    assert two["sub3"][0][1:3] == ("rc1", "sub3")

    register_lab(lab_state(8, 4), url)
    four = lines_by_subscriber(url)
    assert set(four) == {f"sub{k}" for k in range(1, 9)}
    for k in range(1, 9):
        sub = f"sub{k}"
        assert len(four[sub]) == 1, four[sub]
        line_id, router, interface, number = four[sub][0]
        assert (router, interface) == (f"rc{(k - 1) % 4 + 1}", sub)
        assert line_id == two[sub][0][0]  # the same line, history kept
        assert number == f"+3120555{k:04d}"

    register_lab(lab_state(8, 2), url)  # and back
    again = lines_by_subscriber(url)
    assert {sub: lines[0][1] for sub, lines in again.items()} == {
        f"sub{k}": f"rc{(k - 1) % 2 + 1}" for k in range(1, 9)
    }
    assert all(len(lines) == 1 for lines in again.values())
