"""The router agent's kernel side: nftables through libnftables, policy rules through rtnetlink.

Part of the router agent (``tasks/router_agent.py``): :data:`tasks.connection.AGENT_SOURCE`
is this file followed by the agent, so it too is standard-library only and compatible with
the routers' Python 3.

Starting ``nft`` or ``ip`` costs 1.3-3 ms a time on a lab router, most of a selection's
device time; the same work in the agent's own process costs 0.05-0.2 ms:

* nftables commands run through libnftables (the library the ``nft`` program is a thin
  front of) loaded with ctypes, one context per output format kept for the agent's life. The
  command text, the atomic transaction of a script and the listing are the library's, so
  they are the program's; where the library cannot be loaded (or ``VPOP_NFT_LIBRARY`` is
  set empty) the program is run instead.
* ``ip rule`` is read with one rtnetlink dump (``RTM_GETRULE``), the request ``ip -j rule
  show`` makes, where ``ip`` is left to print it.
"""

import ctypes
import ctypes.util
import json
import os
import socket
import struct
import subprocess
from typing import Any

# empty: always run the program (the agent's tests, with stub programs, set it so)
NFT_LIBRARY = os.environ.get("VPOP_NFT_LIBRARY", "libnftables.so.1")
NFT_OUTPUT_JSON = 1 << 4  # NFT_CTX_OUTPUT_JSON, <nftables/libnftables.h>
_nft_lib: Any = None  # the loaded library, False once it could not be
_nft_contexts: dict[bool, Any] = {}  # JSON output? -> nft_ctx pointer


def _library() -> Any:
    global _nft_lib
    if _nft_lib is None:
        if not NFT_LIBRARY:
            _nft_lib = False
            return _nft_lib
        try:
            lib = ctypes.CDLL(NFT_LIBRARY)
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
                getattr(lib, name).argtypes = [ctypes.c_void_p]
            for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
                getattr(lib, name).argtypes = [ctypes.c_void_p]
                getattr(lib, name).restype = ctypes.c_char_p
            lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            _nft_lib = lib
        except (OSError, AttributeError):
            _nft_lib = False
    return _nft_lib


def _context(json_out: bool) -> Any:
    """The kept libnftables context, or None (then the ``nft`` program is run)."""
    ctx = _nft_contexts.get(json_out)
    if ctx is None:
        lib = _library()
        if not lib:
            return None
        ctx = lib.nft_ctx_new(0)
        # both buffers, or the library would print on the agent's stdout: its protocol
        if not ctx or lib.nft_ctx_buffer_output(ctx) or lib.nft_ctx_buffer_error(ctx):
            return None
        lib.nft_ctx_output_set_flags(ctx, NFT_OUTPUT_JSON if json_out else 0)
        _nft_contexts[json_out] = ctx
    return ctx


def nft(words: list[str], stdin: str = "") -> tuple[int, str, str]:
    """Run one ``nft`` command line (the words after ``nft``; ``-j`` first for JSON output,
    ``-f -`` to run the script ``stdin`` as one transaction).

    Returns:
        (exit status, output, error text), as the ``nft`` program gives them.
    """
    json_out = words[:1] == ["-j"]
    args = words[1:] if json_out else words
    ctx = _context(json_out)
    if ctx is None:
        proc = subprocess.run(
            ["nft", *words],
            input=stdin.encode(),
            capture_output=True,
            timeout=30,
        )
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        return proc.returncode, out, err
    text = stdin if args == ["-f", "-"] else " ".join(args)
    lib = _library()
    status = lib.nft_run_cmd_from_buffer(ctx, text.encode())
    out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
    err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
    return (0 if status == 0 else 1), out, err


# ---- counters: interfaces and an nftables table's named counters --------------------------


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
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=30,
        )
        if link.returncode != 0:
            return {"ok": False, "error": link.stdout.decode(errors="replace")}
        interfaces = _interfaces(link.stdout)
    status, listing, _err = nft(["-j", "list", "table", *req["table"]])
    handle, named, counted = None, {}, []
    if status == 0:
        for item in json.loads(listing)["nftables"]:
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


# ---- policy rules: one rtnetlink dump --------------------------------------------------

RTM_NEWRULE, RTM_GETRULE = 32, 34
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
FRA_SRC, FRA_IIFNAME, FRA_PRIORITY, FRA_FWMARK, FRA_TABLE = 2, 3, 6, 10, 15
NLMSG_HEADER = struct.Struct("=LHHLL")
RULE_HEADER = struct.Struct("=BBBBBBBBI")  # struct fib_rule_hdr
ATTR_HEADER = struct.Struct("=HH")


def _rule(body: bytes) -> dict[str, Any]:
    family, _dst_len, src_len, _tos, table, _r1, _r2, _action, _flags = RULE_HEADER.unpack_from(
        body
    )
    rule: dict[str, Any] = {"priority": 0, "src": None, "srclen": src_len, "iif": None}
    rule["table"], rule["fwmark"] = table, None
    pos = RULE_HEADER.size
    while pos + ATTR_HEADER.size <= len(body):
        length, kind = ATTR_HEADER.unpack_from(body, pos)
        if length < ATTR_HEADER.size:
            break
        value = body[pos + ATTR_HEADER.size : pos + length]
        if kind == FRA_SRC:
            rule["src"] = socket.inet_ntop(family, value)
        elif kind == FRA_IIFNAME:
            rule["iif"] = value.rstrip(b"\0").decode(errors="replace")
        elif kind in (FRA_PRIORITY, FRA_FWMARK, FRA_TABLE):
            key = {FRA_PRIORITY: "priority", FRA_FWMARK: "fwmark", FRA_TABLE: "table"}[kind]
            rule[key] = struct.unpack_from("=I", value)[0]
        pos += (length + 3) & ~3
    return rule


def _dump_rules() -> list[dict[str, Any]]:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
    try:
        sock.bind((0, 0))
        request = RULE_HEADER.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        flags = NLM_F_REQUEST | NLM_F_DUMP
        header = NLMSG_HEADER.pack(NLMSG_HEADER.size + len(request), RTM_GETRULE, flags, 1, 0)
        sock.send(header + request)
        rules: list[dict[str, Any]] = []
        for _ in range(10000):  # bounded: a dump of ten thousand parts is not a router's
            data = sock.recv(1 << 20)
            pos = 0
            while pos + NLMSG_HEADER.size <= len(data):
                length, kind, _flags, _seq, _pid = NLMSG_HEADER.unpack_from(data, pos)
                if kind == NLMSG_DONE:
                    return rules
                if kind == NLMSG_ERROR:
                    code = struct.unpack_from("=i", data, pos + NLMSG_HEADER.size)[0]
                    raise OSError(-code, "rtnetlink refused the rule dump")
                if kind == RTM_NEWRULE:
                    rules.append(_rule(data[pos + NLMSG_HEADER.size : pos + length]))
                pos += (length + 3) & ~3
        raise OSError("rtnetlink rule dump did not end")
    finally:
        sock.close()


def _ip_rules() -> list[dict[str, Any]]:
    """The same list from ``ip -j -N rule show`` (tables by number), where rtnetlink cannot
    be opened."""
    proc = subprocess.run(["ip", "-j", "-N", "rule", "show"], capture_output=True, timeout=30)
    if proc.returncode != 0:
        raise OSError(proc.stderr.decode(errors="replace").strip())
    rules = []
    for r in json.loads(proc.stdout or b"[]"):
        table, mark = r.get("table"), r.get("fwmark")
        table = int(table) if isinstance(table, str) else table
        rules.append(
            {
                "priority": r.get("priority", 0),
                "src": None if r.get("src", "all") == "all" else r["src"],
                "srclen": r.get("srclen", 32 if r.get("src", "all") != "all" else 0),
                "iif": r.get("iif"),
                "table": table,
                "fwmark": int(mark, 0) if isinstance(mark, str) else mark,
            }
        )
    return rules


def rules(req: dict[str, Any]) -> dict[str, Any]:
    """The IPv4 policy rules: ``{"ok", "rules": [{"priority", "src", "srclen", "iif",
    "table", "fwmark"}]}`` (``src``, ``iif`` and ``fwmark`` None where the rule has none;
    ``table`` the number)."""
    try:
        try:
            found = _dump_rules()
        except OSError:
            found = _ip_rules()
    except (OSError, ValueError, subprocess.SubprocessError) as err:
        return {"ok": False, "error": f"cannot read policy rules: {err}", "rules": []}
    return {"ok": True, "rules": found}
