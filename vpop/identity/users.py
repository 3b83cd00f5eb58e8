"""NOC users: passwords stored as scrypt hashes (stdlib ``hashlib.scrypt``), never in clear."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpop.core.audit import AuditEntry, audit
from vpop.core.errors import BadInput, NotFound
from vpop.core.time import as_utc, iso, utcnow
from vpop.identity.models import User

ROLES = ("noc", "admin")
MIN_PASSWORD = 12
# audit actions after which a user's earlier sessions are void
SESSION_ENDING_ACTIONS = ("user.disable", "user.reset_password")
_N, _R, _P = 2**14, 8, 1
USERNAME = re.compile(r"[a-z][a-z0-9._-]{1,63}")


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the stored hash (constant-time comparison)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        computed = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(digest) // 2,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed.hex(), digest)


def check_new_password(password: str) -> None:
    """Refuse a password too short to set.

    Raises:
        BadInput: fewer than :data:`MIN_PASSWORD` characters.
    """
    if len(password) < MIN_PASSWORD:
        raise BadInput(f"password: at least {MIN_PASSWORD} characters")


def create_user(session: Session, username: str, password: str, role: str, actor: str) -> User:
    """Add a NOC user.

    Raises:
        BadInput: a malformed username, a short password, an unknown role or a taken name.
    """
    if not USERNAME.fullmatch(username):
        raise BadInput("username: 2-64 characters, lowercase letters, digits, . _ -")
    check_new_password(password)
    if role not in ROLES:
        raise BadInput(f"role: one of {', '.join(ROLES)}")
    if session.scalars(select(User).where(User.username == username)).first() is not None:
        raise BadInput(f"user {username!r} exists already")
    user = User(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    audit(session, actor, "user.create", f"user:{username}", role=role)
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The enabled user with this name and password, else None (same work either way)."""
    user = session.scalars(select(User).where(User.username == username)).first()
    stored = user.password_hash if user is not None else hash_password("x" * 16)
    ok = check_password(password, stored)
    if user is None or not ok or user.disabled_at is not None:
        return None
    return user


def user_view(user: User) -> dict[str, Any]:
    """What may be shown of a user: never the password hash.

    Returns:
        ``username``, ``role``, ``created`` and ``disabled`` (ISO 8601; None while enabled).
    """
    return {
        "username": user.username,
        "role": user.role,
        "created": iso(user.created_at),
        "disabled": iso(user.disabled_at),
    }


def list_users(session: Session) -> list[User]:
    """Every NOC user, disabled ones too, by name."""
    return list(session.scalars(select(User).order_by(User.username)))


def get_user(session: Session, username: str) -> User:
    """The user called ``username``.

    Raises:
        NotFound: no such user.
    """
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(
            f"unknown user {username[:64]!r}; `vpop user list` shows the names",
            code="VPOP-404-USER",
        )
    return user


def disable_user(session: Session, username: str, *, actor: str) -> User:
    """Disable a user: they cannot sign in, and their open sessions end at their next request.

    Args:
        session: The transaction to disable in (with its audit entry).
        username: The user.
        actor: Who disables them, for the audit log.

    Returns:
        The disabled user.

    Raises:
        NotFound: no such user.
        BadInput: the user is already disabled, or is the last enabled admin.
    """
    user = get_user(session, username)
    if user.disabled_at is not None:
        raise BadInput(f"user {username!r} is already disabled")
    if user.role == "admin":
        admins = session.scalars(
            select(User.id).where(
                User.role == "admin", User.disabled_at.is_(None), User.id != user.id
            )
        ).first()
        if admins is None:
            raise BadInput(
                f"user {username!r} is the last enabled admin; create or enable another "
                "admin first (`vpop user create NAME --role admin`)"
            )
    user.disabled_at = utcnow()
    audit(session, actor, "user.disable", f"user:{username}")
    return user


def enable_user(session: Session, username: str, *, actor: str) -> User:
    """Let a disabled user sign in again (sessions from before the disabling stay void).

    Raises:
        NotFound: no such user.
        BadInput: the user is not disabled.
    """
    user = get_user(session, username)
    if user.disabled_at is None:
        raise BadInput(f"user {username!r} is not disabled")
    user.disabled_at = None
    audit(session, actor, "user.enable", f"user:{username}")
    return user


def reset_password(session: Session, username: str, password: str, *, actor: str) -> User:
    """Set a new password; the user's open sessions end at their next request.

    Raises:
        NotFound: no such user.
        BadInput: the password is too short.
    """
    user = get_user(session, username)
    check_new_password(password)
    user.password_hash = hash_password(password)
    audit(session, actor, "user.reset_password", f"user:{username}")
    return user


def session_user(session: Session, username: str, signed_in_at: datetime) -> User | None:
    """The user behind a NOC session signed in at ``signed_in_at``, if it is still good.

    A session is good while its user exists, is enabled, has a NOC role, and has not been
    disabled or given a new password since signing in (so enabling a user again does not
    bring an old session back).

    Args:
        session: A database session.
        username: The name the NOC session carries.
        signed_in_at: When that session signed in.

    Returns:
        The user, or None when the session must end.
    """
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None or user.disabled_at is not None or user.role not in ROLES:
        return None
    ended = session.scalars(
        select(AuditEntry.id)
        .where(
            AuditEntry.at >= as_utc(signed_in_at),
            AuditEntry.object == f"user:{username}",
            AuditEntry.action.in_(SESSION_ENDING_ACTIONS),
        )
        .limit(1)
    ).first()
    return None if ended is not None else user
