"""The services an ISP host runs in the lab, in its own namespace.

* HTTP on port 80: answers every request with the ISP's id (``isp-a``), so a subscriber's
  ``curl http://203.0.113.100/`` names the ISP its traffic really leaves through.
* UDP echo on port 7: the probe target for latency, jitter and loss. The reply is delayed by
  the number of milliseconds in the file ``--delay-file`` (if present): this VM has no netem,
  so a known delay is added here instead.
* TCP discard on port 9: the sink for throughput probes.

Run as ``python -m vpop.lab.host --id isp-a --address 203.0.113.100``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path
from typing import cast


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


async def _http(isp: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        body = (isp + "\n").encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\nX-ISP: {isp}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
    writer.close()


async def _discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        while await reader.read(1 << 16):
            pass
    writer.close()


async def serve(isp: str, address: str, delay_file: Path | None, ready: Path | None) -> None:
    """Serve HTTP, echo and discard until cancelled; touch ``ready`` once listening."""
    loop = asyncio.get_running_loop()
    http = await asyncio.start_server(lambda r, w: _http(isp, r, w), address, 80)
    sink = await asyncio.start_server(_discard, address, 9)
    await loop.create_datagram_endpoint(lambda: _Echo(delay_file), local_addr=(address, 7))
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
    args = parser.parse_args()
    asyncio.run(serve(args.id, args.address, args.delay_file, args.ready_file))


if __name__ == "__main__":
    main()
