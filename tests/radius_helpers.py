"""What the RADIUS proofs share: free loopback ports, vpop's app on a real HTTP port, and
``radclient`` as the NAS (its answer parsed into a code and attributes)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

SECRET = "lab-secret-1"
RECEIVED = re.compile(r"^Received (\S+) Id \d+")
ATTRIBUTE = re.compile(r"^\s+([A-Za-z0-9.-]+) = (.*)$")
BARE = re.compile(r"[A-Za-z0-9-]+")  # enum names, integers, 0x octets: unquoted


def need_freeradius() -> None:
    """Skip (a required proof: CI turns it into a failure) when FreeRADIUS is missing."""
    for program in ("freeradius", "radclient"):
        if shutil.which(program) is None and shutil.which(program, path="/usr/sbin") is None:
            pytest.skip(
                f"freeradius is not installed ({program} missing): "
                "apt-get install freeradius freeradius-rest freeradius-utils"
            )


def free_port(kind: int) -> int:
    """A port nobody listens on at 127.0.0.1 now (UDP or TCP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def served(app: Any, port: int = 0) -> Iterator[str]:
    """``app`` on a threaded HTTP server at 127.0.0.1 (rlm_rest keeps connections open,
    so the server must answer several at once); yields its base URL; stops it after."""
    http = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, name="vpop-test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}"
    finally:
        http.shutdown()
        thread.join(10)
        http.server_close()


@dataclass
class Answer:
    """What radclient received: the packet type (None: no reply) and its attributes."""

    code: str | None
    attributes: dict[str, list[str]] = field(default_factory=dict)
    output: str = ""

    def first(self, name: str) -> str | None:
        """The first value of attribute ``name``, without quotes."""
        values = self.attributes.get(name)
        return values[0] if values else None


def radclient(
    port: int,
    kind: str,
    attributes: dict[str, str],
    *,
    secret: str = SECRET,
    timeout: float = 2.0,
    retries: int = 1,
    raddb: Path | None = None,
) -> Answer:
    """Send one request with radclient and parse what came back.

    Args:
        port: FreeRADIUS's port on 127.0.0.1.
        kind: ``auth`` or ``acct``.
        attributes: attribute name -> value (quoted here unless a bare word or number).
        secret: the client's shared secret.
        timeout: seconds radclient waits for each try.
        retries: how many times radclient sends the request.
        raddb: a directory whose ``dictionary`` radclient reads too (vpop's rendered
            configuration: then it names accel-ppp's attributes).
    """
    lines = []
    for name, value in attributes.items():
        shown = value if BARE.fullmatch(value) else f'"{value}"'
        lines.append(f"{name} = {shown}")
    dictionary = ["-d", str(raddb)] if raddb is not None else []
    command = ["radclient", *dictionary, "-x", "-r", str(retries), "-t", str(timeout)]
    done = subprocess.run(
        [*command, f"127.0.0.1:{port}", kind, secret],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=retries * timeout + 10,
        check=False,
    )
    answer = Answer(code=None, output=done.stdout + done.stderr)
    receiving = False
    for line in done.stdout.splitlines():
        match = RECEIVED.match(line)
        if match:
            answer.code, receiving = match.group(1), True
            continue
        if receiving:
            pair = ATTRIBUTE.match(line)
            if pair is None:
                receiving = False
                continue
            answer.attributes.setdefault(pair.group(1), []).append(pair.group(2).strip('"'))
    return answer
