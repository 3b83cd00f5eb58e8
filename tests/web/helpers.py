"""Helpers for the page tests: the fixed secrets, reading forms out of HTML, counting orders."""

from __future__ import annotations

import html
import re

from sqlalchemy import func, select
from werkzeug.test import TestResponse

from vpop.core.db import session_scope
from vpop.selection.models import Order

SECRET_KEY = "test-secret-key-for-the-pages-0123456789"
NOC_PASSWORD = "correct horse battery"

_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')


def text(response: TestResponse) -> str:
    """The response body as text."""
    return response.get_data(as_text=True)


def form_token(response: TestResponse) -> str:
    """The CSRF token of the first form on the page."""
    return hidden_fields(response)["csrf_token"]


def hidden_fields(response: TestResponse, after: str = "") -> dict[str, str]:
    """The hidden fields of the first form after the marker ``after`` (HTML-unescaped)."""
    body = text(response)
    start = body.index(after) if after else 0
    form = body[start:]
    form = form[: form.index("</form>")]
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(form)}


def order_count(url: str) -> int:
    """How many orders the database holds."""
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(Order)) or 0)
