"""Routers' answers for the poller's tests that run without a lab: each router polled takes
the next answer given, as if its agent had sent it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from vpop.monitoring import poller


def answering(monkeypatch: pytest.MonkeyPatch, answers: Iterable[Any]) -> None:
    """Have each router the poller asks (in the order asked) answer the next of ``answers``:
    what ``collect_counters`` gives, or an exception its run ended with."""
    replies = iter(answers)

    def ask(routers: Sequence[str], *_args: Any) -> dict[str, Any]:
        return {router: next(replies) for router in routers}

    monkeypatch.setattr(poller, "_ask", ask)
