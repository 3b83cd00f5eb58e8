"""Fuzzing POST /api/v1/selections: hostile values never make an order or a 5xx.

CI runs a bounded slice (``VPOP_FUZZ_CASES``, default 300 cases, fixed seed); the soak
marker runs more: ``pytest -m soak`` with ``VPOP_FUZZ_CASES=20000``.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.webhooks.helpers import order_count, post_signed

NASTY = [
    "\n",
    "\r",
    "\u2028",
    "\u2029",
    "\x00",
    "\t",
    "\x1b[31m",
    "\u202e",
    "\ufeff",
    "%0a",
    "\\n",
    "'",
    '"',
    ";",
    " ",
    "\u00a0",
    "ｉｓｐ",
    "isp-b\nexit",
    "192.0.2.0/255.255.255.0",
    "fe80::1%eth0",
    "fe80::1%eth0\n",
    "3232235520",
    "192.0.2.01/32",
    "../",
    "{{7*7}}",
    "${jndi:x}",
    "a" * 5000,
    "",
    "-",
    "isp-",
    "ISP-B",
    "sub1 ",
    " sub1",
]
KEYS = ["subscriber", "isp", "calling_number", "circuit_id", "access_id", "dry_run", "callback_url"]
VALUES: list[Any] = [None, True, 0, -1, 1.5, 2**70, [], {}, ["isp-b"], {"a": 1}]


def mutate(rng: random.Random) -> Any:
    """A hostile body: valid-looking fields with one or more poisoned values or shapes."""
    body: dict[str, Any] = {"subscriber": "sub1", "isp": "isp-b"}
    for _ in range(rng.randint(1, 3)):
        key = rng.choice([*KEYS, "unknown", "isp"])
        choice = rng.random()
        if choice < 0.6:
            base = rng.choice(["isp-b", "sub1", "+31205550001", "rc1:sub1", "http://x/"])
            nasty = rng.choice(NASTY)
            cut = rng.randint(0, len(base))
            body[key] = base[:cut] + nasty + base[cut:]
        elif choice < 0.9:
            body[key] = rng.choice(VALUES)
        else:
            body.pop(key, None)
    if rng.random() < 0.05:
        return rng.choice([[], "isp-b", 3, None, [body]])
    return body


def cases() -> int:
    return int(os.environ.get("VPOP_FUZZ_CASES", "300"))


def run_fuzz(client: FlaskClient, database_url: str, count: int, seed: int) -> None:
    rng = random.Random(seed)
    before = order_count(database_url)
    accepted = 0
    for index in range(count):
        body = mutate(rng)
        response = post_signed(client, body, msg_id=f"fuzz_{seed}_{index}")
        assert response.status_code < 500, (body, response.get_data(as_text=True))
        if response.status_code == 202:
            accepted += 1
            # only a body that is valid after all may pass: nothing hostile in it
            text = json.dumps(body, ensure_ascii=False)
            assert not any(c in text for c in "\n\r\u2028\u2029\x00\t"), body
        else:
            assert response.content_type == "application/problem+json"
            assert response.get_json()["code"].startswith("VPOP-")
    assert order_count(database_url) == before + accepted


def test_fuzzed_selection_bodies_are_refused_cleanly(
    client: FlaskClient, database_url: str
) -> None:
    run_fuzz(client, database_url, cases(), seed=20261126)


@pytest.mark.soak
def test_fuzzed_selection_bodies_soak(client: FlaskClient, database_url: str) -> None:
    run_fuzz(client, database_url, max(cases(), 5000), seed=7)
