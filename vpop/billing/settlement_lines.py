"""The lines of a settlement and its statement, computed in one pass over the events.

A settlement's lines are, in order: the balance carried from the previous settlement (if it
was negative), the unsettled events by time (each captured event followed by its fee line),
then the ISP's lease charges. The statement is canonical JSON (sorted keys, no spaces, UTF-8
kept, integers only, no generation time) whose ``lines`` is a table: one array per line in
:data:`COLUMNS` order. Events are held in integer arrays (a million events take a few tens of
megabytes) and written to the statement and to ``settlement_lines`` from the same arrays, so
the stored lines are the stated ones.
"""

from __future__ import annotations

import array
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from vpop.billing.lease_charges import LeaseCharge
from vpop.billing.payment_models import Payee, SettlementLine
from vpop.core.time import as_utc, iso

#: The statement's line columns, in the order of each line's array.
COLUMNS = (
    "line_no", "kind", "at", "amount_minor", "adjustment", "event_id", "payment_id",
    "lease_id", "lease_version", "charge_key", "description",
)  # fmt: skip
CHUNK = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CAPTURE, REFUND, ADJUSTED = 1, 2, 4  # flag bits of an event


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no spaces, UTF-8 text kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fee_of(amount_minor: int, fee_bp: int, fee_fixed_minor: int) -> int:
    """The routing centre's fee on a captured amount: basis points half up, plus the fixed fee.

    ``(amount * fee_bp + 5000) // 10000 + fee_fixed``, computed without a product beyond
    64 bits (the amount split at 10000).
    """
    whole, rest = divmod(amount_minor, 10000)
    return whole * fee_bp + (rest * fee_bp + 5000) // 10000 + fee_fixed_minor


def micros(at: datetime) -> int:
    """``at`` as integer microseconds since 1970-01-01T00:00Z."""
    delta = as_utc(at) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def instant(micros: int) -> datetime:
    """The aware UTC instant ``micros`` microseconds after 1970-01-01T00:00Z."""
    return _EPOCH + timedelta(microseconds=micros)


@dataclass
class Events:
    """The unsettled events of one payee and currency, in statement order, as int arrays."""

    ids: array.array[int] = field(default_factory=lambda: array.array("q"))
    payments: array.array[int] = field(default_factory=lambda: array.array("q"))
    ats: array.array[int] = field(default_factory=lambda: array.array("q"))
    amounts: array.array[int] = field(default_factory=lambda: array.array("q"))
    fees: array.array[int] = field(default_factory=lambda: array.array("q"))
    flags: array.array[int] = field(default_factory=lambda: array.array("b"))


@dataclass
class Totals:
    """A settlement's totals, positive but ``adjustments`` and ``carried_in`` (signed)."""

    captured: int = 0
    refunded: int = 0
    fees: int = 0
    lease: int = 0
    adjustments: int = 0
    carried_in: int = 0
    lines: int = 0

    @property
    def net(self) -> int:
        return (
            self.captured - self.refunded + self.adjustments - self.fees - self.lease
            + self.carried_in
        )  # fmt: skip


@dataclass
class Plan:
    """A settlement about to be written: its head lines, events and trailing lease lines."""

    payee: Payee
    currency: str
    period: str
    seq: int
    kind: str
    cutoff: datetime
    events: Events
    carried: dict[str, Any] | None
    leases: list[LeaseCharge]
    totals: Totals = field(default_factory=Totals)


def _event_lines(plan: Plan, first_no: int) -> Iterator[tuple[Any, ...]]:
    """The event lines (and fee lines) of ``plan`` as tuples in :data:`COLUMNS` order."""
    number = first_no
    events = plan.events
    for i in range(len(events.ids)):
        flag = events.flags[i]
        adjusted = bool(flag & ADJUSTED)
        at_us, amount = events.ats[i], events.amounts[i]
        signed = amount if flag & CAPTURE else -amount
        kind = "capture" if flag & CAPTURE else "refund"
        yield (number, kind, at_us, signed, adjusted, events.ids[i], events.payments[i],
               None, None, None, "")  # fmt: skip
        number += 1
        if events.fees[i]:
            yield (number, "fee", at_us, -events.fees[i], adjusted, None, events.payments[i],
                   None, None, None, "")  # fmt: skip
            number += 1


def _other_lines(plan: Plan) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The carried line (first) and the lease lines (last), without their line numbers."""
    head = []
    if plan.carried is not None:
        c = plan.carried
        head.append(("carried", micros(c["at"]), c["amount"], False, None, None, None, None,
                     None, c["description"]))  # fmt: skip
    tail = [
        ("lease", micros(charge.first_day), -charge.amount_minor, False, None, None,
         charge.lease_id, charge.version, charge.charge_key, charge.description)
        for charge in plan.leases
    ]  # fmt: skip
    return head, tail


def all_lines(plan: Plan) -> Iterator[tuple[Any, ...]]:
    """Every line of ``plan`` in statement order, ``at`` in microseconds since the epoch."""
    head, tail = _other_lines(plan)
    number = 1
    for line in head:
        yield (number, *line)
        number += 1
    for line in _event_lines(plan, number):
        number = line[0] + 1
        yield line
    for line in tail:
        yield (number, *line)
        number += 1


def _line_json(line: tuple[Any, ...]) -> str:
    """One statement line as canonical JSON (an array in :data:`COLUMNS` order)."""
    number, kind, at_us, amount, adjusted, event_id, payment_id = line[:7]
    if line[7:] == (None, None, None, ""):  # an event or fee line: no escaping needed
        return (
            f'[{number},"{kind}","{instant(at_us).isoformat()}",{amount},'
            f"{'true' if adjusted else 'false'},{'null' if event_id is None else event_id},"
            f'{"null" if payment_id is None else payment_id},null,null,null,""]'
        )
    return canonical_json([number, kind, instant(at_us).isoformat(), *line[3:]])


def statement_of(plan: Plan) -> str:
    """Count the plan's totals and write its statement (canonical JSON) in one pass."""
    totals = plan.totals = Totals()
    buffer = io.StringIO()
    buffer.write("[")
    for line in all_lines(plan):
        kind, amount, adjusted = line[1], line[3], line[4]
        if totals.lines:
            buffer.write(",")
        buffer.write(_line_json(line))
        totals.lines += 1
        if kind in ("capture", "refund") and adjusted:
            totals.adjustments += amount
        elif kind == "capture":
            totals.captured += amount
        elif kind == "refund":
            totals.refunded -= amount
        elif kind == "fee":
            totals.fees -= amount
        elif kind == "lease":
            totals.lease -= amount
        else:
            totals.carried_in += amount
    buffer.write("]")
    payee = plan.payee
    document = {
        "columns": list(COLUMNS), "currency": plan.currency, "cutoff": iso(plan.cutoff),
        "kind": plan.kind, "lines": "\x00LINES\x00", "period": plan.period, "seq": plan.seq,
        "payee": {"id": payee.id, "isp": payee.isp_id, "kind": payee.kind, "name": payee.name,
                  "fee_bp": payee.fee_bp, "fee_fixed_minor": payee.fee_fixed_minor},
        "totals": _totals_view(totals),
    }  # fmt: skip
    return canonical_json(document).replace('"\\u0000LINES\\u0000"', buffer.getvalue(), 1)


def _totals_view(totals: Totals) -> dict[str, int]:
    return {
        "captured_minor": totals.captured, "refunded_minor": totals.refunded,
        "fees_minor": totals.fees, "lease_minor": totals.lease,
        "adjustments_minor": totals.adjustments, "carried_in_minor": totals.carried_in,
        "net_minor": totals.net, "payout_minor": max(totals.net, 0), "lines_count": totals.lines,
    }  # fmt: skip


def insert_lines(session: Session, plan: Plan, settlement_id: int) -> None:
    """Insert the plan's lines after its settlement row, ``CHUNK`` rows per executemany."""
    # Core, not the ORM's bulk insert: the ORM batches only runs of rows with the same
    # non-null columns, and capture and fee lines alternate
    table = cast(Table, SettlementLine.__table__)
    chunk: list[dict[str, Any]] = []
    for line in all_lines(plan):
        row = dict(zip(COLUMNS, line, strict=True))
        row["at"] = instant(line[2])
        row["settlement_id"] = settlement_id
        chunk.append(row)
        if len(chunk) == CHUNK:
            session.execute(insert(table), chunk)
            chunk = []
    if chunk:
        session.execute(insert(table), chunk)
