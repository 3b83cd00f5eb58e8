"""What the monitoring jobs announce (sender in brackets); receivers: :mod:`vpop.jobs.wiring`."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A utilisation event of a lease opened or closed (the event id).
utilisation_event = _signals.signal("utilisation-event")
