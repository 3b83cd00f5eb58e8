"""The router-side half of ``vpop_shell``: a tiny agent started over the SSH channel.

vtysh costs about 20 ms per invocation on FRR 8.4 (most of it loading YANG modules at
start), which is most of a selection's budget. The agent instead keeps each FRR daemon's vty
socket open and speaks the same protocol vtysh speaks to it (a command terminated by NUL; the
answer's end is three NULs and a status byte), so a command costs well under a millisecond.
It also runs programs (``nft``, ``tc``, ``ip``) for the parts FRR does not own.

This file is sent as the source of ``python3 -c`` and must stay standard-library only and
compatible with the routers' Python 3. Requests and answers are one JSON object per line.
"""

import contextlib
import fcntl
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
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


SO_MARK = 36  # from <asm-generic/socket.h>; socket.SO_MARK needs Python 3.12
SIOCOUTQ = 0x5411  # bytes still in a TCP socket's send queue (not yet acknowledged)


def probe(req: dict[str, Any]) -> dict[str, Any]:
    """Echo probes (UDP) through the routing table chosen by ``mark``: latency, jitter, loss.

    ``count`` packets are sent ``interval`` seconds apart, each carrying its sequence number
    and send time; replies are matched by sequence number. Jitter is the mean absolute
    difference between consecutive round trips (RFC 3550's idea, without its smoothing).
    """
    count, interval = int(req.get("count", 20)), float(req.get("interval", 0.01))
    timeout = float(req.get("timeout", 1.0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, int(req["mark"]))
    sock.setblocking(False)
    target = (req["target"], int(req.get("port", 7)))
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}
    next_send = time.monotonic()
    seq = 0
    deadline = None
    try:
        while True:
            now = time.monotonic()
            if seq < count and now >= next_send:
                sent[seq] = now
                with contextlib.suppress(OSError):  # a failed send is counted as lost
                    sock.sendto(struct.pack("!Id", seq, now), target)
                seq += 1
                next_send += interval
                if seq == count:
                    deadline = now + timeout
            if deadline is not None and (now >= deadline or len(rtts) == count):
                break
            wait = (next_send - now) if seq < count else (deadline or now) - now
            readable, _, _ = select.select([sock], [], [], max(0.0, wait))
            if readable:
                try:
                    data = sock.recv(64)
                except OSError:
                    continue
                if len(data) >= 12:
                    number, _ = struct.unpack("!Id", data[:12])
                    if number in sent and number not in rtts:
                        rtts[number] = time.monotonic() - sent[number]
    finally:
        sock.close()
    ordered = [rtts[i] * 1000 for i in sorted(rtts)]
    latency = sum(ordered) / len(ordered) if ordered else None
    diffs = [abs(b - a) for a, b in zip(ordered, ordered[1:], strict=False)]
    return {
        "ok": True,
        "sent": count,
        "received": len(rtts),
        "loss_pct": 100.0 * (count - len(rtts)) / count if count else None,
        "latency_ms": latency,
        "jitter_ms": sum(diffs) / len(diffs) if diffs else (0.0 if ordered else None),
    }


def throughput(req: dict[str, Any]) -> dict[str, Any]:
    """Send to a TCP sink through the table chosen by ``mark`` for ``seconds``; the rate is
    what the receiver acknowledged (bytes written minus what is still queued)."""
    seconds = float(req.get("seconds", 0.5))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, int(req["mark"]))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sock.settimeout(2.0)
    try:
        sock.connect((req["target"], int(req.get("port", 9))))
        chunk = b"\0" * 16384
        written = 0
        started = time.monotonic()
        end = started + seconds
        while time.monotonic() < end:
            _, writable, _ = select.select([], [sock], [], max(0.0, end - time.monotonic()))
            if writable:
                written += sock.send(chunk)
        elapsed = time.monotonic() - started
        queued = struct.unpack("i", fcntl.ioctl(sock, SIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError as err:
        return {"ok": False, "error": f"throughput probe: {err}"}
    finally:
        sock.close()
    acked = max(0, written - queued)
    return {"ok": True, "bytes": acked, "seconds": elapsed, "mbps": acked * 8 / elapsed / 1e6}


def _interfaces(output: bytes) -> dict[str, list[Any]]:
    """``ip -s -j link`` as ``{ifname: [ifindex, rx/tx bytes, rx/tx packets, errors, drops]}``."""
    interfaces = {}
    for entry in json.loads(output or b"[]"):
        stats = entry.get("stats64", {})
        rx, tx = stats.get("rx", {}), stats.get("tx", {})
        interfaces[entry["ifname"]] = [
            entry.get("ifindex"),
            rx.get("bytes", 0),
            tx.get("bytes", 0),
            rx.get("packets", 0),
            tx.get("packets", 0),
            rx.get("errors", 0) + tx.get("errors", 0),
            rx.get("dropped", 0) + tx.get("dropped", 0),
        ]
    return interfaces


def counters(req: dict[str, Any]) -> dict[str, Any]:
    """Interface counters (``ip -s -j link``) and an nftables table's named counters and
    counted interfaces (``nft -j list table``), both parsed here so that only the figures
    cross the SSH session, not hundreds of kilobytes of JSON. ``"links": false`` skips the
    interfaces (the line counters alone, read right after a push)."""
    interfaces: dict[str, list[Any]] = {}
    if req.get("links", True):
        link = subprocess.run(
            ["ip", "-s", "-j", "link", "show"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=30,
        )
        if link.returncode != 0:
            return {"ok": False, "error": link.stdout.decode(errors="replace")}
        interfaces = _interfaces(link.stdout)
    table = subprocess.run(
        ["nft", "-j", "list", "table", *req["table"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        timeout=30,
    )
    handle, named, counted = None, {}, []
    if table.returncode == 0:
        for item in json.loads(table.stdout)["nftables"]:
            if "table" in item:
                handle = item["table"]["handle"]
            elif "counter" in item:
                c = item["counter"]
                named[c["name"]] = [c["packets"], c["bytes"], c["handle"]]
            elif "rule" in item:
                for expr in item["rule"].get("expr", []):
                    match = expr.get("match", {})
                    if match.get("left", {}).get("meta", {}).get("key") in ("iifname", "oifname"):
                        counted.append(str(match.get("right")))
    return {
        "ok": True,
        "interfaces": interfaces,
        "table_handle": handle,
        "counters": named,
        "counted": sorted(set(counted)),
    }


OPS = {"probe": probe, "throughput": throughput, "counters": counters}


def main() -> None:
    """Serve requests from stdin until it closes."""
    out = sys.stdout
    out.write(json.dumps({"ready": True, "vty_dir": VTY_DIR}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            op = req["op"]
            answer = vty(req) if op == "vty" else OPS[op](req) if op in OPS else run(req)
        except Exception as err:  # report, never die: the session stays usable
            answer = {"ok": False, "error": f"{type(err).__name__}: {err}", "agent": True}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
