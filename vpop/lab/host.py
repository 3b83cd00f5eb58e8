"""The services an ISP host runs in the lab, on its namespace's service address.

* HTTP on port 80: answers every request with the ISP's id (``isp-a``), so a subscriber's
  ``curl http://203.0.113.100/`` names the ISP its traffic really leaves through; except
  ``/shop`` and ``/shop/...``, the ISP's web shop (:mod:`vpop.lab.shop`).
* UDP echo on port 7: the probe target for latency, jitter and loss. The reply is delayed by
  the number of milliseconds in the file ``--delay-file`` (if present): this VM has no netem,
  so a known delay is added here instead.
* TCP discard on port 9: the sink for throughput probes.

Run as ``python -m vpop.lab.host --id isp-a --address 203.0.113.100 --netns vpop-isp-a``.

With ``--netns`` the process stays in the namespace it was started in (the root namespace,
where vpop's API listens on 127.0.0.1) and only its listening sockets are created inside the
ISP's namespace: a short-lived thread enters it (``setns``), creates and binds them, and
exits; a socket keeps the namespace it was made in. The shop's calls to the payments API then
leave from the root namespace, over loopback, with no relay and no address outside the lab's
documentation ranges. Without ``--netns`` the sockets are made where the process runs (as
under ``ip netns exec``), and the shop then cannot reach an API on the root's loopback: it
answers 503.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

from vpop.lab.shop import MAX_BODY, Request, Response, Shop

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
HEAD_TIMEOUT = 5.0  # seconds a client has to send its request head (and body)


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, delay_file: Path | None) -> None:
        self.delay_file = delay_file
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def _delay(self) -> float:
        if self.delay_file is None:
            return 0.0
        try:
            return max(0.0, float(self.delay_file.read_text().strip() or 0)) / 1000.0
        except (OSError, ValueError):
            return 0.0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        delay = self._delay()
        transport = self.transport
        if transport is None:
            return
        if delay:
            asyncio.get_running_loop().call_later(delay, transport.sendto, data, addr)
        else:
            transport.sendto(data, addr)


def _id_answer(isp: str) -> bytes:
    body = (isp + "\n").encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\nX-ISP: {isp}\r\n\r\n".encode()
        + body
    )


def _is_shop(target: str) -> bool:
    return target == "/shop" or target.startswith(("/shop/", "/shop?"))


async def _shop_answer(
    shop: Shop, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bytes:
    """Read the request's body and let the shop answer it, in a worker thread (it may wait
    for the payments API); the buyer is the connection's peer, nothing the client says."""
    lines = head.decode("latin-1").split("\r\n")
    method, target = lines[0].split(" ")[:2]
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        length = -1
    if not 0 <= length <= MAX_BODY:
        return Response(413, b"the form is too large\n", "text/plain").encode(shop.isp)
    body = await asyncio.wait_for(reader.readexactly(length), timeout=HEAD_TIMEOUT)
    peer = writer.get_extra_info("peername")
    request = Request(method, target, str(peer[0]) if peer else "", body, headers)
    try:
        answer = await asyncio.to_thread(shop.handle, request)
    except Exception as err:  # a fault of the shop must not end the host
        answer = Response(500, f"the shop failed: {err!r}\n".encode(), "text/plain")
    return answer.encode(shop.isp, head=method == "HEAD")


async def handle_http(
    isp: str, shop: Shop, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    with contextlib.suppress(Exception):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=HEAD_TIMEOUT)
        request_line = head.split(b"\r\n", 1)[0].split(b" ")
        target = request_line[1].decode("latin-1") if len(request_line) >= 3 else ""
        if _is_shop(target):
            answer = await _shop_answer(shop, head, reader, writer)
        else:
            answer = _id_answer(isp)
        writer.write(answer)
        await writer.drain()
    writer.close()


async def _discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        while await reader.read(1 << 16):
            pass
    writer.close()


def _in_netns(netns: str, create: Callable[[], T]) -> T:
    """Run ``create`` in a short-lived thread that has entered the named namespace.

    Raises:
        OSError: the namespace does not exist or cannot be entered, or ``create`` failed.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    box: dict[str, object] = {}

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = create()
        except BaseException as err:  # handed to the caller's thread
            box["error"] = err

    thread = threading.Thread(target=run, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if "error" in box:
        raise cast(BaseException, box["error"])
    return cast(T, box["value"])


def listeners(
    address: str, netns: str | None, http_port: int = 80
) -> tuple[socket.socket, socket.socket, socket.socket]:
    """The host's HTTP, discard (TCP 9) and echo (UDP 7) sockets on ``address``, made
    inside ``netns`` when given."""

    def create() -> tuple[socket.socket, socket.socket, socket.socket]:
        http = socket.create_server((address, http_port))
        sink = socket.create_server((address, 9))
        echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        echo.bind((address, 7))
        return http, sink, echo

    return create() if netns is None else _in_netns(netns, create)


async def serve(
    isp: str,
    address: str,
    delay_file: Path | None,
    ready: Path | None,
    *,
    netns: str | None = None,
    shop_config: Path | None = None,
) -> None:
    """Serve HTTP (the id page and the shop), echo and discard until cancelled; touch
    ``ready`` once listening."""
    loop = asyncio.get_running_loop()
    http_sock, sink_sock, echo_sock = listeners(address, netns)
    shop = Shop(isp, shop_config)
    http = await asyncio.start_server(lambda r, w: handle_http(isp, shop, r, w), sock=http_sock)
    sink = await asyncio.start_server(_discard, sock=sink_sock)
    await loop.create_datagram_endpoint(lambda: _Echo(delay_file), sock=echo_sock)
    if ready is not None:
        ready.touch()
    async with http, sink:
        await asyncio.gather(http.serve_forever(), sink.serve_forever())


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--id", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--delay-file", type=Path)
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--netns", help="make the listening sockets in this namespace")
    parser.add_argument("--shop-config", type=Path, help="the shop's configuration file")
    args = parser.parse_args()
    asyncio.run(
        serve(
            args.id,
            args.address,
            args.delay_file,
            args.ready_file,
            netns=args.netns,
            shop_config=args.shop_config,
        )
    )


if __name__ == "__main__":
    main()
