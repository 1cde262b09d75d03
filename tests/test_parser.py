"""The C request parser and chunked decoder, called directly through cffi.

fw_parse_head and fw_chunked_decode are pure functions over a buffer, so
these tests feed them complete, truncated, fragmented and malformed input
and check every slice and flag they report.
"""

from __future__ import annotations

import pytest
from fastwsgi._fastwsgi import ffi, lib
from hypothesis import given, settings
from hypothesis import strategies as st

LIMITS = {
    "request_line": 8190,
    "fields": 100,
    "field_size": 8190,
    "head": 65536,
    "allow_underscores": 0,
}

HTTP11 = lib.FW_REQ_HTTP11
KEEPALIVE = lib.FW_REQ_KEEPALIVE
CHUNKED = lib.FW_REQ_CHUNKED
CONTINUE = lib.FW_REQ_CONTINUE
HEAD = lib.FW_REQ_HEAD
FLAG_MASK = HTTP11 | KEEPALIVE | CHUNKED | CONTINUE | HEAD


def limits(**kw):
    values = dict(LIMITS)
    values.update(kw)
    return ffi.new("fw_limits *", values)


def describe(data: bytes, rc: int, head) -> dict:
    """Everything a successful parse reports, as plain Python values."""

    def sl(s) -> bytes:
        return data[s.off:s.off + s.len]

    if rc <= 0:
        return {"rc": rc}
    return {
        "rc": rc,
        "head_len": head.head_len,
        "method": sl(head.method),
        "target": sl(head.target),
        "path": sl(head.path),
        "query": sl(head.query),
        "flags": head.flags & FLAG_MASK,
        "content_length": head.content_length,
        "fields": [(sl(head.fields[i].name), sl(head.fields[i].value))
                   for i in range(head.nfields)],
    }


def parse(data: bytes, lim=None, **kw) -> dict:
    """Parse data in one call with a fresh scanned hint."""
    lim = lim if lim is not None else limits(**kw)
    head = ffi.new("fw_head *")
    scanned = ffi.new("size_t *")
    rc = lib.fw_parse_head(data, len(data), lim, head, scanned)
    return describe(data, rc, head)


def parse_in_steps(data: bytes, ends: list[int], lim=None) -> tuple[list[int], dict]:
    """Feed growing prefixes data[:end] for each end, keeping one scanned
    hint and one fw_head across the calls as a connection does.  Returns the
    return codes of the calls before the last and the last call's result."""
    lim = lim if lim is not None else limits()
    head = ffi.new("fw_head *")
    scanned = ffi.new("size_t *")
    codes = []
    for end in ends[:-1]:
        codes.append(lib.fw_parse_head(data[:end], end, lim, head, scanned))
    end = ends[-1]
    piece = data[:end]
    rc = lib.fw_parse_head(piece, end, lim, head, scanned)
    return codes, describe(piece, rc, head)


# ---------------------------------------------------------------- valid heads

SIMPLE = b"GET /hello HTTP/1.1\r\nHost: example.com\r\n\r\n"

VALID = [
    SIMPLE,
    b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n"
    b"User-Agent: test/1.0\r\n\r\n",
    b"POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
    b"Content-Type: text/plain\r\n\r\n",
    b"PUT /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
    b"Content-Length: 10\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET http://example.com:8080/p/q?z=9 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX-Spaces: \t padded \t\r\nX-Empty:\r\n"
    b"X-Latin: caf\xe9\r\n\r\n",
]


def test_simple_get_slices():
    r = parse(SIMPLE)
    assert r["rc"] == len(SIMPLE)
    assert r["head_len"] == len(SIMPLE)
    assert r["method"] == b"GET"
    assert r["target"] == b"/hello"
    assert r["path"] == b"/hello"
    assert r["query"] == b""
    assert r["flags"] == HTTP11 | KEEPALIVE
    assert r["content_length"] == -1
    assert r["fields"] == [(b"Host", b"example.com")]


def test_path_and_query_split():
    r = parse(b"GET /a/b%20c?x=1&y=?2 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert r["target"] == b"/a/b%20c?x=1&y=?2"
    assert r["path"] == b"/a/b%20c"
    assert r["query"] == b"x=1&y=?2"


def test_empty_query_after_question_mark():
    r = parse(b"GET /p? HTTP/1.1\r\nHost: h\r\n\r\n")
    assert r["path"] == b"/p"
    assert r["query"] == b""


def test_absolute_form_target():
    r = parse(VALID[8])
    assert r["target"] == b"http://example.com:8080/p/q?z=9"
    assert r["path"] == b"/p/q"
    assert r["query"] == b"z=9"


def test_asterisk_form_target():
    r = parse(VALID[7])
    assert r["method"] == b"OPTIONS"
    assert r["target"] == b"*"
    assert r["path"] == b"*"


def test_field_values_are_trimmed_and_obs_text_kept():
    r = parse(VALID[9])
    assert r["fields"] == [(b"Host", b"h"), (b"X-Spaces", b"padded"),
                           (b"X-Empty", b""), (b"X-Latin", b"caf\xe9")]


def test_field_value_inner_whitespace_kept():
    r = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a  b\tc\r\n\r\n")
    assert r["fields"][1] == (b"X-A", b"a  b\tc")


def test_field_names_keep_their_case():
    r = parse(b"GET / HTTP/1.1\r\nhOsT: h\r\nX-MiXeD: v\r\n\r\n")
    assert r["rc"] > 0
    assert [n for n, _ in r["fields"]] == [b"hOsT", b"X-MiXeD"]


def test_content_length_parsed():
    r = parse(VALID[2])
    assert r["content_length"] == 5
    assert r["flags"] & CHUNKED == 0


def test_content_length_zero_and_eighteen_digits():
    assert parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
                 )["content_length"] == 0
    r = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999999999999"
              b"\r\n\r\n")
    assert r["content_length"] == 999999999999999999


def test_head_length_excludes_the_body_and_next_request():
    data = VALID[2] + b"hello" + SIMPLE
    r = parse(data)
    assert r["rc"] == len(VALID[2])


def test_pipelined_heads_parse_one_at_a_time():
    second = b"GET /two HTTP/1.1\r\nHost: h\r\n\r\n"
    data = SIMPLE + second
    first = parse(data)
    assert first["rc"] == len(SIMPLE)
    assert first["target"] == b"/hello"
    r = parse(data[first["rc"]:])
    assert r["rc"] == len(second)
    assert r["target"] == b"/two"


def test_leading_empty_lines_are_skipped():
    data = b"\r\n\r\n" + SIMPLE
    r = parse(data)
    assert r["rc"] == len(data)
    assert r["method"] == b"GET"
    assert r["target"] == b"/hello"


# ---------------------------------------------------------------- flags


@pytest.mark.parametrize("data,flags", [
    (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP11 | KEEPALIVE),
    (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", HTTP11),
    (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: CLOSE\r\n\r\n", HTTP11),
    (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n",
     HTTP11),
    (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n",
     HTTP11 | KEEPALIVE),
    (b"GET / HTTP/1.0\r\n\r\n", 0),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", KEEPALIVE),
    (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", KEEPALIVE),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0),
    (b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP11 | KEEPALIVE | HEAD),
    (b"HEAD / HTTP/1.0\r\n\r\n", HEAD),
    (b"head / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP11 | KEEPALIVE),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
     HTTP11 | KEEPALIVE | CHUNKED),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n",
     HTTP11 | KEEPALIVE | CHUNKED),
    (b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
     b"Content-Length: 3\r\n\r\n", HTTP11 | KEEPALIVE | CONTINUE),
    (b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n"
     b"Content-Length: 3\r\n\r\n", HTTP11 | KEEPALIVE | CONTINUE),
    (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", 0),
    (b"POST / HTTP/1.0\r\nExpect: something-else\r\n\r\n", 0),
])
def test_flags(data, flags):
    r = parse(data)
    assert r["rc"] == len(data)
    assert r["flags"] == flags


# ---------------------------------------------------------------- fragments


@pytest.mark.parametrize("data", VALID)
def test_every_prefix_is_incomplete(data):
    lim = limits()
    for end in range(len(data)):
        r = parse(data[:end], lim)
        assert r["rc"] == 0, (end, data[:end])
    assert parse(data, lim)["rc"] == len(data)


@pytest.mark.parametrize("data", VALID)
def test_byte_by_byte_with_scanned_hint(data):
    codes, r = parse_in_steps(data, list(range(1, len(data) + 1)))
    assert codes == [0] * (len(data) - 1)
    assert r == parse(data)


@pytest.mark.parametrize("data", VALID)
def test_every_single_cut_with_scanned_hint(data):
    whole = parse(data)
    for cut in range(1, len(data)):
        codes, r = parse_in_steps(data, [cut, len(data)])
        assert codes == [0]
        assert r == whole, cut


@pytest.mark.parametrize("method_len", [40, 63, 64, 65, 80, 200])
def test_long_method_token_same_whole_and_in_pieces(method_len):
    # a method is any token: whatever the verdict on a long one, it must
    # not depend on how the bytes arrived
    data = b"M" * method_len + b" / HTTP/1.1\r\nHost: h\r\n\r\n"
    whole = parse(data)
    codes, r = parse_in_steps(data, list(range(1, len(data) + 1)))
    first = next((c for c in codes + [r["rc"]] if c != 0), 0)
    assert first == whole["rc"]
    if whole["rc"] > 0:
        assert r == whole


def test_scanned_hint_is_reset_after_a_complete_head():
    head = ffi.new("fw_head *")
    scanned = ffi.new("size_t *")
    lim = limits()
    half = SIMPLE[:20]
    assert lib.fw_parse_head(half, len(half), lim, head, scanned) == 0
    assert scanned[0] == len(half)
    assert lib.fw_parse_head(SIMPLE, len(SIMPLE), lim, head, scanned) == len(SIMPLE)
    assert scanned[0] == 0


# ---------------------------------------------------------------- rejections

REQ = b"GET / HTTP/1.1\r\nHost: h\r\n"


@pytest.mark.parametrize("data,status", [
    # framing ambiguity
    (REQ + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (REQ + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    (REQ + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
    (REQ + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    (REQ + b"content-length: 5\r\nCONTENT-LENGTH: 5\r\n\r\n", 400),
    (REQ + b"Content-Length: +5\r\n\r\n", 400),
    (REQ + b"Content-Length: -5\r\n\r\n", 400),
    (REQ + b"Content-Length: 5,5\r\n\r\n", 400),
    (REQ + b"Content-Length: 5, 5\r\n\r\n", 400),
    (REQ + b"Content-Length:  \r\n\r\n", 400),
    (REQ + b"Content-Length:\r\n\r\n", 400),
    (REQ + b"Content-Length: 0x5\r\n\r\n", 400),
    (REQ + b"Content-Length: 5 5\r\n\r\n", 400),
    (REQ + b"Content-Length: 5.0\r\n\r\n", 400),
    (REQ + b"Content-Length: 1234567890123456789\r\n\r\n", 400),
    (REQ + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    (REQ + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    (REQ + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    (REQ + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (REQ + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    (REQ + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     400),
    (REQ + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (REQ + b"Transfer-Encoding: xchunked\r\n\r\n", 400),
    (REQ + b"Transfer-Encoding: chunked\x0b\r\n\r\n", 400),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    # field syntax
    (REQ + b"X-A : 1\r\n\r\n", 400),
    (REQ + b"X-A\t: 1\r\n\r\n", 400),
    (REQ + b"X-A: 1\r\n folded\r\n\r\n", 400),
    (REQ + b"X-A: 1\r\n\tfolded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400),
    (REQ + b"X@A: 1\r\n\r\n", 400),
    (REQ + b"X A: 1\r\n\r\n", 400),
    (REQ + b"X(A): 1\r\n\r\n", 400),
    (REQ + b"X-\xc3\xa9: 1\r\n\r\n", 400),
    (REQ + b": empty name\r\n\r\n", 400),
    (REQ + b"NoColon\r\n\r\n", 400),
    (REQ + b"X-A: a\rb\r\n\r\n", 400),
    (REQ + b"X-A: a\nb\r\n\r\n", 400),
    (REQ + b"X-A: a\x00b\r\n\r\n", 400),
    (REQ + b"X-A: a\x7fb\r\n\r\n", 400),
    (REQ + b"X-A: a\x01b\r\n\r\n", 400),
    # method and request line
    (b"G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"G\xc9T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400),
    (b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET /\r\nHost: h\r\n\r\n", 400),
    (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    # bare CR and bare LF
    (b"GET / HTTP/1.1\rHost: h\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\n\rX: 1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n\r\n", 400),
    (b"GET / HTTP/1.1\nHost: h\n\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\n\n", 400),
    # versions
    (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    (b"GET / HTTP/2.1\r\nHost: h\r\n\r\n", 505),
    (b"GET /p#f HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505),
    (b"GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505),
    (b"GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/11\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/1.\r\nHost: h\r\n\r\n", 400),
    (b"GET / http/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/a.b\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTPS/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET / FOO\r\nHost: h\r\n\r\n", 400),
    # Host
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX-Host: h\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400),
    (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    # expectations
    (REQ + b"Expect: something-else\r\n\r\n", 417),
    (REQ + b"Expect: 100-continue, foo\r\n\r\n", 417),
])
def test_rejected(data, status):
    assert parse(data)["rc"] == -status


def test_http10_without_host_is_fine():
    r = parse(b"GET / HTTP/1.0\r\n\r\n")
    assert r["rc"] > 0
    assert r["fields"] == []


@pytest.mark.parametrize("data,status", [
    (b"GET / HTTP/1.1\nHost: h\n", 400),       # bare LF seen before the end
    (b"G\x00T / HTTP/1.1\r\n", 400),           # junk method before the end
    (b"GET\x01", 400),
])
def test_rejected_before_the_head_is_complete(data, status):
    assert parse(data)["rc"] == -status


# ---------------------------------------------------------------- limits


def test_request_line_limit():
    target = b"/" + b"a" * 80
    line = b"GET " + target + b" HTTP/1.1"
    data = line + b"\r\nHost: h\r\n\r\n"
    assert parse(data, request_line=len(line))["rc"] == len(data)
    assert parse(data, request_line=len(line) - 1)["rc"] == -414


def test_request_line_limit_before_the_line_ends():
    data = b"GET /" + b"a" * 200
    assert parse(data, request_line=100)["rc"] == -414
    assert parse(data[:50], request_line=100)["rc"] == 0


def test_field_count_limit():
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(9))
    data = b"GET / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n"
    assert parse(data, fields=10)["rc"] == len(data)
    assert parse(data, fields=9)["rc"] == -431


def test_field_count_limit_counts_dropped_fields():
    fields = b"".join(b"X_%d: v\r\n" % i for i in range(9))
    data = b"GET / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n"
    assert parse(data, fields=9)["rc"] == -431


def test_field_size_limit():
    line = b"X-Long: " + b"v" * 100
    data = b"GET / HTTP/1.1\r\nHost: h\r\n" + line + b"\r\n\r\n"
    assert parse(data, field_size=len(line))["rc"] == len(data)
    assert parse(data, field_size=len(line) - 1)["rc"] == -431


def test_whole_head_limit():
    fields = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 50) for i in range(30))
    data = b"GET / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n"
    assert parse(data, head=len(data))["rc"] == len(data)
    assert parse(data, head=len(data) - 1)["rc"] == -431
    # an endless head fails before its end arrives
    assert parse(data[:-2], head=1024)["rc"] == -431


# ---------------------------------------------------------------- underscores


def test_underscore_fields_dropped():
    data = (b"GET / HTTP/1.1\r\nHost: h\r\nX-Auth_User: evil\r\n"
            b"X-Auth-User: good\r\n\r\n")
    r = parse(data)
    assert r["rc"] == len(data)
    assert r["fields"] == [(b"Host", b"h"), (b"X-Auth-User", b"good")]


def test_underscore_fields_kept_when_allowed():
    data = (b"GET / HTTP/1.1\r\nHost: h\r\nX-Auth_User: evil\r\n"
            b"X-Auth-User: good\r\n\r\n")
    r = parse(data, allow_underscores=1)
    assert r["fields"] == [(b"Host", b"h"), (b"X-Auth_User", b"evil"),
                           (b"X-Auth-User", b"good")]


# ---------------------------------------------------------------- chunked


def decode(pieces: list[bytes], max_line: int = 8190):
    """Feed pieces to one decoder.  Returns (rc, body, bytes consumed in
    total); stops at the first piece that finishes or fails."""
    state = ffi.new("fw_chunked *")
    consumed = ffi.new("size_t *")
    produced = ffi.new("size_t *")
    body = b""
    used = 0
    rc = 0
    for piece in pieces:
        buf = ffi.new("char[]", len(piece) or 1)
        ffi.memmove(buf, piece, len(piece))
        rc = lib.fw_chunked_decode(state, buf, len(piece), max_line,
                                   consumed, produced)
        assert consumed[0] <= len(piece)
        body += ffi.buffer(buf, produced[0])[:]
        used += consumed[0]
        if rc != 0:
            break
        assert consumed[0] == len(piece)
    return rc, body, used


def decode_all(data: bytes, max_line: int = 8190):
    return decode([data], max_line)


CHUNKED_VALID = [
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"0\r\n\r\n", b""),
    (b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n",
     b"0123456789abcdefghij"),
    (b"5;name=value\r\nhello\r\n0;last\r\n\r\n", b"hello"),
    (b"5;a=b;c=\"d e\"\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5 ;ext\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n0\r\nX-Trailer: yes\r\nOther: 1\r\n\r\n", b"hello"),
    (b"3\r\n\r\n\r\r\n0\r\n\r\n", b"\r\n\r"),
    (b"10\r\n" + bytes(range(16)) + b"\r\n0\r\n\r\n", bytes(range(16))),
]


@pytest.mark.parametrize("data,body", CHUNKED_VALID)
def test_chunked_valid(data, body):
    assert decode_all(data) == (1, body, len(data))


@pytest.mark.parametrize("data,body", CHUNKED_VALID)
def test_chunked_byte_by_byte(data, body):
    pieces = [data[i:i + 1] for i in range(len(data))]
    assert decode(pieces) == (1, body, len(data))


@pytest.mark.parametrize("data,body", CHUNKED_VALID)
def test_chunked_every_cut(data, body):
    for cut in range(1, len(data)):
        assert decode([data[:cut], data[cut:]]) == (1, body, len(data)), cut


@pytest.mark.parametrize("data,body", CHUNKED_VALID)
def test_chunked_every_prefix_is_incomplete(data, body):
    for end in range(len(data)):
        rc, got, used = decode_all(data[:end])
        assert rc == 0, end
        assert used == end
        assert body.startswith(got)


def test_chunked_stops_at_the_end_of_the_body():
    data = b"5\r\nhello\r\n0\r\n\r\n"
    rc, body, used = decode_all(data + b"GET / HTTP/1.1\r\n")
    assert (rc, body, used) == (1, b"hello", len(data))


@pytest.mark.parametrize("data", [
    b"x\r\nhello\r\n0\r\n\r\n",                 # not hex
    b"5x\r\nhello\r\n0\r\n\r\n",
    b"\r\nhello\r\n0\r\n\r\n",                  # empty size
    b";ext\r\n\r\n",                            # empty size with an extension
    b"-5\r\nhello\r\n0\r\n\r\n",                # negative
    b"+5\r\nhello\r\n0\r\n\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b" 5\r\nhello\r\n0\r\n\r\n",                # leading space
    b"ffffffffffffffffffff\r\n",                # overflow (20 hex digits)
    b"10000000000000000\r\n",                   # 2**64
    b"5\r\nhelloX\r\n0\r\n\r\n",                # data longer than the size
    b"5\r\nhello0\r\n\r\n",                     # missing CRLF after data
    b"5\r\nhello\n0\r\n\r\n",                   # bare LF after data
    b"5\r\nhello\rX0\r\n\r\n",
    b"5\nhello\r\n0\r\n\r\n",                   # bare LF after the size
    b"5\rhello\r\n0\r\n\r\n",                   # bare CR after the size
    b"5;ext\x00\r\nhello\r\n0\r\n\r\n",         # NUL in an extension
    b"5\r\nhello\r\n0\r\n folded\r\n\r\n",      # obs-fold in trailers
    b"5\r\nhello\r\n0\r\nX\x00: 1\r\n\r\n",     # NUL in a trailer
    b"5\r\nhello\r\n0\r\nX: 1\n\r\n",           # bare LF ending a trailer
    b"5\r\nhello\r\n0\r\n\n",                   # bare LF ending the body
    b"5\r\nhello\r\n0\r\n\rX",
])
def test_chunked_invalid(data):
    assert decode_all(data)[0] == -400
    pieces = [data[i:i + 1] for i in range(len(data))]
    assert decode(pieces)[0] == -400


def test_chunked_long_lines_rejected():
    ext = b"5;" + b"e" * 200 + b"\r\nhello\r\n0\r\n\r\n"
    assert decode_all(ext, max_line=100)[0] == -400
    assert decode_all(ext, max_line=1000)[0] == 1
    trailer = b"0\r\nX: " + b"t" * 200 + b"\r\n\r\n"
    assert decode_all(trailer, max_line=100)[0] == -400
    assert decode_all(trailer, max_line=1000)[0] == 1


def test_chunked_large_size_waits_for_data():
    # a big but valid size: the decoder simply wants more bytes
    data = b"7fffffff\r\n" + b"x" * 1000
    rc, body, used = decode_all(data)
    assert (rc, body, used) == (0, b"x" * 1000, len(data))


# ---------------------------------------------------------------- properties

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "0123456789-!#$%&'*+.^`|~", min_size=1, max_size=12)
value = st.text(alphabet="".join(chr(c) for c in range(0x21, 0x7f)),
                max_size=30)
path = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-._~%=&?",
               max_size=40)
# uri-host [":" port]: what a Host field may hold (RFC 9110 7.2)
host = st.builds(lambda name, port: name + port,
                 st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=",
                         max_size=30),
                 st.one_of(st.just(""), st.integers(0, 65535).map(lambda p: f":{p}")))


@st.composite
def requests_(draw):
    method = draw(st.one_of(
        st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE"]),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ-_", min_size=1,
                max_size=40)))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    lines = [f"{method} /{draw(path)} {version}"]
    if version == "HTTP/1.1":
        lines.append("Host: " + draw(host))
    names = draw(st.lists(token, max_size=8))
    for name in names:
        if name.lower() in ("host", "content-length", "transfer-encoding",
                            "expect", "connection"):
            continue
        lines.append(f"{name}: {draw(value)}")
    if draw(st.booleans()):
        lines.append(f"Content-Length: {draw(st.integers(0, 10**12))}")
    elif version == "HTTP/1.1" and draw(st.booleans()):
        lines.append("Transfer-Encoding: chunked")
    if draw(st.booleans()):
        lines.append("Connection: " + draw(st.sampled_from(
            ["close", "keep-alive", "Keep-Alive, Upgrade"])))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def cuts_of(data_len: int):
    return st.lists(st.integers(1, max(1, data_len - 1)), max_size=6).map(
        lambda xs: sorted(set(xs)))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_splits_parse_identically(data):
    req = data.draw(requests_())
    whole = parse(req)
    assert whole["rc"] == len(req)
    cuts = [c for c in data.draw(cuts_of(len(req))) if c < len(req)]
    codes, r = parse_in_steps(req, cuts + [len(req)])
    assert codes == [0] * len(cuts)
    assert r == whole


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=6), st.data())
def test_random_splits_decode_identically(chunks, data):
    wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    cuts = [c for c in data.draw(cuts_of(len(wire))) if c < len(wire)]
    bounds = [0, *cuts, len(wire)]
    pieces = [wire[a:b] for a, b in zip(bounds, bounds[1:])]
    assert decode(pieces) == (1, b"".join(chunks), len(wire))


@pytest.mark.parametrize("host", [
    b"example.com", b"example.com:8080", b"127.0.0.1:80", b"[::1]", b"[::1]:8000",
    b"my-host_1.example", b"xn--bcher-kva.example", b"h%41", b"a!$&'()*+,;=b", b"",
])
def test_valid_host_values_are_accepted(host):
    assert parse(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")["rc"] > 0


@pytest.mark.parametrize("host", [
    b"a/b", b"a@b", b"a?b", b"a#b", b"a b", b"h:80x", b"h:8:0", b"[::1", b"[]",
    b"[::1]x", b"h%4", b"h%zz", b'a"b', b"a|b", b"a^b", b"a`b", b"[g::1]",
])
def test_invalid_host_values_are_refused(host):
    """RFC 9110 7.2: a Host that is not uri-host [":" port] gets 400."""
    assert parse(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")["rc"] == -400


@pytest.mark.parametrize("authority", [b"h:80x", b"h%zz", b"[::1", b"h:1:2", b"a|b"])
def test_invalid_absolute_form_authority_is_refused(authority):
    target = b"http://" + authority + b"/p"
    assert parse(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")["rc"] == -400


@pytest.mark.parametrize("body", [b"5 \r\nhello\r\n0\r\n\r\n", b"5\t\r\nhello\r\n0\r\n\r\n",
                                  b"5\r\nhello\r\n0 \r\n\r\n"])
def test_whitespace_after_a_chunk_size_without_extension_is_refused(body):
    """RFC 9112 7.1.1: BWS only before ';' of an extension."""
    assert decode_all(body)[0] == -400
    # byte by byte the same
    assert decode([body[i:i + 1] for i in range(len(body))])[0] == -400


def test_whitespace_before_a_chunk_extension_is_kept():
    assert decode_all(b"5 ;x=1\r\nhello\r\n0\r\n\r\n")[:2] == (1, b"hello")


@pytest.mark.parametrize("name", [b"Content-Length", b"transfer-encoding", b"HOST",
                                  b"Authorization", b"Content-Type", b"Cookie", b"TE"])
def test_fields_that_must_not_be_trailers_are_refused(name):
    """RFC 9110 6.5.1: framing, routing, control, authentication and
    content format cannot come after the content."""
    body = b"5\r\nhello\r\n0\r\n" + name + b": x\r\n\r\n"
    assert decode_all(body)[0] == -400
    assert decode([body[i:i + 1] for i in range(len(body))])[0] == -400


@pytest.mark.parametrize("name", [b"X-Checksum", b"Server-Timing", b"Content-Lengthy",
                                  b"X-" + b"a" * 40, b"Hos"])
def test_other_trailers_are_accepted_and_dropped(name):
    assert decode_all(b"5\r\nhello\r\n0\r\n" + name + b": x\r\n\r\n")[:2] == (1, b"hello")


def test_a_repeated_content_type_is_refused():
    """One value only (RFC 9110 8.3): two are refused like two Hosts."""
    data = (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
            b"content-type: application/json\r\nContent-Length: 0\r\n\r\n")
    assert parse(data)["rc"] == -400
