"""Side effects as signals: a domain declares what happened, the wiring decides what follows.

Each domain declares its signals in its own ``signals.py`` (blinker, which Flask ships);
:mod:`vpop.jobs.wiring` connects the receivers once at start-up. :func:`emit` is how a domain
sends one: every receiver runs, and one that fails is logged, never undoing what the domain
already recorded (an order's outcome, an event).
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import NamedSignal

log = logging.getLogger(__name__)


def emit(signal: NamedSignal, sender: Any) -> None:
    """Call every receiver of ``signal`` for ``sender``; log (and survive) a failing one."""
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender)
        except Exception:  # a receiver must never undo a recorded outcome
            log.exception("receiver of %s failed for %r", signal.name, sender)
