"""Switching with consent: an ISP's request for someone else's customer waits for a yes.

An ISP token may ask to move a line that does not use that ISP now only as a
``PENDING_CONSENT`` order (:func:`vpop.selection.orders.submit_selection` decides). The
subscriber answers on the portal, recognised by their line or their portal link, or through
a signed link that expires (:func:`consent_url`), which the API hands to the ISP to send on:

* **confirm**: the order becomes ``RECEIVED`` and is announced with
  :data:`~vpop.selection.signals.order_accepted`, like any other order; ``consented_by``
  records who said yes;
* **decline**: ``DECLINED``, final, nothing changes;
* **no answer** within :data:`CONSENT_TTL`: ``EXPIRED``, final, nothing changes
  (:func:`expire_consents`, run whenever a pending request is read or answered, and by a
  sweeper).

Declined and expired orders are announced with
:data:`~vpop.selection.signals.order_finished`, so the requesting ISP's callback says so.
Operators, webhooks and the subscriber themself switch directly. The flow is described in
docs/tenancy.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import quote

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vpop.core.audit import audit
from vpop.core.db import session_scope
from vpop.core.errors import BadInput, NotFound, VpopError
from vpop.core.secrets import secret_key
from vpop.core.signals import emit
from vpop.core.time import utcnow
from vpop.selection.models import Order, OrderStatus
from vpop.selection.signals import order_accepted, order_finished

SALT = "vpop-consent-link"
#: How long a subscriber has to answer an ISP's request (and a consent link stays valid).
CONSENT_TTL = timedelta(days=3)
#: The path of the consent page on the portal (the link's path).
CONSENT_PATH = "/consent"


class ConsentRefused(BadInput):
    """The consent link is tampered with, or expired."""

    code = "VPOP-403-CONSENT-LINK"
    status = 403


class ConsentClosed(VpopError):
    """The request was already confirmed, declined, or it expired."""

    code = "VPOP-409-CONSENT"
    status = 409


def needs_consent(role: str, isp: str | None, current_isp: str | None, wanted: str) -> bool:
    """Whether a selection by this caller must wait for the subscriber's consent.

    Args:
        role: The caller's role (``isp`` tokens are the only ones that wait).
        isp: The caller's ISP, for an ``isp`` token.
        current_isp: The ISP the line uses now (None: the network's default).
        wanted: The ISP the order moves the line to.
    """
    return role == "isp" and isp == wanted and current_isp != wanted


def make_consent_token(order_id: int, key: str | None = None) -> str:
    """A token naming the pending order ``order_id``, signed and time-stamped."""
    return URLSafeTimedSerializer(key or secret_key(), salt=SALT).dumps({"o": order_id})


def read_consent_token(token: str, key: str | None = None) -> int:
    """The order a valid consent token names.

    Raises:
        ConsentRefused: a bad signature, or older than :data:`CONSENT_TTL`.
    """
    serializer = URLSafeTimedSerializer(key or secret_key(), salt=SALT)
    try:
        data = serializer.loads(token, max_age=int(CONSENT_TTL.total_seconds()))
    except SignatureExpired as err:
        raise ConsentRefused("this consent link has expired; nothing was changed") from err
    except BadSignature as err:
        raise ConsentRefused("this consent link is not valid") from err
    if not isinstance(data, dict) or type(data.get("o")) is not int:
        raise ConsentRefused("this consent link is not valid")
    return int(data["o"])


def consent_url(order_id: int, public_url: str, key: str | None = None) -> str:
    """The link the subscriber opens to confirm or decline the pending order.

    Args:
        order_id: The pending order.
        public_url: Where subscribers reach the portal (``VPOP_PUBLIC_URL``).
        key: The signing key (default: the server's).
    """
    token = make_consent_token(order_id, key)
    return f"{public_url.rstrip('/')}{CONSENT_PATH}?c={quote(token, safe='')}"


def expire_consents(
    url: str | None = None,
    *,
    order_ids: list[int] | None = None,
    line_ids: list[int] | None = None,
    now: datetime | None = None,
) -> list[int]:
    """Mark pending orders whose time to answer has passed ``EXPIRED``; announce each.

    Args:
        url: The database URL (default: the settings').
        order_ids: Only these orders (default: every pending order).
        line_ids: Only these lines' orders.
        now: The time to compare with (default: now).

    Returns:
        The ids of the orders that expired now.
    """
    now = now or utcnow()
    stmt = select(Order).where(
        Order.status == OrderStatus.PENDING_CONSENT.value, Order.consent_expires_at <= now
    )
    if order_ids is not None:
        stmt = stmt.where(Order.id.in_(order_ids))
    if line_ids is not None:
        stmt = stmt.where(Order.line_id.in_(line_ids))
    expired: list[int] = []
    with session_scope(url) as session:
        for order in list(session.scalars(stmt)):
            if _close(session, order.id, OrderStatus.EXPIRED, now):
                order.error = "the subscriber did not answer in time; nothing was changed"
                audit(session, "consent", "order.expire", f"order:{order.id}")
                expired.append(order.id)
    for order_id in expired:
        emit(order_finished, order_id)
    return expired


def pending_orders(line_ids: list[int], url: str | None = None) -> list[Order]:
    """The requests still waiting for an answer on these lines, oldest first (expired ones
    are settled first)."""
    expire_consents(url, line_ids=line_ids)
    with session_scope(url) as session:
        orders = list(
            session.scalars(
                select(Order)
                .where(
                    Order.line_id.in_(line_ids),
                    Order.status == OrderStatus.PENDING_CONSENT.value,
                )
                .order_by(Order.id)
            )
        )
        session.expunge_all()
    return orders


def answer_consent(
    order_id: int,
    *,
    confirm: bool,
    actor: str,
    line_ids: list[int] | None = None,
    url: str | None = None,
) -> Order:
    """Confirm or decline a pending order, once.

    Args:
        order_id: The pending order.
        confirm: True to let it run, False to decline it.
        actor: Who answered (``portal:sub1``, ``consent-link:sub1``), recorded and audited.
        line_ids: The lines the answering subscriber may speak for (None: the caller has
            already proven it, e.g. with a signed link naming this order).
        url: The database URL.

    Returns:
        The order after the answer (``RECEIVED`` or ``DECLINED``).

    Raises:
        NotFound: no such order, or not one of ``line_ids``' (the same answer).
        ConsentClosed: it is no longer pending (confirmed, declined or expired).
    """
    expire_consents(url, order_ids=[order_id])
    now = utcnow()
    with session_scope(url) as session:
        order = session.get(Order, order_id)
        if order is None or (line_ids is not None and order.line_id not in line_ids):
            raise NotFound(f"no request {order_id} waits for your answer", code="VPOP-404-ORDER")
        target = OrderStatus.RECEIVED if confirm else OrderStatus.DECLINED
        if not _close(session, order_id, target, now):
            raise ConsentClosed(_closed_words(order.status))
        session.refresh(order)
        # how, not who: the requesting ISP reads this field, and may not know the subscriber id
        order.consented_by = actor.partition(":")[0] if confirm else None
        if confirm:
            line = order.line
            current = line.selection.isp_id if line.selection is not None else None
            order.losing_isp_id = current if current != order.isp_id else None
        else:
            order.error = "the subscriber declined; nothing was changed"
        audit(session, actor, "order.confirm" if confirm else "order.decline", f"order:{order_id}")
        session.flush()
        session.expunge(order)
    if confirm:
        emit(order_accepted, order.router)
    else:
        emit(order_finished, order.id)
    return order


def _close(session: Session, order_id: int, status: OrderStatus, now: datetime) -> bool:
    """Move a pending order to ``status`` unless someone else answered first."""
    values: dict[str, object] = {"status": status.value}
    if status is not OrderStatus.RECEIVED:
        values["finished_at"] = now
    result = session.execute(
        update(Order)
        .where(Order.id == order_id, Order.status == OrderStatus.PENDING_CONSENT.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def _closed_words(status: str) -> str:
    if status == OrderStatus.DECLINED:
        return "this request was already declined; nothing was changed"
    if status == OrderStatus.EXPIRED:
        return "this request has expired; nothing was changed"
    return "this request was already confirmed"
