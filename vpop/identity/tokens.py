"""API bearer tokens: created once in clear, stored only as a SHA-256 hash.

A token looks like ``vpop_`` followed by 43 URL-safe characters (``secrets.token_urlsafe(32)``).
The database keeps ``sha256(token)`` in hex, so a leaked database does not leak usable tokens;
a lookup hashes the presented token and finds the row by that (unique, indexed) hash, which
also keeps the comparison free of timing differences on the secret itself.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from vpop.catalogue.service import Isp
from vpop.core.audit import audit
from vpop.core.db import get_engine
from vpop.core.errors import BadInput, NotFound
from vpop.core.prepared import Prepared, raw_transaction
from vpop.core.time import iso, utcnow
from vpop.identity.models import ApiToken, Role

PREFIX = "vpop_"
# what create_token makes, with some slack for tokens minted by other tools
TOKEN_FORMAT = re.compile(r"vpop_[A-Za-z0-9_-]{32,100}")


def hash_token(clear: str) -> str:
    """The stored form of a clear token: SHA-256, lowercase hex."""
    return hashlib.sha256(clear.encode("utf-8")).hexdigest()


def create_token(
    session: Session,
    role: str,
    isp: str | None = None,
    name: str = "api",
    *,
    actor: str = "cli",
    merchant: str | None = None,
) -> str:
    """Create a token and return it in clear; only its hash is stored.

    Args:
        session: The transaction to add the token (and its audit entry) to.
        role: One of ``admin``, ``noc``, ``portal``, ``isp``, ``merchant``.
        isp: The ISP an ``isp`` token is scoped to (required for that role, refused otherwise;
            a ``merchant`` token gets its payee's ISP).
        name: A label for people (who holds the token, what for).
        actor: Who creates the token, for the audit log.
        merchant: The payee (kind ``merchant``) a ``merchant`` token acts for: it may only
            call the payments API, for that merchant.

    Returns:
        The clear token. It cannot be recovered later.

    Raises:
        BadInput: unknown role, or an ISP given/missing for the role.
        NotFound: the ISP does not exist.
    """
    roles = {r.value for r in Role}
    if role not in roles:
        raise BadInput(
            f"unknown role {role!r}; choose one of {', '.join(sorted(roles))}",
            code="VPOP-400-ROLE",
        )
    if role == Role.MERCHANT:
        isp = _merchant_isp(session, merchant, isp)
    elif merchant is not None:
        raise BadInput(f"a {role} token does not act for a merchant", code="VPOP-400-ROLE")
    if role == Role.ISP and isp is None:
        raise BadInput("an isp token needs the ISP it acts for", code="VPOP-400-ROLE")
    if role not in (Role.ISP, Role.MERCHANT) and isp is not None:
        raise BadInput(f"a {role} token is not scoped to an ISP", code="VPOP-400-ROLE")
    if isp is not None and session.get(Isp, isp) is None:
        raise NotFound(f"unknown ISP {isp!r}", code="VPOP-404-ISP")
    clear = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name, token_hash=hash_token(clear), role=role, isp_id=isp, merchant_id=merchant
    )
    session.add(token)
    session.flush()
    audit(
        session, actor, "token.create", f"token:{token.id}",
        role=role, isp=isp, name=name, merchant=merchant,
    )  # fmt: skip
    return clear


def _merchant_isp(session: Session, merchant: str | None, isp: str | None) -> str:
    """The ISP a merchant token is scoped to: its payee's (a merchant registered under one)."""
    from vpop.billing.service import Payee

    if merchant is None:
        raise BadInput("a merchant token needs the merchant it acts for", code="VPOP-400-ROLE")
    payee = session.get(Payee, merchant)
    if payee is None or payee.kind != "merchant":
        raise NotFound(f"unknown merchant {merchant!r}", code="VPOP-404-PAYEE")
    if isp is not None and isp != payee.isp_id:
        raise BadInput(
            f"merchant {merchant!r} is registered under {payee.isp_id!r}, not {isp!r}",
            code="VPOP-400-ROLE",
        )
    return payee.isp_id


def lookup_token(session: Session, clear: str) -> ApiToken | None:
    """The live (not revoked) token whose clear text is ``clear``, or None."""
    if not TOKEN_FORMAT.fullmatch(clear):
        return None
    return session.scalars(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(clear), ApiToken.revoked_at.is_(None)
        )
    ).first()


#: A live token as a request's authentication needs it: (id, role, ISP, merchant).
TokenHolder = tuple[int, str, str | None, str | None]

_LIVE = Prepared(
    select(ApiToken.id, ApiToken.role, ApiToken.isp_id, ApiToken.merchant_id)
    .where(ApiToken.token_hash == bindparam("hash"), ApiToken.revoked_at.is_(None))
    .limit(1),
    {},
)


def token_holder(url: str | None, clear: str) -> TokenHolder | None:
    """:func:`lookup_token`'s answer for authenticating a request, as one plain statement
    (every request with a bearer token makes it; through the ORM it cost half a millisecond).

    Returns:
        The live token's id, role, ISP and merchant, or None (unknown, revoked, malformed).
    """
    if not TOKEN_FORMAT.fullmatch(clear):
        return None
    with raw_transaction(get_engine(url)) as (cursor, dialect):
        row = _LIVE.run(cursor, dialect, {"hash": hash_token(clear)}).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), row[2], row[3])


_TOKEN_ISP = Prepared(select(ApiToken.isp_id).where(ApiToken.id == bindparam("id")), {})


def token_isp(url: str | None, token_id: int) -> str | None:
    """The ISP a token (live or revoked) acts for, or None (no such token, not an ISP's)."""
    with raw_transaction(get_engine(url)) as (cursor, dialect):
        rows = _TOKEN_ISP.rows(cursor, dialect, {"id": token_id})
    return rows[0][0] if rows else None


def token_view(token: ApiToken) -> dict[str, Any]:
    """What may be shown of a token: never the token or its hash.

    Returns:
        ``id``, ``name``, ``role``, ``isp`` (None but for ``isp`` and ``merchant`` tokens),
        ``merchant`` (a merchant token's payee, else None), ``created`` and ``revoked`` (ISO
        8601 times; ``revoked`` None while the token is live).
    """
    return {
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "isp": token.isp_id,
        "merchant": token.merchant_id,
        "created": iso(token.created_at),
        "revoked": iso(token.revoked_at),
    }


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token, revoked ones too, by id."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, token_id: int, *, actor: str) -> ApiToken:
    """Revoke a token: from the commit on, every request bearing it is refused (401).

    Args:
        session: The transaction to revoke in (with its audit entry).
        token_id: The token's id (``vpop token list``).
        actor: Who revokes it, for the audit log.

    Returns:
        The revoked token.

    Raises:
        NotFound: no token has this id.
        BadInput: the token is already revoked.
    """
    token = session.get(ApiToken, token_id) if 0 < token_id < 2**63 else None
    if token is None:
        raise NotFound(
            f"unknown token {token_id}; `vpop token list` shows the ids", code="VPOP-404-TOKEN"
        )
    if token.revoked_at is not None:
        raise BadInput(f"token {token_id} is already revoked (at {iso(token.revoked_at)})")
    token.revoked_at = utcnow()
    audit(session, actor, "token.revoke", f"token:{token_id}", role=token.role, name=token.name)
    return token
