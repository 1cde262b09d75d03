"""HTTPS: the C core's TLS, tried with real clients (curl, openssl s_client,
Python's ssl, requests) against real server processes."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import tls_certs
from conftest import START_LINE, fastwsgi_env, parse_responses, read_one, server_command


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tls_certs.Certs:
    return tls_certs.make(tmp_path_factory.mktemp("certs"))


def tls_args(certs: tls_certs.Certs, *more: str) -> tuple[str, ...]:
    return ("--certfile", str(certs.cert), "--keyfile", str(certs.key), *more)


def client_context(certs: tls_certs.Certs, cert: Path | None = None,
                   key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def tls_connect(srv, certs: tls_certs.Certs, ctx: ssl.SSLContext | None = None,
                **wrap) -> ssl.SSLSocket:
    raw = socket.create_connection((srv.host, srv.port), timeout=10)
    return (ctx or client_context(certs)).wrap_socket(raw, server_hostname="localhost",
                                                      **wrap)


def get(srv, certs, path: str, ctx: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection(srv.host, srv.port, timeout=10,
                                       context=ctx or client_context(certs))
    conn.request("GET", path, headers={"Host": "localhost"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def s_client(port: int, *args: str, stdin: bytes = b"") -> str:
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                          "-servername", "localhost", *args],
                         input=stdin, capture_output=True, timeout=20)
    return out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")


def negotiated(text: str) -> str | None:
    """The protocol s_client reports for a finished handshake, else None."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("New, TLSv") or line.startswith("New, SSLv"):
            return line.split(",")[1].strip()
    return None


# ---------------------------------------------------------------- serving


def test_curl_with_cacert_keeps_the_connection(start_server, certs):
    srv = start_server("apps:router", *tls_args(certs))
    assert srv.url.startswith("https://127.0.0.1:")
    url = f"https://localhost:{srv.port}/hello"
    out = subprocess.run(["curl", "-s", "--cacert", str(certs.ca), url, url,
                          "-w", "|%{http_code}|%{num_connects}\n"],
                         capture_output=True, timeout=20, text=True)
    # Two answers, the second on the first one's connection.
    assert out.stdout == "Hello, World!|200|1\nHello, World!|200|0\n", out.stderr


def test_environ_says_https(start_server, certs):
    srv = start_server("apps:router", *tls_args(certs))
    status, body = get(srv, certs, "/echo")
    env = json.loads(body)
    assert status == 200
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTPS"] == "on"
    assert "SSL_CLIENT_S_DN" not in env


def test_pipelined_requests_over_one_session(start_server, certs):
    srv = start_server("apps:router", *tls_args(certs))
    with tls_connect(srv, certs) as s:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n" * 3
                  + b"GET /echo?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        got = b""
        deadline = time.monotonic() + 10
        while len(parse_responses(got)) < 4 and time.monotonic() < deadline:
            got += s.recv(65536)
    answers = parse_responses(got)
    assert [a[0] for a in answers] == [200] * 4
    assert [a[2] for a in answers[:3]] == [b"Hello, World!"] * 3
    assert json.loads(answers[3][2])["QUERY_STRING"] == "x=1"


def test_large_stream_body_and_file(start_server, certs, tmp_path):
    data = os.urandom(3 << 20)
    f = tmp_path / "blob"
    f.write_bytes(data)
    srv = start_server("apps:router", *tls_args(certs),
                       env={"FASTWSGI_TEST_FILE": str(f)})
    status, body = get(srv, certs, "/stream?n=200&size=65536")
    assert status == 200
    assert body == b"".join(str(i % 10).encode() * 65536 for i in range(200))
    status, body = get(srv, certs, "/file")
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    # From an offset, under a Content-Length: the bytes of that range only.
    status, body = get(srv, certs, "/file?offset=1000&cl=5000")
    assert status == 200 and body == data[1000:6000]


def test_request_bodies_both_framings(start_server, certs):
    srv = start_server("apps:router", *tls_args(certs))
    body = os.urandom(1 << 20)
    r = requests.post(f"https://localhost:{srv.port}/body", data=body,
                      verify=str(certs.ca), timeout=20)
    assert r.status_code == 200 and r.content == body
    # Chunked: requests sends a generator that way.
    r = requests.post(f"https://localhost:{srv.port}/body",
                      data=(body[i:i + 70000] for i in range(0, len(body), 70000)),
                      verify=str(certs.ca), timeout=20)
    assert r.status_code == 200 and r.content == body


def test_slow_reader_gets_every_byte(start_server, certs):
    """Backpressure: a client that reads slowly through a small window
    still gets the whole answer (the session waits for the socket)."""
    srv = start_server("apps:router", *tls_args(certs))
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
    raw.settimeout(10)
    raw.connect((srv.host, srv.port))
    with client_context(certs).wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"GET /stream?n=64&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.5)
        status, _, body, _ = read_one(s, 20.0)
    assert status == 200
    assert body == b"".join(str(i % 10).encode() * 65536 for i in range(64))


@pytest.mark.parametrize("mode", [("--threads", "4"), ("--workers", "2", "--threads", "2")])
def test_each_client_gets_its_own_answer(start_server, certs, mode):
    """Many clients at once, each over its own session, each sending a body
    of its own: each answer is its own body, in threaded mode and with
    workers."""
    srv = start_server("apps:router", *tls_args(certs), *mode)
    ctx = client_context(certs)
    wrong: list[str] = []

    def client(k: int) -> None:
        s = tls_connect(srv, certs, ctx)
        try:
            for j in range(5):
                body = f"client {k} request {j} ".encode() * (1 + (k * 7 + j) % 300)
                s.sendall(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                          % len(body) + body)
                status, headers, got, _ = read_one(s, 20.0)
                if (status, got) != (200, body):
                    wrong.append(f"client {k} request {j}: {status} {got[:40]!r}")
                if headers.get("connection") == "close":
                    # A worker hands a connection back to balance the
                    # load: the client reconnects, as HTTP clients do.
                    s.close()
                    s = tls_connect(srv, certs, ctx)
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            wrong.append(f"client {k}: {exc!r}")
        finally:
            s.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_close_notify_ends_a_closing_response(start_server, certs):
    """The server's last word on a connection it closes is close_notify:
    a client that treats a bare EOF as an attack reads the end cleanly."""
    srv = start_server("apps:router", *tls_args(certs))
    with tls_connect(srv, certs, suppress_ragged_eofs=False) as s:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        got = b""
        while True:
            data = s.recv(65536)  # SSLEOFError here without close_notify
            if not data:
                break
            got += data
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"Hello, World!")


def test_client_close_notify_and_a_ragged_close(start_server, certs):
    """Clients that end with close_notify, and ones that just close: the
    server goes on serving (and does not count either as a crash)."""
    srv = start_server("apps:router", *tls_args(certs))
    for _ in range(5):
        s = tls_connect(srv, certs)
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_one(s)[0] == 200
        s.unwrap().close()      # close_notify, then the socket
        r = tls_connect(srv, certs)
        r.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        r.close()               # no close_notify, maybe before the answer
    assert get(srv, certs, "/hello") == (200, b"Hello, World!")


# ---------------------------------------------------------------- versions, ciphers, ALPN


def test_versions_1_2_and_1_3_only(start_server, certs):
    srv = start_server("apps:router", *tls_args(certs))
    assert negotiated(s_client(srv.port, "-tls1_3")) == "TLSv1.3"
    assert negotiated(s_client(srv.port, "-tls1_2")) == "TLSv1.2"
    for old in ("-tls1", "-tls1_1"):
        out = s_client(srv.port, old, "-cipher", "DEFAULT@SECLEVEL=0")
        assert negotiated(out) is None, out


def test_min_version_1_3_refuses_1_2(start_server, certs):
    srv = start_server("apps:router", *tls_args(certs, "--tls-min-version", "1.3"))
    assert negotiated(s_client(srv.port, "-tls1_2")) is None
    assert negotiated(s_client(srv.port, "-tls1_3")) == "TLSv1.3"


def test_ciphers_as_configured(start_server, certs):
    srv = start_server("apps:router",
                       *tls_args(certs, "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"))
    ok = s_client(srv.port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    assert negotiated(ok) == "TLSv1.2" and "ECDHE-RSA-AES128-GCM-SHA256" in ok
    refused = s_client(srv.port, "-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384")
    assert negotiated(refused) is None


def test_alpn_names_http_1_1_and_never_h2(start_server, certs):
    srv = start_server("apps:router", *tls_args(certs))
    assert "ALPN protocol: http/1.1" in s_client(srv.port, "-alpn", "h2,http/1.1")
    only_h2 = s_client(srv.port, "-alpn", "h2")
    assert negotiated(only_h2) is not None and "No ALPN negotiated" in only_h2


# ---------------------------------------------------------------- client certificates


def expected_subject(cert: Path) -> str:
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-subject",
                          "-nameopt", "RFC2253"], capture_output=True, text=True, check=True)
    return out.stdout.strip().removeprefix("subject=")


def test_required_client_certificate(start_server, certs):
    srv = start_server("apps:router", *tls_args(certs, "--ca-certs", str(certs.ca),
                                                "--cert-reqs", "required"))
    ctx = client_context(certs, certs.client_cert, certs.client_key)
    status, body = get(srv, certs, "/echo", ctx)
    env = json.loads(body)
    assert status == 200
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN"] == expected_subject(certs.client_cert)
    for ctx in (client_context(certs),   # no certificate
                client_context(certs, certs.stranger_cert, certs.stranger_key)):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            get(srv, certs, "/hello", ctx)
    assert get(srv, certs, "/hello", client_context(
        certs, certs.client_cert, certs.client_key)) == (200, b"Hello, World!")


def test_optional_client_certificate(start_server, certs):
    srv = start_server("apps:router", *tls_args(certs, "--ca-certs", str(certs.ca),
                                                "--cert-reqs", "optional"))
    status, body = get(srv, certs, "/echo")
    assert status == 200 and "SSL_CLIENT_S_DN" not in json.loads(body)
    ctx = client_context(certs, certs.client_cert, certs.client_key)
    env = json.loads(get(srv, certs, "/echo", ctx)[1])
    assert env["SSL_CLIENT_S_DN"] == expected_subject(certs.client_cert)


# ---------------------------------------------------------------- binds, renewal


def test_one_server_plain_and_tls(start_server, certs):
    srv = start_server("apps:router", *tls_args(certs), "--bind", "http://127.0.0.1:0",
                       "--bind", "https://127.0.0.1:0")
    line = srv.output()
    urls = line.split("listening on ", 1)[1].split(" (pid")[0].split(", ")
    plain, secure = urls
    assert plain.startswith("http://") and secure.startswith("https://")
    p_port, s_port = int(plain.rsplit(":", 1)[1]), int(secure.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", p_port, timeout=10)
    conn.request("GET", "/echo")
    assert json.loads(conn.getresponse().read())["wsgi.url_scheme"] == "http"
    srv.port = s_port
    assert json.loads(get(srv, certs, "/echo")[1])["wsgi.url_scheme"] == "https"


def served_certificate(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw) as s:
        return s.getpeercert(binary_form=True)


def der(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())


def test_sighup_renews_the_certificate_without_dropping_connections(start_server, certs,
                                                                     tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(certs.cert, cert)
    shutil.copy(certs.key, key)
    srv = start_server("apps:router", "--certfile", str(cert), "--keyfile", str(key))
    assert served_certificate(srv.port) == der(certs.cert)
    kept = tls_connect(srv, certs)
    kept.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_one(kept)[0] == 200
    shutil.copy(certs.other_cert, cert)
    shutil.copy(certs.other_key, key)
    srv.signal(signal.SIGHUP)
    assert "certificate and key read again" in srv.wait_output("certificate and key read")
    assert served_certificate(srv.port) == der(certs.other_cert)
    kept.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_one(kept)[2] == b"Hello, World!"  # the old session goes on
    kept.close()
    # A renewal that fails keeps the certificate being served.
    key.write_text("not a key\n")
    srv.signal(signal.SIGHUP)
    assert "was not renewed" in srv.wait_output("was not renewed")
    assert served_certificate(srv.port) == der(certs.other_cert)


def test_workers_serve_tls_and_reload_rereads_it(start_server, certs, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(certs.cert, cert)
    shutil.copy(certs.key, key)
    srv = start_server("apps:router", "--certfile", str(cert), "--keyfile", str(key),
                       "--workers", "2")
    assert get(srv, certs, "/hello") == (200, b"Hello, World!")
    shutil.copy(certs.other_cert, cert)
    shutil.copy(certs.other_key, key)
    srv.signal(signal.SIGHUP)
    # Once the old workers are gone, every connection lands on a new one
    # (until then an old worker may still take some): wait for that state.
    deadline = time.monotonic() + 30
    renewed = False
    while not renewed and time.monotonic() < deadline:
        renewed = all(served_certificate(srv.port) == der(certs.other_cert)
                      for _ in range(6))
        if not renewed:
            time.sleep(0.2)
    assert renewed, srv.output()[-2000:]


# ---------------------------------------------------------------- hostile clients


def test_unfinished_handshakes_are_cut_and_others_served(start_server, certs):
    """A slowloris of handshakes: connections that send nothing, half a
    ClientHello, or garbage.  Each is closed by --header-timeout; a normal
    client is served all the while."""
    srv = start_server("apps:router", *tls_args(certs, "--header-timeout", "1"))
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(40)
    socks = []
    for k in range(150):
        s = socket.create_connection((srv.host, srv.port), timeout=10)
        if k % 3 == 1:
            s.sendall(hello)
        socks.append(s)
    t0 = time.monotonic()
    assert get(srv, certs, "/hello") == (200, b"Hello, World!")
    assert time.monotonic() - t0 < 2.0
    for s in socks:
        s.settimeout(5)
        assert s.recv(100) == b""  # closed by the server, within the timeout
        s.close()
    for junk in (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", os.urandom(600),
                 b"\x16\x03\x01\x00\x05" + b"\x00" * 5, b"\x16\x03\x01\xff\xff" + os.urandom(300)):
        with socket.create_connection((srv.host, srv.port), timeout=10) as s:
            s.sendall(junk)
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
    assert get(srv, certs, "/hello") == (200, b"Hello, World!")


def test_plain_http_to_a_tls_port_is_told_so(start_server, certs):
    """curl http://host:443/ gets a readable 400 in the clear, then the
    close, instead of a silent reset; the listener goes on with TLS."""
    srv = start_server("apps:router", *tls_args(certs))
    for method in ("GET", "POST", "HEAD"):
        with socket.create_connection((srv.host, srv.port), timeout=10) as s:
            s.sendall(f"{method} /hello HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            got = b""
            while True:
                data = s.recv(4096)
                if not data:
                    break
                got += data
        assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n"), got
        assert got.endswith(b"This port speaks HTTPS: use an https URL.\n")
    assert get(srv, certs, "/hello") == (200, b"Hello, World!")


def test_run_takes_the_tls_settings(certs, tmp_path):
    """fastwsgi.run(app, host, port, certfile=..., keyfile=...) serves
    HTTPS, as the command line does."""
    code = ("import fastwsgi, apps; fastwsgi.run(apps.router, '127.0.0.1', 0, "
            f"certfile={str(certs.cert)!r}, keyfile={str(certs.key)!r})")
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parent,
                            env=fastwsgi_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while (m := START_LINE.search((tmp_path / "run.log").read_text())) is None:
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "run.log").read_text()
            time.sleep(0.05)
        url = m.group(1)
        assert url.startswith("https://127.0.0.1:")

        class Where:
            host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])

        assert get(Where, certs, "/hello") == (200, b"Hello, World!")
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


# ---------------------------------------------------------------- settings


def start_error(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*server_command(), *args, "--port", "0", "apps:hello"],
                          cwd=Path(__file__).parent, env=fastwsgi_env(),
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("args, words", [
    (("--certfile", "/nonexistent.pem"), "certfile: '/nonexistent.pem': no such file"),
    (("--certfile", "{cert}", "--keyfile", "{other_key}"),
     "keyfile: {other_key} is not the key of the certificate in certfile"),
    (("--certfile", "{cert}", "--keyfile", "{locked_key}"),
     "keyfile: {locked_key} is encrypted with a passphrase"),
    (("--certfile", "{key}"), "certfile: cannot use {key}"),
    (("--certfile", "{cert}", "--keyfile", "{key}", "--ciphers", "NO-SUCH-CIPHER"),
     "ciphers: no cipher of the list is usable"),
    (("--certfile", "{cert}", "--keyfile", "{key}", "--cert-reqs", "required"),
     "--cert-reqs: needs ca_certs"),
    (("--certfile", "{cert}", "--keyfile", "{key}", "--cert-reqs", "maybe"),
     "--cert-reqs: must be none (0), optional (1) or required (2)"),
    (("--bind", "https://127.0.0.1:0"), "bind: 'https://127.0.0.1:0' needs certfile"),
    (("--certfile", "{cert}", "--keyfile", "{key}", "--tls-min-version", "1.1"),
     "--tls-min-version: must be one of 1.2, 1.3"),
])
def test_bad_tls_settings_are_one_line_and_exit_2(certs, args, words):
    names = {k: str(getattr(certs, k)) for k in ("cert", "key", "other_key", "locked_key")}
    out = start_error(*(a.format(**names) for a in args))
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert words.format(**names) in lines[0], lines[0]
