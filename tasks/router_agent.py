"""The router-side half of ``vpop_shell``: a tiny agent started over the SSH channel.

vtysh costs about 20 ms per invocation on FRR 8.4 (most of it loading YANG modules at
start), which is most of a selection's budget. The agent instead keeps each FRR daemon's vty
socket open and speaks the same protocol vtysh speaks to it (a command terminated by NUL; the
answer's end is three NULs and a status byte), so a command costs well under a millisecond.
It also runs programs (``nft``, ``tc``, ``ip``) for the parts FRR does not own.

This file is sent as the source of ``python3 -c`` and must stay standard-library only and
compatible with the routers' Python 3. Requests and answers are one JSON object per line.
"""

import json
import os
import socket
import subprocess
import sys
from typing import Any

VTY_DIR = os.environ.get("FRR_VTY_DIR", "/var/run/frr")
_sockets: dict[str, socket.socket] = {}


def _vty(daemon: str) -> socket.socket:
    sock = _sockets.get(daemon)
    if sock is None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(os.path.join(VTY_DIR, daemon + ".vty"))
        _sockets[daemon] = sock
        _send(sock, "enable")
    return sock


def _send(sock: socket.socket, line: str) -> tuple[int, str]:
    sock.sendall(line.encode() + b"\0")
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("daemon closed its vty")
        buf += chunk
        if len(buf) >= 4 and buf[-4:-1] == b"\0\0\0":
            return buf[-1], buf[:-4].decode(errors="replace")


def _cut_after() -> int | None:
    """A one-shot drill: ``cut-after:N`` in the file VPOP_FAULT_FILE names (lab only)."""
    path = os.environ.get("VPOP_FAULT_FILE")
    if not path:
        return None
    try:
        with open(path) as fh:
            kind, _, count = fh.read().strip().partition(":")
        if kind != "cut-after" or not count.isdigit():
            return None
        os.unlink(path)
    except OSError:
        return None
    return int(count)


def vty(req: dict[str, Any]) -> dict[str, Any]:
    """Run commands on one daemon; in config mode stop at the first rejected command."""
    sock = _vty(req["daemon"])
    outputs: list[dict[str, Any]] = []
    failed_at = None
    config = req.get("config", False)
    if config:
        status, out = _send(sock, "configure terminal")
        if status != 0:
            return {"ok": False, "failed_at": -1, "error": out.strip(), "outputs": []}
    cut = _cut_after() if config else None
    try:
        for i, command in enumerate(req["commands"]):
            if cut is not None and i == cut:
                os.kill(os.getppid(), 9)  # the SSH session dies mid-push, as in a real cut
                os._exit(1)
            status, out = _send(sock, command)
            outputs.append({"command": command, "status": status, "output": out})
            if status != 0:
                failed_at = i
                break
    finally:
        if config:
            _send(sock, "end")
    error = None
    if failed_at is not None:
        failed = outputs[failed_at]
        error = failed["output"].strip() or "status {}".format(failed["status"])
    return {"ok": failed_at is None, "failed_at": failed_at, "error": error, "outputs": outputs}


def run(req: dict[str, Any]) -> dict[str, Any]:
    """Run one program (argv list, optional stdin); never through a shell."""
    proc = subprocess.run(
        req["argv"],
        input=req.get("stdin", "").encode(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=req.get("timeout", 30),
    )
    return {
        "ok": proc.returncode == 0,
        "status": proc.returncode,
        "output": proc.stdout.decode(errors="replace"),
    }


def main() -> None:
    """Serve requests from stdin until it closes."""
    out = sys.stdout
    out.write(json.dumps({"ready": True, "vty_dir": VTY_DIR}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            answer = vty(req) if req["op"] == "vty" else run(req)
        except Exception as err:  # report, never die: the session stays usable
            answer = {"ok": False, "error": f"{type(err).__name__}: {err}", "agent": True}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
