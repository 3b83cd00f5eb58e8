"""What the selection domain announces (sender in brackets); receivers: :mod:`vpop.jobs.wiring`."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: An order reached a final status (the order id).
order_finished = _signals.signal("order-finished")
#: A router's state is uncertain after a push and needs a reconcile (the router name).
reconcile_needed = _signals.signal("reconcile-needed")
