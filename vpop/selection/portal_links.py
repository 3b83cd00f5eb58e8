"""Signed, expiring links that let a subscriber choose an ISP from anywhere."""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from vpop.core import validate
from vpop.core.errors import BadInput
from vpop.core.secrets import secret_key

SALT = "vpop-portal-link"
DEFAULT_TTL = 24 * 3600


class LinkRefused(BadInput):
    """The portal link is tampered with, or expired."""

    code = "VPOP-403-LINK"
    status = 403


def make_token(subscriber: str, key: str | None = None) -> str:
    """A token naming ``subscriber``, signed with the server's key (time-stamped)."""
    subscriber = validate.name(subscriber, "subscriber")
    return URLSafeTimedSerializer(key or secret_key(), salt=SALT).dumps({"s": subscriber})


def read_token(token: str, max_age: int = DEFAULT_TTL, key: str | None = None) -> str:
    """The subscriber a valid token names.

    Raises:
        LinkRefused: bad signature or older than ``max_age`` seconds.
    """
    serializer = URLSafeTimedSerializer(key or secret_key(), salt=SALT)
    try:
        data = serializer.loads(token, max_age=max_age)
    except SignatureExpired as err:
        raise LinkRefused("this portal link has expired; ask for a new one") from err
    except BadSignature as err:
        raise LinkRefused("this portal link is not valid") from err
    if not isinstance(data, dict) or not isinstance(data.get("s"), str):
        raise LinkRefused("this portal link is not valid")
    return validate.name(data["s"], "subscriber")
