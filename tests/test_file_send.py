"""How a wsgi.file_wrapper file goes out: by sendfile(2), or copied through
the loop's one buffer (--sendfile auto|on|off).

The copy path shares one buffer between every connection of a loop, and a
partial send leaves the rest to be read again later: the tests below
interleave many connections, slow readers among them, and compare each
byte each client got with the slice of the file it asked for.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import ServerProcess, fastwsgi_env, read_response, server_command

FILE_SIZE = 3 * 1024 * 1024 + 4321
CLIENTS = 40


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "data.bin"
    content = os.urandom(FILE_SIZE)
    path.write_bytes(content)
    return path, content


def _server(data_file, mode: str, unix: Path | None = None,
            tracer: list[str] | None = None) -> ServerProcess:
    # A client may still be reading the tail of its first answer from the
    # socket buffers when the server's idle timer (5 s) starts: on a busy
    # machine (ASan, both CPUs loaded) it then ran out before the second
    # request, and the connection closed under it.  This tests the bytes.
    args = ["--sendfile", mode, "--keepalive-timeout", "60"]
    if unix is not None:
        args += ["--bind", f"unix:{unix}"]
    return ServerProcess("apps:router", *args, tracer=tracer,
                         env={"FASTWSGI_TEST_FILE": str(data_file[0])})


def _connect(srv: ServerProcess, unix: Path | None, slow: bool) -> socket.socket:
    family = socket.AF_UNIX if unix is not None else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    if slow:
        # A small receive buffer: the server's sends stay partial.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(20)
    s.connect(str(unix) if unix is not None else (srv.host, srv.port))
    return s


def _slow_read(s: socket.socket, n: int) -> bytes:
    """A reader that takes a little at a time, with pauses."""
    got = bytearray()
    while len(got) < n:
        data = s.recv(min(16384, n - len(got)))
        if not data:
            raise ConnectionError("closed inside the body")
        got += data
        if len(got) % (256 * 1024) < 16384:
            time.sleep(0.002)
    return bytes(got)


def _client(srv, unix, i: int, content: bytes, failures: list[str]) -> None:
    slow = i % 4 == 0
    try:
        with _connect(srv, unix, slow) as s:
            for k in range(2):
                offset = (i * 7919 + k * 104729) % (FILE_SIZE // 2)
                length = FILE_SIZE - offset - (i * 131 + k) % 5000
                s.sendall(f"GET /file?offset={offset}&cl={length} HTTP/1.1\r\n"
                          f"Host: x\r\n\r\n".encode())
                if slow:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        head += s.recv(1)
                    assert head.startswith(b"HTTP/1.1 200 "), head
                    body = _slow_read(s, length)
                else:
                    status, headers, body, rest = read_response(s, timeout=20)
                    assert status == 200 and rest == b"", (status, rest[:50])
                if body != content[offset:offset + length]:
                    failures.append(f"client {i} request {k}: {len(body)} bytes, "
                                    f"not the file's [{offset}:{offset + length}]")
    except Exception as exc:  # noqa: BLE001 - every client's failure is reported
        failures.append(f"client {i}: {exc!r}")


@pytest.mark.parametrize("mode", ["on", "off", "auto"])
@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_each_client_gets_its_own_slice_of_the_file(data_file, tmp_path, mode, transport):
    unix = tmp_path / "s.sock" if transport == "unix" else None
    srv = _server(data_file, mode, unix)
    try:
        failures: list[str] = []
        threads = [threading.Thread(target=_client,
                                    args=(srv, unix, i, data_file[1], failures))
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not failures, "\n".join(failures[:10])
        assert srv.alive(), srv.output()
    finally:
        srv.stop()
        srv.cleanup()


def _traced_calls(data_file, mode: str, unix: Path | None, trace: Path) -> str:
    srv = _server(data_file, mode, unix,
                  tracer=["strace", "-f", "-y", "-e", "trace=sendfile,pread64,setsockopt",
                          "-o", str(trace)])
    try:
        with _connect(srv, unix, slow=False) as s:
            s.sendall(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body, rest = read_response(s, timeout=20)
        assert status == 200 and body == data_file[1]
        # The stop goes to the server, not to strace, which would only
        # detach from it.
        pid = srv.proc.pid
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            os.kill(int(f.read().split()[0]), signal.SIGTERM)
        srv.proc.wait(15)
    finally:
        srv.stop()
        srv.cleanup()
    return trace.read_text()


@pytest.mark.parametrize("mode,transport,expected,lowat", [
    ("on", "tcp", "sendfile", False),
    ("off", "tcp", "pread64", True),
    ("auto", "tcp", "pread64", True),     # 127.0.0.1: a peer on this host
    ("auto", "unix", "pread64", False),   # (a unix socket has no such option)
    ("on", "unix", "sendfile", False),
])
def test_the_file_goes_out_by_the_chosen_call(data_file, tmp_path, mode, transport,
                                              expected, lowat):
    unix = tmp_path / "s.sock" if transport == "unix" else None
    calls = _traced_calls(data_file, mode, unix, tmp_path / "trace")
    name = re.escape(str(data_file[0]))
    used = {call for call in ("sendfile", "pread64")
            if re.search(rf"\b{call}\(.*<{name}>", calls)}
    assert used == {expected}, calls[-2000:]
    # A copy to a local TCP peer keeps at most one buffer unsent in the
    # socket, so that the kernel transmits it within the server's send().
    assert ("TCP_NOTSENT_LOWAT, [262144]" in calls) == lowat, calls[-2000:]


def test_a_file_that_shrinks_while_it_is_sent_ends_the_connection(tmp_path):
    """The response promised more than the file now has: the client gets
    what there was, then the connection closes; the log says why."""
    path = tmp_path / "shrinks.bin"
    size = 32 * 1024 * 1024
    with open(path, "wb") as f:
        f.truncate(size)  # zeros, quickly
    for mode in ("on", "off"):
        with open(path, "wb") as f:
            f.truncate(size)
        srv = ServerProcess("apps:router", "--sendfile", mode,
                            env={"FASTWSGI_TEST_FILE": str(path)})
        try:
            with _connect(srv, None, slow=True) as s:
                s.sendall(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n")
                time.sleep(0.3)  # the server's sends stall on the small window
                os.truncate(path, 8 * 1024 * 1024)
                got = b""
                while True:
                    data = s.recv(1 << 20)
                    if not data:
                        break
                    got += data
            head, _, body = got.partition(b"\r\n\r\n")
            assert f"Content-Length: {size}".encode() in head
            assert len(body) == 8 * 1024 * 1024, (mode, len(body))
            log = srv.output()
            deadline = time.monotonic() + 5
            while "before the response length" not in log and time.monotonic() < deadline:
                time.sleep(0.05)
                log = srv.output()
            assert "file ended" in log and "before the response length" in log, log
            assert srv.alive()
        finally:
            srv.stop()
            srv.cleanup()


def test_bad_mode_is_one_line_and_status_2():
    r = subprocess.run([*server_command(), "--sendfile", "sometimes", "apps:router"],
                       capture_output=True, text=True, timeout=30, env=fastwsgi_env(),
                       cwd=Path(__file__).parent)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--sendfile" in lines[0] and "auto, on, off" in lines[0]


@pytest.mark.parametrize("spelling,expected", [
    (["--no-sendfile"], "'off'"),
    (["--sendfile", "ON"], "'on'"),
    ([], "'auto'"),
])
def test_gunicorns_no_sendfile_means_off(spelling, expected):
    r = subprocess.run([*server_command(), *spelling, "--print-config", "apps:router"],
                       capture_output=True, text=True, timeout=30, env=fastwsgi_env(),
                       cwd=Path(__file__).parent)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("sendfile "))
    assert expected in line, line


def test_a_gunicorn_config_file_says_it_in_a_boolean(tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("sendfile = False\n")
    r = subprocess.run([*server_command(), "-c", str(conf), "--print-config", "apps:router"],
                       capture_output=True, text=True, timeout=30, env=fastwsgi_env(),
                       cwd=Path(__file__).parent)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("sendfile "))
    assert "'off'" in line, line
