"""What the selection domain announces (sender in brackets); receivers: :mod:`vpop.jobs.wiring`."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A new order is committed and waits for its router (the router name).
order_accepted = _signals.signal("order-accepted")
#: An order reached a final status (the order id).
order_finished = _signals.signal("order-finished")
#: A router's state is uncertain after a push and needs a reconcile (the router name).
reconcile_needed = _signals.signal("reconcile-needed")
#: NOC staff asked for a reconcile of a router now (the router name).
reconcile_requested = _signals.signal("reconcile-requested")
