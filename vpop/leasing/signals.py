"""What the leasing domain announces (sender in brackets); receivers: :mod:`vpop.jobs.wiring`."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A lease was created or set to end and its router must follow (the lease id).
lease_changed = _signals.signal("lease-changed")
