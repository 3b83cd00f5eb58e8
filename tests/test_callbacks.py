"""Callback destinations: internal addresses are refused unless the operator allows them."""

from __future__ import annotations

import pytest

from vpop.core.callbacks import refused_destination


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://10.1.2.3/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest/meta-data",
        "http://192.168.1.1/",
        "http://0.0.0.0/",
    ],
    ids=["loopback", "localhost", "rfc1918", "ipv6-loopback", "metadata", "home", "any"],
)
# only classified: refused_destination resolves literal addresses locally and sends nothing
def test_internal_destinations_are_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VPOP_CALLBACK_ALLOW_PRIVATE", raising=False)
    reason = refused_destination(url)
    assert reason is not None and "internal address" in reason


def test_the_operator_may_allow_internal_destinations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPOP_CALLBACK_ALLOW_PRIVATE", "1")
    assert refused_destination("http://127.0.0.1:9/x") is None
