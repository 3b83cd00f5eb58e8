"""Payments, settlements and bills from the command line.

``vpop payee add|list|set`` (merchants registered under an ISP, their bank details and
fees), ``vpop payment list|show|limit`` (payments and a subscriber's spending limit),
``vpop settlement run|list|show|payout`` (settle a period, read a statement, write the SEPA
credit-transfer file), ``vpop bill run|show|collect`` (close a period's bills, a running
bill, the SEPA direct-debit file) and ``vpop mandate add``.

The SEPA files (pain.001, pain.008) go to standard output and nothing else does: errors are
one line on standard error, and a bad period or missing bank settings (``VPOP_SEPA_IBAN``...)
exit 2 before anything is written, so ``vpop settlement payout --period 2026-11 >
payouts.xml`` leaves either a whole file or an empty one. Every change is audited under
``cli:<login>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click

from vpop.cli.common import (
    FORMATS,
    ISO_TIME,
    InputError,
    OneLineGroup,
    cli_actor,
    echo_views,
    reported_errors,
)

#: The payment statuses (kept equal to vpop.billing.service.PAYMENT_STATUSES by a test; not
#: imported: attaching the groups must import no database code).
STATUSES = ("AUTHORISED", "DECLINED", "CAPTURED", "VOIDED", "EXPIRED", "REFUNDED")

BIG = click.IntRange(0, 2**62)


@contextmanager
def _billing_errors() -> Iterator[None]:
    """:func:`reported_errors`, with missing SEPA settings as bad input (exit 2): the
    command cannot run until they are given, as with a missing option."""
    from vpop.core.errors import ConfigError

    with reported_errors():
        try:
            yield
        except ConfigError as err:
            raise InputError(err.code, err.message) from err


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def _write_bytes(data: bytes) -> None:
    """``data`` to standard output as it is (click writes bytes to the binary stream)."""
    click.echo(data, nl=False)


# --- payees ---------------------------------------------------------------------------------


@click.group(cls=OneLineGroup)
def payee() -> None:
    """Payees: ISPs (created on their first payment) and merchants registered under one."""


def _payee_line(view: Mapping[str, Any]) -> str:
    return (
        f"{view['id']:16} {view['kind']:8} {view['isp']:10} {view['name'][:30]:30} "
        f"fee {view['fee_bp']} bp + {view['fee_fixed_minor']}  iban {view.get('iban') or '-'}"
    )


@payee.command("add")
@click.argument("payee_id", metavar="ID")
@click.option("--isp", required=True, help="The ISP the merchant is reached through.")
@click.option("--name", required=True, help="The merchant's name (statements, SEPA files).")
@click.option("--iban", default=None, help="Where its payouts go.")
@click.option("--bic", default=None)
@click.option("--fee-bp", type=click.IntRange(0, 10000), default=0, show_default=True,
              help="The routing centre's fee, basis points of each captured payment.")  # fmt: skip
@click.option("--fee-fixed-minor", type=BIG, default=0, show_default=True,
              help="The routing centre's fixed fee per captured payment, minor units.")  # fmt: skip
@click.option("--callback-url", default=None, help="Receives signed payment callbacks.")
def payee_add(
    payee_id: str,
    isp: str,
    name: str,
    iban: str | None,
    bic: str | None,
    fee_bp: int,
    fee_fixed_minor: int,
    callback_url: str | None,
) -> None:
    """Register merchant ID under an ISP (then: vpop token create --role merchant --merchant ID)."""
    from vpop.billing.service import payee_view, register_merchant
    from vpop.core.db import session_scope

    with reported_errors(), session_scope() as session:
        view = payee_view(
            register_merchant(
                session, payee_id, isp, name, iban=iban, bic=bic, fee_bp=fee_bp,
                fee_fixed_minor=fee_fixed_minor, callback_url=callback_url, actor=cli_actor(),
            )
        )  # fmt: skip
    click.echo(f"payee {view['id']} (merchant under {view['isp']}) registered")


@payee.command("list")
@click.option("--isp", default=None, help="Only this ISP's payee and merchants.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def payee_list(isp: str | None, as_json: bool) -> None:
    """List payees: id, kind, ISP, name, fees, IBAN."""
    from vpop.billing.service import list_payees, payee_view
    from vpop.core.db import session_scope

    with reported_errors(), session_scope() as session:
        views = [payee_view(found) for found in list_payees(session, isp=isp)]
    echo_views(
        views,
        as_json=as_json,
        empty="no payees; an ISP's is made by its first payment, a merchant's with "
        "`vpop payee add ID --isp ISP --name NAME`",
        line=_payee_line,
    )


@payee.command("set")
@click.argument("payee_id", metavar="ID")
@click.option("--name", default=None)
@click.option("--iban", default=None)
@click.option("--bic", default=None)
@click.option("--fee-bp", type=click.IntRange(0, 10000), default=None)
@click.option("--fee-fixed-minor", type=BIG, default=None)
@click.option("--callback-url", default=None)
def payee_set(payee_id: str, **changes: Any) -> None:
    """Change a payee's name, bank details, fees or callback URL (audited)."""
    from vpop.billing.service import payee_view, update_payee
    from vpop.core.db import session_scope

    given = {field: value for field, value in changes.items() if value is not None}
    if not given:
        raise InputError("VPOP-400-MISSING", "nothing to change: give at least one option")
    with reported_errors(), session_scope() as session:
        view = payee_view(update_payee(session, payee_id, actor=cli_actor(), **given))
    click.echo(_payee_line(view))


# --- payments -------------------------------------------------------------------------------


@click.group(cls=OneLineGroup)
def payment() -> None:
    """Payments and subscribers' spending limits."""


def _payment_line(view: Mapping[str, Any]) -> str:
    reason = f" ({view['decline_reason']})" if view.get("decline_reason") else ""
    return (
        f"{view['id']:>7} {view['created_at']} {view['status']}{reason} "
        f"{view['payee']} <- {view.get('subscriber') or '-'} "
        f"{view['amount_minor']} {view['currency']} (captured {view['captured_minor']}, "
        f"refunded {view['refunded_minor']}) {view['item'][:40]}"
    )


@payment.command("list")
@click.option("--isp", default=None)
@click.option("--payee", default=None)
@click.option("--subscriber", default=None)
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--since", type=ISO_TIME, default=None, help="Created at or after (ISO 8601).")
@click.option("--until", type=ISO_TIME, default=None, help="Created before (ISO 8601).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def payment_list(
    isp: str | None,
    payee: str | None,
    subscriber: str | None,
    status: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """List payments, newest first."""
    from vpop.billing.service import list_payments, payment_view
    from vpop.core.db import session_scope

    with reported_errors(), session_scope() as session:
        views = [
            payment_view(found)
            for found in list_payments(
                session, isp=isp, payee=payee, subscriber=subscriber, status=status,
                since=since, until=until, limit=limit,
            )
        ]  # fmt: skip
    echo_views(views, as_json=as_json, empty="no payments", line=_payment_line)


@payment.command("show")
@click.argument("payment_id", metavar="ID", type=click.IntRange(1, 2**63 - 1))
def payment_show(payment_id: int) -> None:
    """Show payment ID with its history, as JSON."""
    from vpop.billing.service import events_of, payment_for, payment_view
    from vpop.core.db import session_scope
    from vpop.selection.service import Caller

    operator = Caller(name=cli_actor(), role="admin")
    with reported_errors(), session_scope() as session:
        found = payment_for(session, operator, payment_id)
        view = payment_view(found, events_of(session, found.id))
    _print_json(view)


@payment.command("limit")
@click.argument("subscriber")
@click.argument("limit_minor", required=False, type=BIG)
def payment_limit(subscriber: str, limit_minor: int | None) -> None:
    """Show SUBSCRIBER's spending this period, or set their limit to LIMIT_MINOR (audited)."""
    from vpop.billing.service import set_spending_limit, spending
    from vpop.core.db import session_scope

    with reported_errors(), session_scope() as session:
        if limit_minor is not None:
            set_spending_limit(session, subscriber, limit_minor, actor=cli_actor())
        view = spending(session, subscriber)
    click.echo(
        f"{subscriber} {view['period']}: limit {view['limit_minor']} {view['currency']}, "
        f"held {view['held_minor']}, spent {view['spent_minor']}, "
        f"available {view['available_minor']}"
    )


# --- settlements ----------------------------------------------------------------------------


@click.group(cls=OneLineGroup)
def settlement() -> None:
    """Settlements: one per payee, currency and period, with a statement; SEPA payouts."""


def _settlement_line(view: Mapping[str, Any]) -> str:
    return (
        f"{view['id']:>6} {view['period']} {view['payee']:16} {view['currency']} "
        f"{view['kind']:7} net {view['net_minor']} payout {view['payout_minor']}"
    )


@settlement.command("run")
@click.option("--period", required=True, help="YYYY-MM (UTC); the current month: interim.")
@click.option("--payee", default=None, help="Only this payee.")
def settlement_run(period: str, payee: str | None) -> None:
    """Settle PERIOD: one line per settlement (payee, currency, kind, net, payout)."""
    from vpop.billing.service import run_settlement, settlement_view
    from vpop.core.db import session_scope

    with reported_errors(), session_scope() as session:
        views = [
            settlement_view(done)
            for done in run_settlement(session, period, payee=payee, actor=cli_actor())
        ]
    echo_views(views, as_json=False, empty=f"nothing to settle for {period}",
               line=_settlement_line)  # fmt: skip


@settlement.command("list")
@click.option("--period", default=None)
@click.option("--payee", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def settlement_list(period: str | None, payee: str | None, as_json: bool) -> None:
    """List settlements."""
    from vpop.billing.service import list_settlements, settlement_view
    from vpop.core.db import session_scope

    with reported_errors(), session_scope() as session:
        views = [
            settlement_view(found)
            for found in list_settlements(session, period=period, payee=payee)
        ]
    echo_views(
        views,
        as_json=as_json,
        empty="no settlements; settle a period with `vpop settlement run --period YYYY-MM`",
        line=_settlement_line,
    )


@settlement.command("show")
@click.argument("settlement_id", metavar="ID", type=click.IntRange(1, 2**63 - 1))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True)
def settlement_show(settlement_id: int, fmt: str) -> None:
    """Print settlement ID's statement (json: exactly the stored bytes)."""
    from vpop.billing.service import render_statement, settlement_for
    from vpop.core.db import session_scope
    from vpop.selection.service import Caller

    operator = Caller(name=cli_actor(), role="admin")
    with reported_errors(), session_scope() as session:
        data = render_statement(settlement_for(session, operator, settlement_id), fmt)
    _write_bytes(data)


@settlement.command("payout")
@click.option("--period", help="YYYY-MM: the settlements paid out (those no file paid yet).")
@click.option("--file", "message_id", help="Write the payout file with this message id again.")
def settlement_payout(period: str | None, message_id: str | None) -> None:
    """Write PERIOD's SEPA credit transfers (pain.001, one per payee) to standard output.

    Each settlement is paid by one file: a second run of a period pays only what no earlier
    file paid; ``--file MESSAGE_ID`` writes a file made before again, byte for byte.
    """
    from vpop.billing.service import payout_file, stored_payout_file
    from vpop.core.db import session_scope

    if (period is None) == (message_id is None):
        raise InputError("VPOP-400-TYPE", "give either --period YYYY-MM or --file MESSAGE_ID")
    with _billing_errors(), session_scope() as session:
        if message_id is not None:
            data = stored_payout_file(session, message_id)
        else:
            data = payout_file(session, period or "", actor=cli_actor())
    _write_bytes(data)


# --- bills and mandates ---------------------------------------------------------------------


@click.group(cls=OneLineGroup)
def bill() -> None:
    """Subscribers' bills: plan charges, purchases and refunds; SEPA direct debits."""


@bill.command("run")
@click.option("--period", required=True, help="YYYY-MM: a month that has ended.")
def bill_run(period: str) -> None:
    """Close PERIOD's bills: one line per bill (subscriber, currency, total)."""
    from vpop.billing.service import bill_view, close_bills
    from vpop.core.db import session_scope

    with reported_errors(), session_scope() as session:
        views = [bill_view(done) for done in close_bills(session, period, actor=cli_actor())]
    echo_views(
        views,
        as_json=False,
        empty=f"no bills for {period}",
        line=lambda view: (
            f"{view['subscriber']:16} {view['period']} {view['currency']} "
            f"plan {view['plan_minor']} purchases {view['purchases_minor']} "
            f"refunds {view['refunds_minor']} total {view['total_minor']}"
        ),
    )


@bill.command("show")
@click.argument("subscriber")
@click.option("--period", default=None, help="YYYY-MM (default: this month).")
def bill_show(subscriber: str, period: str | None) -> None:
    """Print SUBSCRIBER's running bill for a period, as JSON."""
    from vpop.billing.service import running_bill
    from vpop.catalogue.service import Subscriber
    from vpop.core.db import session_scope
    from vpop.core.errors import NotFound

    with reported_errors(), session_scope() as session:
        if session.get(Subscriber, subscriber) is None:
            raise NotFound(f"unknown subscriber {subscriber!r}", code="VPOP-404-SUBSCRIBER")
        view = running_bill(session, subscriber, period=period)
    _print_json(view)


@bill.command("collect")
@click.option("--period", required=True, help="YYYY-MM: its closed bills are collected.")
def bill_collect(period: str) -> None:
    """Write PERIOD's SEPA direct debits (pain.008) to standard output."""
    from vpop.billing.service import collection_file
    from vpop.core.db import session_scope

    with _billing_errors(), session_scope() as session:
        data = collection_file(session, period)
    _write_bytes(data)


@click.group(cls=OneLineGroup)
def mandate() -> None:
    """SEPA direct-debit mandates: subscribers whose bills are collected."""


@mandate.command("add")
@click.argument("subscriber")
@click.option("--mandate-id", required=True, help="The mandate's reference (1-35 characters).")
@click.option("--name", required=True, help="The account holder.")
@click.option("--iban", required=True)
@click.option("--bic", default=None)
@click.option("--signed-on", required=True, help="YYYY-MM-DD: the day the mandate was signed.")
def mandate_add(
    subscriber: str, mandate_id: str, name: str, iban: str, bic: str | None, signed_on: str
) -> None:
    """Record SUBSCRIBER's direct-debit mandate."""
    from vpop.billing.service import add_mandate
    from vpop.core.db import session_scope

    with reported_errors(), session_scope() as session:
        add_mandate(
            session, subscriber, mandate_id=mandate_id, name=name, iban=iban, bic=bic,
            signed_on=signed_on, actor=cli_actor(),
        )  # fmt: skip
    click.echo(f"mandate {mandate_id} recorded for {subscriber}")
