"""The router-side half of ``vpop_shell``: a tiny agent started over the SSH channel.

vtysh costs about 20 ms per invocation on FRR 8.4 (most of it loading YANG modules at
start), which is most of a selection's budget. The agent instead keeps each FRR daemon's vty
socket open and speaks the same protocol vtysh speaks to it (a command terminated by NUL; the
answer's end is three NULs and a status byte), so a command costs well under a millisecond.
It also runs programs (``nft``, ``tc``, ``ip``) for the parts FRR does not own.

It is closed: it does only the operations of :data:`OPS`, each argument checked, and runs
only the command lines of :data:`RUN_TABLE` (an ``nft -f`` script only on vpop's tables);
any other request is refused with an answer naming its operation, and the agent serves on.
Nothing here makes a push fail on purpose: the lab's drills run a variant of this agent
(``vpop/lab/drill_agent.py``) that only a lab inventory selects.

This file is sent as the source of ``python3 -c`` and must stay standard-library only and
compatible with the routers' Python 3. Requests and answers are one JSON object per line.
"""

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

# this file is sent to routers with tasks/router_kernel.py before it, in place of this line:
from tasks.router_kernel import counters, nft, rules  # inlined when sent

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
    try:
        for i, command in enumerate(req["commands"]):
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
    """Run one program (argv list, optional stdin); never through a shell. ``nft`` runs in
    this process through libnftables (:func:`router_kernel.nft`)."""
    if req["argv"][0] == "nft":
        status, out, err = nft(req["argv"][1:], req.get("stdin", ""))
        return {"ok": status == 0, "status": status, "output": out + err}
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


# ---- the operation table: what this agent does, and nothing else -----------------------
#
# A request names an operation of OPS and carries only its arguments, each checked before
# anything runs; ``run`` runs only RUN_TABLE's command lines. Anything else is refused.

DAEMONS = ("pbrd",)  # the FRR daemons vpop talks to
VPOP_TABLE = re.compile(r"vpop[a-z0-9_]{0,60}")  # vpop's nftables tables (inet vpop, ...)
UINT = re.compile(r"[0-9]{1,10}")
IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}")  # IFNAMSIZ - 1, never an option
RATE = re.compile(r"[0-9]+(\.[0-9]+)?(e\+?[0-9]+)?[kmg]?bit")
DURATION = re.compile(r"[0-9]{1,6}(us|ms|s)")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # a NUL would end a vty command early

# the command lines vpop runs (tasks/deploy.py, collect.py, probe.py, shape.py): literal
# words, or patterns a word must match in full
RUN_TABLE: tuple[tuple[Any, ...], ...] = (
    ("nft", "-f", "-"),  # the script on stdin, checked by _check_nft_script
    ("nft", "list", "table", "inet", VPOP_TABLE),
    ("ip", "rule", "add", "fwmark", UINT, "lookup", UINT, "priority", UINT),
    ("tc", "-j", "qdisc", "show", "dev", IFNAME),
    ("tc", "qdisc", "del", "dev", IFNAME, "root"),
    ("tc", "qdisc", "replace", "dev", IFNAME, "root", "tbf", "rate", RATE, "burst", UINT)
    + ("latency", DURATION),
)
NFT_VERBS = ("add", "create", "delete", "destroy", "flush", "insert", "replace")
NFT_OBJECTS = ("table", "chain", "rule", "counter", "set", "map", "element")


class Refused(Exception):
    """The request is not one this agent serves; the message says why (``at``: the command)."""

    def __init__(self, message: str, at: int = -1) -> None:
        super().__init__(message)
        self.at = at


Check = tuple[str, Callable[[Any], bool]]  # what a value must be (said in a refusal), its test


def _number(low: float, high: float, integer: bool = False) -> Check:
    kinds = (int,) if integer else (int, float)
    return (
        "{} {}..{}".format("an integer" if integer else "a number", low, high),
        lambda v: isinstance(v, kinds) and not isinstance(v, bool) and low <= v <= high,
    )


def _strings(value: Any, most: int, longest: int) -> bool:
    return (
        isinstance(value, list)
        and 0 < len(value) <= most
        and all(isinstance(v, str) and len(v) <= longest for v in value)
    )


def _is_ipv4(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(ipaddress.IPv4Address(value)) == value
    except ValueError:
        return False


def _is_table(value: Any) -> bool:
    ok = _strings(value, 2, 64) and len(value) == 2 and value[0] == "inet"
    return ok and VPOP_TABLE.fullmatch(value[1]) is not None


BOOL: Check = ("true or false", lambda v: isinstance(v, bool))
PORT, MARK = _number(1, 65535, integer=True), _number(1, 0xFFFFFFFF, integer=True)
IPV4: Check = ("an IPv4 address", _is_ipv4)
COMMANDS: Check = (
    "1..1000 commands, each one line of 1..512 characters",
    lambda v: _strings(v, 1000, 512) and all(c and not CONTROL.search(c) for c in v),
)


def _is_batch(value: Any) -> bool:
    return (
        isinstance(value, list)
        and 0 < len(value) <= 16
        and all(isinstance(r, dict) and r.get("op") != "batch" for r in value)
    )


def batch(req: dict[str, Any]) -> dict[str, Any]:
    """Several requests in one round trip, in order, each checked and answered on its own
    (one refused or failed does not stop the next); ``ok`` when every one is."""
    answers = [serve(r) for r in req["requests"]]
    return {"ok": all(a.get("ok") for a in answers), "answers": answers}


class Op(NamedTuple):
    """One operation: its handler, its required and its optional arguments' checks."""

    handler: Callable[[dict[str, Any]], dict[str, Any]]
    required: dict[str, Check]
    optional: dict[str, Check]


OPS: dict[str, Op] = {
    "vty": Op(
        vty,
        {"daemon": ("one of " + ", ".join(DAEMONS), DAEMONS.__contains__), "commands": COMMANDS},
        {"config": BOOL},
    ),
    "run": Op(
        run,
        {"argv": ("a list of words", lambda v: _strings(v, 64, 4096))},
        {"stdin": ("text of at most 4 MiB", lambda v: isinstance(v, str) and len(v) <= 4 << 20)}
        | {"timeout": _number(0.1, 300)},
    ),
    "probe": Op(
        probe,
        {"mark": MARK, "target": IPV4},
        {
            "count": _number(1, 10000, integer=True),
            "interval": _number(0, 10),
            "timeout": _number(0, 60),
            "port": PORT,
        },
    ),
    "throughput": Op(
        throughput, {"mark": MARK, "target": IPV4}, {"seconds": _number(0.01, 60), "port": PORT}
    ),
    "counters": Op(counters, {"table": ('["inet", "vpop..."]', _is_table)}, {"links": BOOL}),
    "rules": Op(rules, {}, {}),
    "batch": Op(batch, {"requests": ("1..16 requests, none of them a batch", _is_batch)}, {}),
}


def _nft_statements(script: str) -> list[list[str]]:
    """The words of an nft script's top-level statements (what braces, quotes and comments
    hold is dropped, so a brace inside them cannot hide a statement)."""
    statements: list[list[str]] = [[]]
    depth, word, pos = 0, "", 0
    while pos < len(script):
        char = script[pos]
        if char in '"#':
            end = script.find('"' if char == '"' else "\n", pos + 1)
            if end < 0 and char == '"':
                raise Refused("nft script: unbalanced quotes")
            end = len(script) if end < 0 else end + (char == '"')
            word += script[pos:end] if depth == 0 and char == '"' else ""
            pos = end
            continue
        if depth == 0 and not (char.isspace() or char in "{};"):
            word += char
        else:
            if word:
                statements[-1].append(word)
                word = ""
            depth += {"{": 1, "}": -1}.get(char, 0)
            if depth < 0:
                raise Refused("nft script: unbalanced braces")
            if depth == 0 and char in "\n;":
                statements.append([])
        pos += 1
    if depth:
        raise Refused("nft script: unbalanced braces")
    return [stmt for stmt in statements + [[word] if word else []] if stmt]


def _check_nft_script(script: str) -> None:
    """Refuse an ``nft -f`` script with a top-level statement outside vpop's tables:
    ``include``, ``define``, ``flush ruleset``, another family or table."""
    for stmt in _nft_statements(script):
        if stmt[0] == "table":
            where = stmt[1:3]
        elif stmt[0] in NFT_VERBS and len(stmt) > 1 and stmt[1] in NFT_OBJECTS:
            where = stmt[2:4]
        else:
            raise Refused(f"nft script: {stmt[0]!r} is not a statement on a vpop table")
        if not _is_table(where):
            raise Refused("nft script: {!r} is not on a vpop table".format(" ".join(stmt)))


def _check_run(req: dict[str, Any]) -> None:
    argv = req["argv"]
    for line in RUN_TABLE:
        if len(line) == len(argv) and all(
            word == arg if isinstance(word, str) else word.fullmatch(arg) is not None
            for word, arg in zip(line, argv, strict=True)
        ):
            break
    else:
        raise Refused(f"{argv!r} is not a command this agent runs")
    if argv[:2] == ["nft", "-f"]:
        _check_nft_script(req.get("stdin", ""))
    elif req.get("stdin"):
        raise Refused(f"{argv[0]} reads no stdin")


def _check_vty(req: dict[str, Any]) -> None:
    for i, command in enumerate(req["commands"]):
        word = (command.split() or [""])[0]
        if req.get("config") and word == "do":
            raise Refused(f"command {i} ({command!r}) leaves configuration mode", i)
        if not req.get("config") and word != "show":
            raise Refused(f"command {i} ({command!r}) is not a show command", i)


def check(req: Any) -> Op:
    """The operation ``req`` asks for, once every argument has passed its check.

    Raises:
        Refused: an unknown operation, a missing, unknown or bad argument, or a command
            line this agent does not run.
    """
    if not isinstance(req, dict) or not isinstance(req.get("op"), str):
        raise Refused("a request is an object with an op")
    op = OPS.get(req["op"])
    if op is None:
        raise Refused("not an operation of this agent (it does: {})".format(", ".join(OPS)))
    missing = sorted(set(op.required) - set(req))
    if missing:
        raise Refused(f"missing argument {missing[0]!r}")
    for name, value in req.items():
        if name == "op":
            continue
        rule = op.required.get(name) or op.optional.get(name)
        if rule is None:
            raise Refused(f"unknown argument {name!r}")
        if not rule[1](value):
            raise Refused(f"argument {name!r} must be {rule[0]}")
    if req["op"] == "run":
        _check_run(req)
    elif req["op"] == "vty":
        _check_vty(req)
    return op


def serve(req: Any) -> dict[str, Any]:
    """The answer to one request: the operation's, or a refusal naming the operation."""
    try:
        op = check(req)
    except Refused as err:
        name = req.get("op") if isinstance(req, dict) else None
        error = f"refused: {name if isinstance(name, str) else repr(name)}: {err}"
        # with the keys callers read on failure: output (run), failed_at and outputs (vty)
        answer = {"ok": False, "refused": True, "agent": True, "op": name, "error": error}
        return answer | {"output": error, "failed_at": err.at, "outputs": []}
    return op.handler(req)


def main() -> None:
    """Serve requests from stdin until it closes."""
    out = sys.stdout
    out.write(json.dumps({"ready": True, "vty_dir": VTY_DIR}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            answer = serve(json.loads(line))
        except Exception as err:  # report, never die: the session stays usable
            answer = {"ok": False, "error": f"{type(err).__name__}: {err}", "agent": True}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
