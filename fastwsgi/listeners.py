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
    unix_path: str | None = None  # ours to unlink at exit
    inherited: bool = False       # passed down to us (systemd, --fd)
    tls: bool = False             # speaks TLS (the https:// of url)

    def secure(self) -> None:
        """Mark it TLS: its URL says https."""
        self.tls = True
        self.url = self.url.replace("http://", "https://", 1)


def strip_scheme(address: str) -> str:
    """A --bind address without its https:// or http:// prefix."""
    for scheme in ("https://", "http://"):
        if address.startswith(scheme):
            return address[len(scheme):]
    return address


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


def open_listener(address: str, backlog: int, reuse_port: bool = False,
                  umask: int | None = None, listen: bool = True) -> Listener:
    """Bind and listen; OSError (with the address in it) when that fails.

    reuse_port: SO_REUSEPORT, so that each worker can bind a socket of its
    own to the same address.  listen=False binds only: the master holds the
    address (and learns the port) without joining the kernel's share-out of
    connections, which would hand some to a socket nobody accepts on."""
    address = strip_scheme(address)
    try:
        if address.startswith("unix:"):
            path = address[5:]
            _unlink_stale_socket(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(umask) if umask is not None else None
            try:
                sock.bind(path)
            finally:
                if old is not None:
                    os.umask(old)
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
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        if listen:
            sock.listen(backlog)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {address}: {exc.strerror or exc}") from None
    port = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return Listener(sock, f"http://{shown}:{port}", host, str(port))


def _described(sock: socket.socket, origin: str) -> Listener:
    """A Listener for a socket someone else bound."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = name if isinstance(name, str) else name.decode()
        # Not ours to unlink at exit: whoever bound it owns the path.
        return Listener(sock, f"unix:{path} ({origin})", "localhost", "0", inherited=True)
    host, port = name[0], name[1]
    shown = f"[{host}]" if sock.family == socket.AF_INET6 else host
    return Listener(sock, f"http://{shown}:{port} ({origin})", host, str(port),
                    inherited=True)


def inherit_listener(fd: int, origin: str) -> Listener:
    """A listening stream socket passed down as descriptor `fd`; OSError
    saying what is wrong with it otherwise."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise OSError(exc.errno, f"descriptor {fd} ({origin}): {exc.strerror or exc}") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise OSError(errno.EINVAL, f"descriptor {fd} ({origin}) is not a listening "
                                    "stream socket")
    os.set_inheritable(fd, False)
    return _described(sock, origin)


SD_LISTEN_FDS_START = 3


def systemd_listeners() -> list[Listener]:
    """The sockets systemd (or systemd-socket-activate) passed to this
    process: LISTEN_FDS descriptors from 3 on, when LISTEN_PID is us.  The
    variables are removed so that no child takes them for its own."""
    pid, count = os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS")
    if pid is None or count is None:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit():
        return []
    return [inherit_listener(SD_LISTEN_FDS_START + i, "systemd")
            for i in range(int(count))]
