"""Strict request parsing on a live server.

Every malformed request gets its error status and the connection closes.
A valid request is pipelined right behind each bad one: exactly one
response must come back, proving that no byte after the bad request was
interpreted as a request of its own.
"""

from __future__ import annotations

import socket
import time

import pytest
from conftest import ServerProcess, exchange, parse_responses, read_until_close

NEXT = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
REQ = b"GET /hello HTTP/1.1\r\nHost: t\r\n"
POST = b"POST /body HTTP/1.1\r\nHost: t\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"




def assert_rejected(server, bad: bytes, status: int, follow: bytes = NEXT) -> None:
    out, closed = exchange(server, bad + follow)
    responses = parse_responses(out)
    assert [r[0] for r in responses] == [status], out
    assert out.startswith(b"HTTP/1.1 %d " % status)
    assert responses[0][1]["connection"].lower() == "close"
    assert closed, "the connection stayed open after an error"


CASES = [
    # ambiguous or malformed framing
    ("cl-and-te", POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n0\r\n\r\n", 400),
    ("te-and-cl", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 35\r\n"
     b"\r\n0\r\n\r\n", 400),
    ("cl-twice-equal", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n"
     b"hello", 400),
    ("cl-twice-different", POST + b"Content-Length: 5\r\nContent-Length: 0\r\n"
     b"\r\nhello", 400),
    ("cl-plus", POST + b"Content-Length: +5\r\n\r\nhello", 400),
    ("cl-list", POST + b"Content-Length: 5,5\r\n\r\nhello", 400),
    ("cl-list-spaced", POST + b"Content-Length: 5, 5\r\n\r\nhello", 400),
    ("cl-blank", POST + b"Content-Length:  \r\n\r\n", 400),
    ("cl-hex", POST + b"Content-Length: 0x5\r\n\r\nhello", 400),
    ("cl-negative", POST + b"Content-Length: -1\r\n\r\n", 400),
    ("cl-19-digits", POST + b"Content-Length: 1000000000000000000\r\n\r\n", 400),
    ("cl-30-digits", POST + b"Content-Length: " + b"9" * 30 + b"\r\n\r\n", 400),
    ("te-gzip", POST + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("te-chunked-gzip", POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("te-identity", POST + b"Transfer-Encoding: identity\r\n\r\n", 400),
    ("te-gzip-chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
     b"0\r\n\r\n", 501),
    ("te-chunked-twice", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n"
     b"0\r\n\r\n", 400),
    ("te-two-fields", POST + b"Transfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-on-http10", b"POST /body HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 400),
    ("te-on-http10-with-cl", b"POST /body HTTP/1.0\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # field syntax
    ("space-before-colon", REQ + b"X-A : 1\r\n\r\n", 400),
    ("space-before-colon-cl", POST + b"Content-Length : 5\r\n\r\nhello", 400),
    ("tab-before-colon", REQ + b"X-A\t: 1\r\n\r\n", 400),
    ("obs-fold-space", REQ + b"X-A: 1\r\n 2\r\n\r\n", 400),
    ("obs-fold-tab", REQ + b"X-A: 1\r\n\t2\r\n\r\n", 400),
    ("leading-space-first-field", b"GET /hello HTTP/1.1\r\n Host: t\r\n\r\n", 400),
    ("bad-method-char", b"GE(T /hello HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("bad-method-8bit", b"G\xc3\x89T /hello HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("bad-name-char", REQ + b"X[A]: 1\r\n\r\n", 400),
    ("bad-name-space", REQ + b"X A: 1\r\n\r\n", 400),
    ("bad-name-8bit", REQ + b"X-\xe9: 1\r\n\r\n", 400),
    ("empty-name", REQ + b": 1\r\n\r\n", 400),
    ("no-colon", REQ + b"X-A\r\n\r\n", 400),
    ("cr-in-value", REQ + b"X-A: a\rb\r\n\r\n", 400),
    ("lf-in-value", REQ + b"X-A: a\nb\r\n\r\n", 400),
    ("nul-in-value", REQ + b"X-A: a\x00b\r\n\r\n", 400),
    ("del-in-value", REQ + b"X-A: a\x7fb\r\n\r\n", 400),
    # bare CR and bare LF
    ("bare-cr-request-line", b"GET /hello HTTP/1.1\rHost: t\r\n\r\n", 400),
    ("bare-cr-line-start", REQ + b"\rX-A: 1\r\n\r\n", 400),
    ("bare-cr-before-end", REQ + b"\r\r\n\r\n", 400),
    ("bare-lf-everywhere", b"GET /hello HTTP/1.1\nHost: t\n\n", 400),
    ("bare-lf-request-line", b"GET /hello HTTP/1.1\nHost: t\r\n\r\n", 400),
    ("bare-lf-field", REQ + b"X-A: 1\n\r\n", 400),
    ("bare-lf-end", REQ + b"\n", 400),
    # chunked bodies
    ("chunk-size-not-hex", CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-empty", CHUNKED + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-negative", CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-0x", CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-overflow", CHUNKED + b"1" * 20 + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-overflow-f", CHUNKED + b"f" * 17 + b"\r\n", 400),
    ("chunk-data-too-long", CHUNKED + b"5\r\nhelloXX\r\n0\r\n\r\n", 400),
    ("chunk-data-no-crlf", CHUNKED + b"5\r\nhello0\r\n\r\n", 400),
    ("chunk-data-bare-lf", CHUNKED + b"5\r\nhello\n0\r\n\r\n", 400),
    ("chunk-size-bare-lf", CHUNKED + b"5\nhello\r\n0\r\n\r\n", 400),
    ("chunk-trailer-fold", CHUNKED + b"5\r\nhello\r\n0\r\nA: 1\r\n 2\r\n\r\n", 400),
    ("content-type-twice", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: a/b\r\n"
     b"Content-Type: c/d\r\nContent-Length: 0\r\n\r\n", 400),
    ("chunk-size-trailing-space", CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", 400),
    ("trailer-content-length", CHUNKED + b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n", 400),
    ("trailer-host", CHUNKED + b"5\r\nhello\r\n0\r\nHost: evil\r\n\r\n", 400),
    # versions
    ("http-2.0", b"GET /hello HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    ("http-2.1", b"GET /hello HTTP/2.1\r\nHost: t\r\n\r\n", 505),
    ("fragment", b"GET /hello?x=1#frag HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("asterisk-get", b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("host-with-slash", b"GET /hello HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("host-bad-port", b"GET /hello HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400),
    ("http-3.0", b"GET /hello HTTP/3.0\r\nHost: t\r\n\r\n", 505),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ("version-garbage", b"GET /hello HTTP/x.y\r\nHost: t\r\n\r\n", 400),
    ("version-lowercase", b"GET /hello http/1.1\r\nHost: t\r\n\r\n", 400),
    ("version-long", b"GET /hello HTTP/1.1.1\r\nHost: t\r\n\r\n", 400),
    ("version-missing", b"GET /hello\r\nHost: t\r\n\r\n", 400),
    ("version-other-proto", b"GET /hello FOO/1.1\r\nHost: t\r\n\r\n", 400),
    ("version-two-digit", b"GET /hello HTTP/10.1\r\nHost: t\r\n\r\n", 400),
    # request line shape
    ("double-space", b"GET  /hello HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("trailing-space", b"GET /hello HTTP/1.1 \r\nHost: t\r\n\r\n", 400),
    ("space-in-target", b"GET /he llo HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    # Host
    ("no-host", b"GET /hello HTTP/1.1\r\n\r\n", 400),
    ("two-hosts", b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("two-hosts-equal", b"GET /hello HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400),
    # the target
    ("non-ascii-target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("latin1-target", b"GET /caf\xe9 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("ctl-in-target", b"GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("nul-in-path", b"GET /a%00b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("nul-at-end-of-path", b"GET /hello%00 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("nul-in-echo-path", b"POST /echo%00 HTTP/1.1\r\nHost: t\r\n"
     b"Content-Length: 3\r\n\r\nabc", 400),
    # expectations
    ("expect-unknown", POST + b"Content-Length: 5\r\nExpect: 200-ok\r\n\r\n"
     b"hello", 417),
]


@pytest.mark.parametrize("bad,status", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rejected(server, bad, status):
    assert_rejected(server, bad, status)


def test_cl_te_smuggling_attempt(server):
    # a front end honouring Content-Length would see one request; one
    # honouring chunked would see a second, smuggled one: refuse both
    smuggled = b"GET /echo?smuggled=1 HTTP/1.1\r\nHost: t\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    bad = (POST + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
           % len(body) + body)
    assert_rejected(server, bad, 400)


def test_te_cl_smuggling_attempt_with_obfuscated_coding(server):
    bad = (POST + b"Content-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n"
           b"5c\r\nGET /echo?smuggled=1 HTTP/1.1\r\nHost: t\r\n\r\n0\r\n\r\n")
    assert_rejected(server, bad, 400)


def test_error_after_good_requests_on_the_same_connection(server):
    bad = REQ + b"X-A : 1\r\n\r\n"
    out, closed = exchange(server, NEXT + NEXT + bad + NEXT)
    assert [r[0] for r in parse_responses(out)] == [200, 200, 400]
    assert closed


def test_error_response_to_a_bad_head_request(server):
    # a HEAD whose head is bad still gets a complete error response
    out, closed = exchange(server, b"HEAD /hello HTTP/1.1\r\nX-A : 1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    assert closed


def test_nul_decoding_is_not_applied_twice(server):
    # %25 is '%': "/%2500" is the path "/%00", which is fine
    out, closed = exchange(server, b"GET /%2500 HTTP/1.1\r\nHost: t\r\n"
                                    b"Connection: close\r\n\r\n")
    responses = parse_responses(out)
    assert [(r[0], r[2]) for r in responses] == [(404, b"not found: /%00")]


def test_nul_in_the_query_is_left_encoded(server):
    out, closed = exchange(server, b"GET /echo?a=%00 HTTP/1.1\r\nHost: t\r\n"
                                    b"Connection: close\r\n\r\n")
    responses = parse_responses(out)
    assert responses[0][0] == 200
    assert b'"QUERY_STRING": "a=%00"' in responses[0][2]


def test_bad_request_sent_in_pieces(server):
    with server.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        bad = REQ + b"X-A: a\x00b\r\n\r\n" + NEXT
        for i in range(0, len(bad), 7):
            try:
                s.sendall(bad[i:i + 7])
            except OSError:
                break
            time.sleep(0.002)
        out, closed = read_until_close(s)
    assert [r[0] for r in parse_responses(out)] == [400]
    assert closed


# ---------------------------------------------------------------- limits


@pytest.fixture(scope="module")
def small():
    srv = ServerProcess("apps:router", "--limit-request-line", "128",
                        "--limit-request-fields", "6",
                        "--limit-request-field-size", "128",
                        "--limit-request-head", "1024")
    yield srv
    alive = srv.alive()
    srv.stop()
    srv.cleanup()
    assert alive


def test_request_line_at_the_limit(small):
    target = b"/echo?" + b"a" * (128 - len(b"GET /echo? HTTP/1.1"))
    line = b"GET " + target + b" HTTP/1.1"
    assert len(line) == 128
    out, closed = exchange(small, line + b"\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert [r[0] for r in parse_responses(out)] == [200]


def test_request_line_too_long(small):
    line = b"GET /echo?" + b"a" * 200 + b" HTTP/1.1"
    assert_rejected(small, line + b"\r\nHost: t\r\n\r\n", 414)


def test_request_line_too_long_before_it_ends(small):
    # no line end in sight: the answer must not wait for one
    with small.connect() as s:
        s.sendall(b"GET /" + b"a" * 300)
        out, closed = read_until_close(s, timeout=2)
    assert out.startswith(b"HTTP/1.1 414 ")
    assert closed


def test_fields_at_the_limit(small):
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(4))
    out, _ = exchange(small, REQ + fields + b"Connection: close\r\n\r\n")
    assert [r[0] for r in parse_responses(out)] == [200]


def test_too_many_fields(small):
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(6))
    assert_rejected(small, REQ + fields + b"\r\n", 431)


def test_too_many_fields_counts_dropped_ones(small):
    fields = b"".join(b"X_%d: v\r\n" % i for i in range(6))
    assert_rejected(small, REQ + fields + b"\r\n", 431)


def test_field_at_the_size_limit(small):
    field = b"X-Long: " + b"v" * (128 - 8)
    assert len(field) == 128
    out, _ = exchange(small, REQ + field + b"\r\nConnection: close\r\n\r\n")
    assert [r[0] for r in parse_responses(out)] == [200]


def test_field_too_large(small):
    field = b"X-Long: " + b"v" * 121
    assert_rejected(small, REQ + field + b"\r\n\r\n", 431)


@pytest.fixture(scope="module")
def small_head():
    # the head limit is never below the request line limit plus its CRLF
    srv = ServerProcess("apps:router", "--limit-request-line", "128",
                        "--limit-request-head", "1024")
    yield srv
    alive = srv.alive()
    srv.stop()
    srv.cleanup()
    assert alive


def fields_of(total: int) -> bytes:
    """Header fields of 100 bytes each (CRLF included) up to `total` bytes."""
    out = b""
    i = 0
    while len(out) + 100 <= total:
        out += b"X-%02d: %s\r\n" % (i, b"v" * 92)
        i += 1
    return out


def test_head_at_the_limit(small_head):
    req = REQ + b"Connection: close\r\n"
    pad = 1024 - len(req) - 2
    fields = fields_of(pad - pad % 100)
    rest = pad - len(fields)
    fields += b"X-Z: " + b"v" * (rest - 7) + b"\r\n"
    data = req + fields + b"\r\n"
    assert len(data) == 1024
    out, _ = exchange(small_head, data)
    assert [r[0] for r in parse_responses(out)] == [200]


def test_head_too_large(small_head):
    data = REQ + fields_of(1000) + b"\r\n"
    assert 1024 < len(data) < 1200
    assert_rejected(small_head, data, 431)


def test_head_too_large_before_it_ends(small_head):
    with small_head.connect() as s:
        s.sendall(REQ + fields_of(1500))
        out, closed = read_until_close(s, timeout=2)
    assert out.startswith(b"HTTP/1.1 431 ")
    assert closed


def test_a_higher_minor_version_is_served_as_http11(server):
    """RFC 9110 2.5: HTTP/1.2 is answered as the highest 1.x implemented."""
    with server.connect() as s:
        s.sendall(b"GET /hello HTTP/1.2\r\nHost: t\r\n\r\n")
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 200 "), data[:100]
