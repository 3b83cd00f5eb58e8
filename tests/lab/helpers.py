"""Helpers for lab tests that drive a real `vpop serve` over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook

FINAL = {"DONE_SUCCESS", "DONE_FAILED", "RECONCILED"}
SECRET = "whsec_" + "dnBvcC1sYWItdGVzdC1zZWNyZXQtMDEyMzQ1Njc4OQ=="


@dataclass
class Server:
    """A running `vpop serve` and what a test needs to talk to it."""

    base: str
    token: str
    db_url: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(
            self.base + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        return self.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})

    def select(self, body: dict[str, Any], msg_id: str | None = None) -> tuple[int, dict[str, Any]]:
        """POST /api/v1/selections signed with the standardwebhooks package."""
        payload = json.dumps(body)
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        now = datetime.now(UTC)
        signature = Webhook(SECRET).sign(msg_id, now, payload)
        return self.request(
            "POST",
            "/api/v1/selections",
            payload.encode(),
            {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signature,
            },
        )

    def wait_order(self, order_id: int, timeout: float = 60.0) -> dict[str, Any]:
        """Poll the order until it is final (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.get(f"/api/v1/orders/{order_id}")
            assert status == 200, body
            if body["status"] in FINAL:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"order {order_id} not final after {timeout}s: {body}")
            time.sleep(0.02)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vpop.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    workdir: Path,
    lab_state: dict[str, Any],
    *,
    portal: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """Register the lab in a fresh database, start `vpop serve`, wait until it answers."""
    from vpop.core.db import session_scope
    from vpop.identity.tokens import create_token
    from vpop.lab.registry import register_lab

    db_url = f"sqlite:///{workdir / 'vpop.sqlite'}"
    register_lab(lab_state, db_url)
    with session_scope(db_url) as session:
        token = create_token(session, "noc", name="tests")
    env = {
        **os.environ,
        "VPOP_DATABASE_URL": db_url,
        "VPOP_QUEUE_URL": f"sqlite:///{workdir / 'queue.sqlite'}",
        "VPOP_WEBHOOK_SECRETS": SECRET,
        "VPOP_STATE_DIR": str(workdir / "state"),
        "VPOP_CALLBACK_ALLOW_PRIVATE": "1",  # the tests' receivers listen on 127.0.0.1
        **(extra_env or {}),
    }
    port = free_port()
    log = workdir / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vpop.cli",
                "serve",
                "--port",
                str(port),
                "--portal" if portal else "--no-portal",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", token, db_url, env, proc, log)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"vpop serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(server.base + "/healthz", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                stop_server(server)
                raise AssertionError("vpop serve did not answer in 30 s") from None
            time.sleep(0.05)
    return server


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=15)


def run_vpop(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `vpop` command as an operator would, with ``env`` as its whole environment."""
    return subprocess.run(
        [sys.executable, "-m", "vpop.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def netns(node: str) -> str:
    """The namespace of a node of the lab under test (VPOP_LAB_PREFIX, default vpop-)."""
    return os.environ.get("VPOP_LAB_PREFIX", "vpop-") + node


def curl(sub: str, prefix: str | None = None) -> str:
    """Which ISP answers the subscriber at 203.0.113.100 (real traffic through the routers),
    in the lab under test or in the lab of namespace ``prefix``."""
    namespace = netns(sub) if prefix is None else prefix + sub
    out = subprocess.run(
        ["ip", "netns", "exec", namespace, "curl", "-sS", "-m", "5", "http://203.0.113.100/"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return out.stdout.strip() or f"(curl failed: {out.stderr.strip()})"


def pbrd_config(router: str, lab_dir: str) -> str:
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns(router),
            "vtysh",
            "--vty_socket",
            f"{lab_dir}/{router}",
            "-d",
            "pbrd",
            "-c",
            "show running-config",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return "\n".join(
        line for line in out.stdout.splitlines() if "vpop" in line or line.startswith(" ")
    )


@contextmanager
def private_lab(
    work: Path, name: str, prefix: str, *up: str
) -> Iterator[tuple[dict[str, str], str]]:
    """A lab of the test's own (:func:`private_lab_env`) brought up with ``vpop lab up *up``:
    its environment and what `lab up` printed; taken down (and checked down) at the end."""
    env, lab_dir = private_lab_env(work, name, prefix)
    try:
        started = run_vpop(env, "lab", "up", *up)
        assert started.returncode == 0, started.stdout + started.stderr
        yield env, started.stdout
    finally:
        down = run_vpop(env, "lab", "down")
        shutil.rmtree(lab_dir, ignore_errors=True)
        assert down.returncode == 0, down.stderr


def private_lab_env(work: Path, name: str, prefix: str) -> tuple[dict[str, str], Path]:
    """The environment of a lab of a test's own (beside the shared one): its directory under
    /run (the frr user must traverse it; pytest's tmp_path is root-only), its namespace
    prefix, and a database, queue and state under ``work``; and that directory."""
    lab_dir = Path("/run") / f"vpop-{name}-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "VPOP_LAB_DIR": str(lab_dir),
        "VPOP_LAB_PREFIX": prefix,
        "VPOP_DATABASE_URL": f"sqlite:///{work / 'vpop.sqlite'}",
        "VPOP_QUEUE_URL": f"sqlite:///{work / 'queue.sqlite'}",
        "VPOP_STATE_DIR": str(work / "state"),
    }
    for variable in ("VPOP_SERVER_URL", "VPOP_INVENTORY_HOSTS"):
        env.pop(variable, None)  # `vpop select` applies orders in-process, on the lab's hosts
    return env, lab_dir
