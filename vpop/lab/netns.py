"""Sockets inside another network namespace (the lab's portal address on the routers).

A network namespace is a property of a thread, and a socket keeps the namespace it was
created in. So a short-lived thread enters the namespace (``setns``), creates and binds the
listening socket, and exits; the socket then serves from any thread of this process. This is
how ``vpop serve`` answers on the routing centre's own portal address in the lab, the way a
provider's portal is reached through its access routers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import threading

from vpop.core.errors import BadInput

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def listen_in_netns(netns: str, address: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening TCP socket bound to ``address:port`` inside the named namespace.

    Raises:
        BadInput: the namespace does not exist.
        OSError: the address cannot be bound there.
    """
    path = f"/run/netns/{netns}"
    if not os.path.exists(path):
        raise BadInput(f"network namespace {netns!r} does not exist (is the lab up?)")
    box: dict[str, socket.socket | BaseException] = {}

    def create() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(backlog)
            box["socket"] = sock
        except BaseException as err:  # handed to the caller's thread
            box["error"] = err

    thread = threading.Thread(target=create, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    sock = box["socket"]
    assert isinstance(sock, socket.socket)
    return sock
