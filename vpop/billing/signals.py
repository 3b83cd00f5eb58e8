"""What the payments domain announces; receivers: :mod:`vpop.jobs.wiring`.

Sent after the change is committed (by the committing helpers of
:mod:`vpop.billing.payment_actions`), never from inside a transaction that may roll back.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A payment changed: the sender is ``(payment_id, event_id)``, the event just recorded.
payment_changed = _signals.signal("payment-changed")
