"""How vpop reads the router agent's answers (``tasks.connection.Agent``), over a real socket
pair standing in for the SSH channel: exact 64-bit counters from an answer that arrives in
pieces, and a clear error, never a guess, for an answer it cannot read."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from tasks.connection import Agent, ShellError

U64_MAX = 2**64 - 1


@pytest.fixture
def pair() -> Iterator[tuple[Agent, socket.socket]]:
    ours, router = socket.socketpair()
    try:
        yield Agent(ours), router  # type: ignore[arg-type]  # a socket has what Agent uses
    finally:
        ours.close()
        router.close()


def test_counters_arrive_exactly_up_to_64_bits_in_answers_split_across_reads(
    pair: tuple[Agent, socket.socket],
) -> None:
    agent, router = pair
    series = {f"sub{i}_up": [i, U64_MAX - i, 100 + i] for i in range(1500)}
    body = json.dumps({"ok": True, "counters": series}).encode() + b"\n"
    # longer than one read of the agent (64 KiB): it arrives in pieces, as a long answer
    # does over SSH (written by a thread: it may not fit the socket's buffer)
    assert len(body) > 1 << 16
    writer = threading.Thread(target=router.sendall, args=(body,))
    writer.start()
    answer = agent.call({"op": "counters", "table": ["inet", "vpop_acct"]})
    writer.join(10)
    assert not writer.is_alive()
    request = b""
    while not request.endswith(b"\n"):
        request += router.recv(4096)
    assert json.loads(request) == {"op": "counters", "table": ["inet", "vpop_acct"]}
    assert answer["ok"] is True
    assert answer["counters"]["sub1499_up"] == [1499, U64_MAX - 1499, 1599]
    assert type(answer["counters"]["sub0_up"][1]) is int
    assert answer["counters"] == series


@pytest.mark.parametrize(
    "line",
    [
        b"{not json\n",  # a broken line
        b'{"ok": true, "counters": {"sub1_up": [1, 2\n',  # cut short
    ],
)
def test_an_answer_that_cannot_be_read_exactly_is_an_error_and_ends_the_session(
    pair: tuple[Agent, socket.socket], line: bytes
) -> None:
    agent, router = pair
    router.sendall(line)
    with pytest.raises(ShellError, match="router agent failed: "):
        agent.call({"op": "counters", "table": ["inet", "vpop_acct"]})
    assert agent.broken
    with pytest.raises(ShellError, match="broken; reconnect"):
        agent.call({"op": "counters", "table": ["inet", "vpop_acct"]})
