"""NOC users: passwords stored as scrypt hashes (stdlib ``hashlib.scrypt``), never in clear."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpop.core.audit import audit
from vpop.core.errors import BadInput
from vpop.identity.models import User

ROLES = ("noc", "admin")
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


def create_user(session: Session, username: str, password: str, role: str, actor: str) -> User:
    """Add a NOC user.

    Raises:
        BadInput: a malformed username, a short password, an unknown role or a taken name.
    """
    if not USERNAME.fullmatch(username):
        raise BadInput("username: 2-64 characters, lowercase letters, digits, . _ -")
    if len(password) < 12:
        raise BadInput("password: at least 12 characters")
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
