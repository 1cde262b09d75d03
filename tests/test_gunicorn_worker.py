"""`gunicorn -k fastwsgi.gunicorn.Worker`: real gunicorn, real signals."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import TESTS, fastwsgi_env

pytest.importorskip("gunicorn", reason="the optional gunicorn extra")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def get(port: int, path: str = "/pid", prefix: bytes = b"") -> tuple[int, bytes, bytes]:
    # A worker that is still starting (PyPy, a busy machine) answers late.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        c.sendall(prefix + f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                  .encode())
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


class Gunicorn:
    def __init__(self, *args: str, prefix: bytes = b"") -> None:
        self.port = free_port()
        self.log = TESTS / f".gunicorn-{self.port}.log"
        self.out = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "fastwsgi.gunicorn.Worker",
             "-b", f"127.0.0.1:{self.port}", *args, "apps:router"],
            cwd=TESTS, env=fastwsgi_env(), stdout=self.out, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if get(self.port, "/hello", prefix)[0] in (200, 403):
                    return
            except (OSError, ValueError, IndexError):  # refused, or closed unanswered
                time.sleep(0.05)
        out = self.output()
        self.close()
        raise AssertionError("gunicorn did not serve:\n" + out)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.out.close()
        self.log.unlink(missing_ok=True)


def test_workers_serve_with_the_c_loop():
    g = Gunicorn("-w", "2")
    try:
        status, head, body = get(g.port)
        assert status == 200
        assert b"\r\nServer: fastwsgi\r\n" in head  # fastwsgi's loop answered
        assert int(body) in children(g.proc.pid)
    finally:
        g.close()


def test_sighup_and_sigterm():
    g = Gunicorn("-w", "2", "--graceful-timeout", "10")
    try:
        first = children(g.proc.pid)
        g.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (children(g.proc.pid) & first
                                               or len(children(g.proc.pid)) != 2):
            time.sleep(0.05)
        now = children(g.proc.pid)
        assert len(now) == 2 and not now & first, g.output()
        assert int(get(g.port)[2]) in now
        # An app call in flight when SIGTERM comes finishes.
        result: list[tuple[int, bytes]] = []
        t = threading.Thread(target=lambda: result.append(get(g.port, "/sleep?s=1")[::2]))
        t.start()
        time.sleep(0.3)
        g.proc.send_signal(signal.SIGTERM)
        t.join(15)
        assert result == [(200, b"slept")], g.output()
        assert g.proc.wait(15) == 0
    finally:
        g.close()


def test_max_requests_recycles_the_worker():
    g = Gunicorn("-w", "1", "--max-requests", "20")
    try:
        first = children(g.proc.pid)
        pids = set()
        for i in range(60):
            try:
                pids.add(int(get(g.port)[2]))
            except OSError as exc:
                raise AssertionError(f"request {i}: {exc}\n{g.output()}") from None
        assert len(pids) >= 2, g.output()  # 60 requests, at most 20 (and one turn) each
        assert children(g.proc.pid) != first
    finally:
        g.close()


def test_access_log_in_gunicorns_format(tmp_path):
    log = tmp_path / "access.log"
    g = Gunicorn("-w", "1", "--access-logfile", str(log))
    try:
        get(g.port, "/hello?x=1")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "x=1" not in (log.read_text()
                                                             if log.exists() else ""):
            time.sleep(0.02)
        line = [x for x in log.read_text().splitlines() if "x=1" in x][0]
        # gunicorn's default format, written by fastwsgi's C access log
        assert re.fullmatch(r'127\.0\.0\.1 - - \[[^]]+\] "GET /hello\?x=1 HTTP/1\.1" 200 13 '
                            r'"-" "-"', line), line
    finally:
        g.close()


def test_gunicorns_no_sendfile_reaches_the_worker():
    """gunicorn's own parse of --no-sendfile (sendfile False) turns file
    bodies to copies; without it the worker keeps fastwsgi's default."""
    from gunicorn.config import Config

    from fastwsgi.gunicorn import settings_from

    cfg = Config()
    assert settings_from(cfg).sendfile == "auto"
    args = cfg.parser().parse_args(["--no-sendfile", "apps:router"])
    cfg.set("sendfile", args.sendfile)
    assert settings_from(cfg).sendfile == "off"


# (Addresses, not networks: the gunicorn that installs on PyPy 3.9 reads
# no networks here.)
@pytest.mark.parametrize("allow, status", [("127.0.0.1", 200), ("10.1.2.3", 403)])
def test_proxy_allow_ips_reaches_the_worker(allow, status):
    """gunicorn answers a PROXY header from a peer outside proxy_allow_ips
    403; the worker class does the same, in its C loop."""
    header = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n"
    g = Gunicorn("--proxy-protocol", "--proxy-allow-from", allow, prefix=header)
    try:
        got, head, _ = get(g.port, "/hello", header)
        assert got == status, head
    finally:
        g.close()


def test_gunicorns_tls_settings_reach_the_c_loop(tmp_path):
    """gunicorn's certfile and keyfile: the worker class serves HTTPS from
    its C loop (gunicorn's own workers would wrap each socket in Python)."""
    import http.client
    import ssl

    import tls_certs

    certs = tls_certs.make(tmp_path)
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "fastwsgi.gunicorn.Worker",
         "-b", f"127.0.0.1:{port}", "--certfile", str(certs.cert), "--keyfile",
         str(certs.key), "apps:router"],
        cwd=TESTS, env=fastwsgi_env(), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPSConnection("localhost", port, timeout=5, context=ctx)
                conn.request("GET", "/echo")
                resp = conn.getresponse()
                break
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        env = json.loads(resp.read())
        assert resp.status == 200
        assert resp.getheader("Server") == "fastwsgi"
        assert env["wsgi.url_scheme"] == "https"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
