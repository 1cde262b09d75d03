"""Listening sockets: "HOST:PORT", "[IPV6]:PORT" and "unix:/PATH".

Python binds them (its socket module knows every address family), then hands
the descriptors to the C loop, which owns them from then on.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass


@dataclass
class Listener:
    sock: socket.socket
    url: str              # shown in the start line
    server_name: str      # SERVER_NAME in the environ
    server_port: str      # SERVER_PORT in the environ
    unix_path: str | None = None


def _unlink_stale_socket(path: str) -> None:
    """Remove a socket file a dead server left behind; refuse (OSError) to
    touch one a live server accepts on, or a path that is not a socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, "the path exists and is not a socket; not removed")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        code = probe.connect_ex(path)
    if code == 0 or code == errno.EAGAIN:  # EAGAIN: live, its backlog full
        raise OSError(errno.EADDRINUSE,
                      os.strerror(errno.EADDRINUSE) + " (a server accepts connections there)")
    if code != errno.ECONNREFUSED:
        raise OSError(code, os.strerror(code))
    os.unlink(path)  # nobody listens: a crashed server's socket


def open_listener(address: str, backlog: int) -> Listener:
    """Bind and listen; OSError (with the address in it) when that fails."""
    try:
        if address.startswith("unix:"):
            path = address[5:]
            _unlink_stale_socket(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            sock.listen(backlog)
            # PEP 3333: SERVER_NAME and SERVER_PORT are never empty; a unix
            # socket has no port, and clients name the host in Host anyway.
            return Listener(sock, f"unix:{path}", "localhost", "0", path)
        host, _, port_text = address.rpartition(":")
        host = host.strip("[]")
        infos = socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {address}: {exc.strerror or exc}") from None
    port = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return Listener(sock, f"http://{shown}:{port}", host, str(port))
