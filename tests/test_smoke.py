import http.client

from conftest import parse_responses, raw


def test_hello(server):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", "/hello")
    r = conn.getresponse()
    assert r.status == 200
    assert r.read() == b"Hello, World!"
    assert r.getheader("Content-Length") == "13"


def test_pipelined_16(server):
    req = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * 15
    req += b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = parse_responses(raw(server, req))
    assert len(out) == 16
    assert all(s == 200 and b == b"Hello, World!" for s, _, b in out)


def test_https(start_server, tmp_path):
    """The installed wheel serves HTTPS with the interpreter's own OpenSSL
    (nothing else installed)."""
    import ssl

    import tls_certs

    certs = tls_certs.make(tmp_path)
    srv = start_server("apps:router", "--certfile", str(certs.cert),
                       "--keyfile", str(certs.key))
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    conn = http.client.HTTPSConnection("localhost", srv.port, timeout=10, context=ctx)
    conn.request("GET", "/hello")
    r = conn.getresponse()
    assert (r.status, r.read()) == (200, b"Hello, World!")
