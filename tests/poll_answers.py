"""Routers' answers for the poller's tests that run without a lab: each router polled takes
the next answer given, as if its agent had sent it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from vpop.core.time import utcnow
from vpop.monitoring import poller


def answering(monkeypatch: pytest.MonkeyPatch, answers: Iterable[Any]) -> None:
    """Have each router the poller asks (in the order asked) answer the next of ``answers``:
    what ``collect_counters`` gives (stamped now), or an exception its run ended with."""
    replies = iter(answers)

    def answer(reply: Any) -> Any:
        return reply if isinstance(reply, BaseException) else poller.Answer(utcnow(), reply)

    def ask(routers: Sequence[str], *_args: Any) -> dict[str, Any]:
        return {router: answer(next(replies)) for router in routers}

    monkeypatch.setattr(poller, "_ask", ask)
