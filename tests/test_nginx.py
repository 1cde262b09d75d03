"""A real nginx in front of fastwsgi, running the site in
examples/deploy/nginx-site.conf (only its paths and port changed): over a
unix socket and over TCP, the environ the app sees, keep-alive to the
upstream, a 50 MB upload and a streamed response through it."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ServerProcess

SITE = Path(__file__).resolve().parent.parent / "examples" / "deploy" / "nginx-site.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    def __init__(self, tmp: Path, upstream: str, keepalive: int | None = None) -> None:
        assert os.access(NGINX, os.X_OK), "nginx is needed (scripts/deps installs it)"
        self.port = free_port()
        site = SITE.read_text()
        assert "server unix:/run/fastwsgi/app.sock;" in site and "listen 80;" in site
        site = site.replace("server unix:/run/fastwsgi/app.sock;", f"server {upstream};")
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        if keepalive is not None:
            assert "keepalive 32;" in site
            site = site.replace("keepalive 32;", f"keepalive {keepalive};")
        (tmp / "site.conf").write_text(site)
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / d).mkdir(exist_ok=True)
        # As root, nginx's workers would switch to "nobody", who cannot
        # reach a socket in the test's private directory.
        user = "user root;" if os.geteuid() == 0 else ""
        (tmp / "nginx.conf").write_text(f"""
{user}
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/site.conf;
}}
""")
        self.proc = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.proc.stdout.read()
                time.sleep(0.05)
        raise AssertionError("nginx did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start_stack(kind: str, tmp_path: Path):
    if kind == "unix":
        path = str(tmp_path / "app.sock")
        app = ServerProcess("apps:router", "--bind", f"unix:{path}", "--forwarded-host")
        upstream = f"unix:{path}"
    else:
        app = ServerProcess("apps:router", "--forwarded-host")
        upstream = f"127.0.0.1:{app.port}"
    return app, Nginx(tmp_path, upstream)


def stop_stack(app: ServerProcess, nginx: Nginx) -> None:
    nginx.stop()
    alive = app.alive()
    out = app.output()
    app.stop()
    app.cleanup()
    assert alive, out


@pytest.fixture(params=["unix", "tcp"])
def stack(request, tmp_path):
    app, nginx = start_stack(request.param, tmp_path)
    yield request.param, app, nginx
    stop_stack(app, nginx)


def get_json(nginx: Nginx, path: str, conn: http.client.HTTPConnection | None = None) -> dict:
    c = conn or http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    c.request("GET", path, headers={"Host": "shop.example"})
    r = c.getresponse()
    body = r.read()
    assert r.status == 200, body
    return json.loads(body)


def test_the_environ_behind_nginx(stack):
    kind, app, nginx = stack
    env = get_json(nginx, "/echo?x=1")
    # The client, named by nginx and believed from a trusted peer: over a
    # unix socket the peer itself has no address.
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["HTTP_HOST"] == f"shop.example:{nginx.port}"
    assert env["SERVER_NAME"] == "shop.example"
    assert env["SERVER_PORT"] == str(nginx.port)
    assert env["wsgi.url_scheme"] == "http"
    assert env["QUERY_STRING"] == "x=1"
    assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    if kind == "unix":
        assert env["REMOTE_PORT"] == ""  # the connection came over the socket


def test_keep_alive_to_the_upstream(tmp_path):
    # Over TCP: the peer port tells nginx's connections apart.
    app, nginx = start_stack("tcp", tmp_path)
    try:
        ports = {get_json(nginx, "/echo")["REMOTE_PORT"] for _ in range(10)}
        # Ten requests one after the other: nginx reused its connection.
        assert len(ports) == 1, ports
    finally:
        stop_stack(app, nginx)


def test_a_50_mb_upload_through_nginx(stack):
    _, app, nginx = stack
    body = os.urandom(1 << 20) * 50
    c = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=60)
    c.request("POST", "/body", body=body, headers={"Content-Type": "application/octet-stream"})
    r = c.getresponse()
    echoed = r.read()
    assert r.status == 200
    assert len(echoed) == len(body)
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(body).digest()


def test_a_streamed_response_through_nginx(stack):
    _, app, nginx = stack
    c = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
    c.request("GET", "/stream?n=2000&size=5000")
    r = c.getresponse()
    data = r.read()
    assert r.status == 200
    expected = b"".join(str(i % 10).encode() * 5000 for i in range(2000))
    assert data == expected
