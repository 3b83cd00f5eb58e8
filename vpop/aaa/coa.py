"""CoA and Disconnect (RFC 5176): move a subscriber's live RADIUS sessions to another ISP.

When a line changes ISP while its subscriber has an open RADIUS session (a
:class:`~vpop.aaa.models.RadiusSession` without ``stopped_at``), the NAS that holds the
session is told: a **CoA-Request** with the session's identification and the new ISP in the
attribute of the NAS's family, or, for a family that cannot change the routing instance of a
live session (juniper), a **Disconnect-Request**, after which the subscriber re-authenticates
and the Access-Accept carries the new ISP.

What each request carries (docs/coa.md):

* the NAS: ``NAS-IP-Address`` (``NAS-IPv6-Address``) = the client's address;
* the session: ``Acct-Session-Id``, plus ``User-Name`` and ``Framed-IP-Address``
  (``Framed-IPv6-Address``) when accounting reported them;
* a CoA only: the ISP attribute alone (:func:`isp_attributes`). accel-ppp ignores
  ``Accel-VRF-Name`` in a CoA that also carries ``Class`` or ``Session-Timeout``, so nothing
  else is sent.

Requests go to the client's address on ``VPOP_RADIUS_COA_PORT`` (3799), signed with the
client's shared secret (:func:`read_secret`), and are sent again on silence, the same packet
(so the same Identifier, RFC 5176 section 2.3) after a wait that doubles: :data:`TRIES` sends
in all. accel-ppp drops a second CoA for a session while one is pending, which is one more
reason to retry. The outcome is one line of text (:attr:`CoaResult.text`):
``ACK``, ``NAK 503 session context not found``, ``no answer after 3 tries``.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pyrad import packet
from pyrad.client import Client, Timeout
from pyrad.dictionary import Dictionary
from sqlalchemy import select
from sqlalchemy.orm import Session

from vpop.aaa.errors import AaaError
from vpop.aaa.models import RadiusClient, RadiusSession
from vpop.aaa.radius_state import LOCAL_CLIENT, RadiusPaths
from vpop.aaa.replies import FAMILIES, instance_name
from vpop.core.db import session_scope
from vpop.core.settings import load_settings

log = logging.getLogger(__name__)

#: The pyrad dictionary shipped beside this module: only the attributes used here.
DICTIONARY = Path(__file__).with_name("dictionary")

#: How many times a request is sent before vpop gives up on a silent NAS.
TRIES = 3

#: Seconds to wait for an answer to the first send; each further send waits twice as long.
FIRST_WAIT = 1.0

#: The longest result text an order keeps (``Order.coa_result``).
RESULT_MAX = 200

#: The NAS families that cannot change a live session's routing instance: they get a
#: Disconnect-Request (every other family of :data:`vpop.aaa.replies.FAMILIES` a CoA).
DISCONNECT_ONLY = frozenset({"juniper"})

#: RFC 5176 section 3.6, Error-Cause values, in words.
ERROR_CAUSES = {
    201: "residual session context removed",
    202: "invalid EAP packet (ignored)",
    401: "unsupported attribute",
    402: "missing attribute",
    403: "NAS identification mismatch",
    404: "invalid request",
    405: "unsupported service",
    406: "unsupported extension",
    407: "invalid attribute value",
    501: "administratively prohibited",
    502: "request not routable (proxy)",
    503: "session context not found",
    504: "session context not removable",
    505: "other proxy processing error",
    506: "resources unavailable",
    507: "request initiated",
    508: "multiple session selection unsupported",
}


class CoaError(AaaError):
    """A CoA could not be sent at all (no secret for the NAS)."""


@dataclass(frozen=True)
class CoaTarget:
    """One live session to move, and the NAS that holds it."""

    nas: str
    address: str | None  # None: the session's NAS is no longer a RADIUS client
    family: str
    acct_session_id: str
    user_name: str | None = None
    framed_ip: str | None = None


@dataclass(frozen=True)
class CoaResult:
    """How one request ended.

    ``outcome`` is ``ACK``, ``NAK``, ``silence`` (no valid answer after every try) or
    ``error`` (nothing was sent: ``detail`` says why).
    """

    target: CoaTarget
    disconnect: bool
    outcome: str
    error_cause: int | None = None
    tries: int = 0
    detail: str = ""

    @property
    def text(self) -> str:
        """The result in one line: ``ACK``, ``NAK 503 session context not found``,
        ``Disconnect-ACK``, ``no answer after 3 tries``, or what stopped the send."""
        prefix = "Disconnect-" if self.disconnect else ""
        if self.outcome == "ACK":
            return f"{prefix}ACK"
        if self.outcome == "NAK":
            if self.error_cause is None:
                return f"{prefix}NAK"
            words = ERROR_CAUSES.get(self.error_cause, "unknown error cause")
            return f"{prefix}NAK {self.error_cause} {words}"
        if self.outcome == "silence":
            return f"no answer after {self.tries} tries"
        return self.detail


@cache
def dictionary() -> Dictionary:
    """The pyrad dictionary of :data:`DICTIONARY`, read once."""
    return Dictionary(str(DICTIONARY))


def isp_attributes(family: str, isp: str) -> list[tuple[str, str]]:
    """The attribute that names ``isp`` in a CoA-Request to a NAS of ``family``.

    The value is the ISP's routing instance, as in the Access-Accept
    (:func:`vpop.aaa.replies.instance_name`, ``vpop-<isp>``). accel-ppp: ``Accel-VRF-Name``;
    cisco: ``Cisco-AVPair`` ``ip:vrf-id=vpop-<isp>``; generic (and an unknown family):
    ``Filter-Id``; juniper: none (it gets a Disconnect-Request instead).
    """
    instance = instance_name(isp)
    if family == "accel-ppp":
        return [("Accel-VRF-Name", instance)]
    if family == "cisco":
        return [("Cisco-AVPair", f"ip:vrf-id={instance}")]
    if family == "juniper":
        return []
    return [("Filter-Id", instance)]


def identification(target: CoaTarget) -> list[tuple[str, str]]:
    """The attributes that name the NAS and the session (RFC 5176 section 3)."""
    assert target.address is not None
    nas = ipaddress.ip_address(target.address)
    found = [("NAS-IP-Address" if nas.version == 4 else "NAS-IPv6-Address", str(nas))]
    found.append(("Acct-Session-Id", target.acct_session_id))
    if target.user_name:
        found.append(("User-Name", target.user_name))
    if target.framed_ip:
        framed = ipaddress.ip_address(target.framed_ip)
        found.append(
            ("Framed-IP-Address" if framed.version == 4 else "Framed-IPv6-Address", str(framed))
        )
    return found


def request_attributes(target: CoaTarget, isp: str) -> tuple[bool, list[tuple[str, str]]]:
    """Whether the NAS gets a Disconnect-Request, and the request's attributes in order."""
    disconnect = _disconnects(target.family)
    attributes = identification(target)
    if not disconnect:
        attributes += isp_attributes(target.family, isp)
    return disconnect, attributes


def _disconnects(family: str) -> bool:
    return family in DISCONNECT_ONLY


def read_secret(nas: str) -> bytes:
    """The shared secret of the RADIUS client ``nas``.

    It is the file ``$VPOP_STATE_DIR/radius/secrets/<nas>`` that ``vpop radius client add``
    writes (mode 0600; a trailing newline is not part of it); the lab's 127.0.0.1 client
    (``localhost``) has ``VPOP_RADIUS_SECRET``.

    Raises:
        CoaError: there is no secret for the client.
    """
    settings = load_settings()
    path = RadiusPaths.from_settings(settings).secrets / nas
    try:
        secret = path.read_bytes().rstrip(b"\r\n")
    except FileNotFoundError:
        secret = b""
    if not secret and nas == LOCAL_CLIENT and settings.radius_secret is not None:
        secret = settings.radius_secret.get_secret_value().encode()
    if not secret:
        raise CoaError(f"no secret for RADIUS client {nas} ({path} is missing or empty)")
    return secret


def send(
    target: CoaTarget,
    isp: str,
    *,
    secret: bytes,
    port: int,
    tries: int = TRIES,
    first_wait: float = FIRST_WAIT,
) -> CoaResult:
    """Send one CoA-Request (or Disconnect-Request) and wait for its ACK or NAK.

    The same packet is sent up to ``tries`` times while the NAS is silent, waiting
    ``first_wait`` seconds after the first send and twice as long after each further one.
    A reply that does not verify with ``secret`` is ignored, as silence.

    Args:
        target: The session and its NAS (with an address).
        isp: The ISP id the session moves to.
        secret: The client's shared secret.
        port: The NAS's CoA port (``VPOP_RADIUS_COA_PORT``).
        tries: How many sends at most.
        first_wait: Seconds to wait after the first send.

    Returns:
        The outcome: ``ACK`` or ``NAK`` (with its Error-Cause), or ``silence``.
    """
    disconnect, attributes = request_attributes(target, isp)
    assert target.address is not None
    client = Client(
        server=target.address,
        coaport=port,
        secret=secret,
        dict=dictionary(),
        retries=1,
        timeout=first_wait,
    )
    code = packet.DisconnectRequest if disconnect else packet.CoARequest
    request = client.CreateCoAPacket(code=code)
    for name, value in attributes:
        request.AddAttribute(name, value)
    try:
        for attempt in range(tries):
            client.timeout = first_wait * 2**attempt
            try:
                reply = client.SendPacket(request)
            except Timeout:
                log.info("no answer from %s to %s (try %d)", target.nas, code, attempt + 1)
                continue
            if reply.code in (packet.CoAACK, packet.DisconnectACK):
                return CoaResult(target, disconnect, "ACK", tries=attempt + 1)
            causes = reply.get("Error-Cause") or [None]
            return CoaResult(target, disconnect, "NAK", causes[0], tries=attempt + 1)
    finally:
        client._CloseSocket()  # pyrad has no public close; an open socket would leak
    return CoaResult(target, disconnect, "silence", tries=tries)


def has_open_session(db: Session, line_id: int) -> bool:
    """Whether the line has a RADIUS session that accounting has not seen stop."""
    found = db.scalar(
        select(RadiusSession.id)
        .where(RadiusSession.line_id == line_id, RadiusSession.stopped_at.is_(None))
        .limit(1)
    )
    return found is not None


def targets(db: Session, line_id: int, isp: str, losing_isp: str | None) -> list[CoaTarget]:
    """The line's open sessions that must move to ``isp``, oldest first.

    A session is left alone only when the order changed nothing (``losing_isp`` is None)
    and the session was accepted with ``isp`` already.
    """
    sessions = db.scalars(
        select(RadiusSession)
        .where(RadiusSession.line_id == line_id, RadiusSession.stopped_at.is_(None))
        .order_by(RadiusSession.started_at, RadiusSession.id)
    )
    found: list[CoaTarget] = []
    for row in sessions:
        if losing_isp is None and row.isp_id == isp:
            continue
        client = db.get(RadiusClient, row.nas)
        address = client.address if client is not None else None
        if client is None and row.nas == LOCAL_CLIENT:
            address = "127.0.0.1"  # the lab's client, not a row (VPOP_RADIUS_SECRET)
        family = client.family if client is not None else "generic"
        found.append(
            CoaTarget(
                nas=row.nas,
                address=address,
                family=family if family in FAMILIES else "generic",
                acct_session_id=row.acct_session_id,
                user_name=row.user_name,
                framed_ip=row.framed_ip,
            )
        )
    return found


def move_line_sessions(
    line_id: int,
    isp: str,
    losing_isp: str | None,
    *,
    url: str | None = None,
    first_wait: float | None = None,
) -> str | None:
    """Tell the NAS of each of the line's live sessions that it now uses ``isp``.

    Args:
        line_id: The line whose ISP changed.
        isp: The ISP the line uses now.
        losing_isp: The ISP it used before (None: unknown, or the same).
        url: The database (default: the configured one).
        first_wait: Seconds to wait after a first send (default :data:`FIRST_WAIT`).

    Returns:
        One line for the order (:data:`RESULT_MAX` characters at most): one session's
        result, or ``<session>@<nas>: <result>`` per session joined by ``; ``; None when
        no live session had to move.
    """
    with session_scope(url) as db:
        found = targets(db, line_id, isp, losing_isp)
    if not found:
        return None
    port = load_settings().radius_coa_port
    wait = FIRST_WAIT if first_wait is None else first_wait
    texts = []
    for target in found:
        texts.append(_send_one(target, isp, port, wait).text)
    if len(found) == 1:
        return texts[0][:RESULT_MAX]
    joined = "; ".join(
        f"{target.acct_session_id}@{target.nas}: {text}"
        for target, text in zip(found, texts, strict=True)
    )
    return joined[:RESULT_MAX]


def _send_one(target: CoaTarget, isp: str, port: int, wait: float) -> CoaResult:
    """:func:`send` to one session, or an ``error`` result when it cannot be sent."""
    disconnect = _disconnects(target.family)
    if target.address is None:
        detail = f"RADIUS client {target.nas} is unknown: nothing sent"
        return CoaResult(target, disconnect, "error", detail=detail)
    try:
        secret = read_secret(target.nas)
    except CoaError as err:
        return CoaResult(target, disconnect, "error", detail=str(err))
    try:
        return send(target, isp, secret=secret, port=port, first_wait=wait)
    except OSError as err:  # the address cannot be reached at all (no route, bad family)
        detail = f"could not send to {target.nas}: {err}"
        return CoaResult(target, disconnect, "error", detail=detail)
