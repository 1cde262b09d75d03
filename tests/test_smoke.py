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
