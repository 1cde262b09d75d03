"""Behind a proxy: forwarding fields from trusted peers set the environ,
from untrusted peers they change nothing; which element of a list is used;
malformed values are ignored."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from conftest import ServerProcess


@pytest.fixture(scope="module")
def trusted():
    s = ServerProcess("apps:peer_echo", "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8",
                      "--forwarded-host")
    yield s
    s.stop()
    s.cleanup()


@pytest.fixture(scope="module")
def untrusted():
    s = ServerProcess("apps:peer_echo", "--forwarded-allow-ips", "192.0.2.1")
    yield s
    s.stop()
    s.cleanup()


def ask(s: ServerProcess, *fields: str, via: str | None = None) -> dict:
    head = "GET / HTTP/1.1\r\nHost: origin.test:8000\r\n" + "".join(f + "\r\n" for f in fields)
    if via is None:
        conn = socket.create_connection((s.host, s.port), timeout=5)
    else:
        conn = socket.socket(socket.AF_UNIX)
        conn.settimeout(5)
        conn.connect(via)
    with conn:
        conn.sendall((head + "Connection: close\r\n\r\n").encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return json.loads(data.partition(b"\r\n\r\n")[2])


def test_x_forwarded_fields_from_a_trusted_peer(trusted):
    env = ask(trusted, "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https",
              "X-Forwarded-Host: shop.example", "X-Forwarded-Port: 8443")
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "shop.example"
    assert env["SERVER_NAME"] == "shop.example"
    assert env["SERVER_PORT"] == "8443"


def test_the_rightmost_address_that_is_not_a_trusted_proxy_is_the_client(trusted):
    # A client wrote 1.1.1.1 itself; nginx appended the address it saw,
    # then an inner proxy in 10/8 appended its own.
    env = ask(trusted, "X-Forwarded-For: 1.1.1.1, 198.51.100.9, 10.1.2.3")
    assert env["REMOTE_ADDR"] == "198.51.100.9"
    # Every hop trusted: the leftmost.
    env = ask(trusted, "X-Forwarded-For: 10.0.0.5, 10.0.0.6")
    assert env["REMOTE_ADDR"] == "10.0.0.5"


def test_forwarded_wins_over_x_forwarded(trusted):
    env = ask(trusted, 'Forwarded: for=192.0.2.60;proto=https;host="a.example:444", '
              'for="[2001:db8::1]:4711"', "X-Forwarded-For: 198.51.100.1",
              "X-Forwarded-Proto: http")
    assert env["REMOTE_ADDR"] == "2001:db8::1"
    # The chosen element (the rightmost untrusted) has no proto or host.
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "origin.test:8000"
    env = ask(trusted, 'Forwarded: for=192.0.2.60;proto=https;host="a.example:444"')
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"], env["HTTP_HOST"],
            env["SERVER_NAME"], env["SERVER_PORT"]) == (
        "192.0.2.60", "https", "a.example:444", "a.example", "444")


@pytest.mark.parametrize("field", [
    "X-Forwarded-For: not-an-address",
    "X-Forwarded-Proto: gopher",
    "X-Forwarded-Host: evil.example/path",
    "X-Forwarded-Host: a b",
    "X-Forwarded-Port: 99999",
    "Forwarded: for=unknown",
    'Forwarded: for="_hidden";proto=ftp',
    "Forwarded: garbage without equals",
])
def test_malformed_values_change_nothing(trusted, field):
    env = ask(trusted, field)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "origin.test:8000"
    assert env["SERVER_PORT"] == str(trusted.port)


def test_an_untrusted_peer_changes_nothing(untrusted):
    env = ask(untrusted, "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https",
              "X-Forwarded-Host: shop.example", "Forwarded: for=192.0.2.60")
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "origin.test:8000"
    # ... and the fields stay as plain headers for the app.
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert env["HTTP_FORWARDED"] == "for=192.0.2.60"


def test_by_default_the_host_is_not_taken_from_a_trusted_peer():
    # A proxy that does not set X-Forwarded-Host itself passes a client's
    # own on: by default it stays a plain header (as gunicorn), and only the
    # client's address and the scheme are taken.
    s = ServerProcess("apps:peer_echo")
    try:
        env = ask(s, "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https",
                  "X-Forwarded-Host: evil.example", "X-Forwarded-Port: 8443")
        assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("203.0.113.7", "https")
        assert env["HTTP_HOST"] == "origin.test:8000"
        assert env["SERVER_PORT"] == str(s.port)
        assert env["HTTP_X_FORWARDED_HOST"] == "evil.example"
        env = ask(s, 'Forwarded: for=192.0.2.60;proto=https;host="evil.example"')
        assert (env["REMOTE_ADDR"], env["HTTP_HOST"]) == ("192.0.2.60", "origin.test:8000")
    finally:
        s.stop()
        s.cleanup()


def test_default_trusts_localhost_and_unix_sockets(tmp_path):
    path = str(tmp_path / "s.sock")
    s = ServerProcess("apps:peer_echo", "--bind", f"unix:{path}")
    try:
        env = ask(s, "X-Forwarded-For: 203.0.113.8", via=path)
        assert env["REMOTE_ADDR"] == "203.0.113.8"
    finally:
        s.stop()
        s.cleanup()


def test_each_request_gets_its_own_peer_under_many_clients(trusted):
    """The builders are per key sequence: requests with and without the
    fields, interleaved on many connections, each see only their own."""
    errors: list[str] = []

    def client(i: int) -> None:
        for j in range(30):
            if (i + j) % 2:
                env = ask(trusted, f"X-Forwarded-For: 203.0.113.{i}")
                want = f"203.0.113.{i}"
            else:
                env = ask(trusted)
                want = "127.0.0.1"
            if env["REMOTE_ADDR"] != want:
                errors.append(f"client {i} request {j}: {env['REMOTE_ADDR']} != {want}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]


def test_bad_allow_list_is_one_line_error():
    import subprocess

    from conftest import fastwsgi_env, server_command
    r = subprocess.run([*server_command(), "--forwarded-allow-ips", "10.0.0.0/8,nope",
                        "apps:hello"], env=fastwsgi_env(), capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("fastwsgi: error: --forwarded-allow-ips: must be addresses")


def test_secure_scheme_headers_from_a_gunicorn_config(tmp_path):
    # A TLS-terminating balancer that says so in a header of its own.
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("secure_scheme_headers = {'X-FORWARDED-SSL': 'on', 'X-Scheme': 'https'}\n")
    s = ServerProcess("apps:peer_echo", "-c", str(conf))
    try:
        assert ask(s, "X-Forwarded-SSL: on")["wsgi.url_scheme"] == "https"
        assert ask(s, "X-Scheme: https", "X-Forwarded-Proto: http")["wsgi.url_scheme"] == "https"
        assert ask(s, "X-Forwarded-SSL: off")["wsgi.url_scheme"] == "http"
        assert ask(s)["wsgi.url_scheme"] == "http"
    finally:
        s.stop()
        s.cleanup()
    # From a peer that is not trusted it says nothing.
    s = ServerProcess("apps:peer_echo", "-c", str(conf), "--forwarded-allow-ips", "192.0.2.1")
    try:
        assert ask(s, "X-Forwarded-SSL: on")["wsgi.url_scheme"] == "http"
    finally:
        s.stop()
        s.cleanup()
