#!/usr/bin/env python3
"""Write the seed corpus of fuzz_http1 into fuzz/corpus/.

Each seed is two control bytes (see the top of fuzz_http1.c) followed by
what a client sends.  Run it again after editing the list; it replaces the
directory's contents.
"""

from __future__ import annotations

import shutil
from pathlib import Path

# Control byte 0: limits profile in bits 0-1, allow_underscores in bit 2,
# body-only mode in bit 3, chunked max_line in bits 4-5.
DEFAULTS = 0x40      # server defaults, requests
TINY = 0x41          # tiny limits
SMALLEST = 0x42      # smallest allowed settings
MANY = 0x43          # field limit above what the parser stores
UNDERSCORES = 0x44   # allow_underscores
BODY = 0x48          # a chunked body on its own, max_line 8190
BODY_SHORT = 0x68    # a chunked body, max_line 5

# Control byte 1: 0 feeds one byte at a time; otherwise the top two bits
# choose pieces of 1-3, 1-16, 1-64 or 1-700 bytes.
BYTEWISE = 0x00
SMALL = 0x31
MEDIUM = 0x61
LARGE = 0xC1

H = b"Host: example.com\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"


def req(line: bytes, *fields: bytes, body: bytes = b"") -> bytes:
    return line + b"\r\n" + b"".join(fields) + b"\r\n" + body


SEEDS: list[tuple[str, int, int, bytes]] = [
    # well-formed requests
    ("get-minimal", DEFAULTS, BYTEWISE, req(b"GET / HTTP/1.1", H)),
    ("get-http10", DEFAULTS, SMALL, req(b"GET / HTTP/1.0")),
    ("http10-keepalive", DEFAULTS, MEDIUM,
     req(b"GET /x HTTP/1.0", b"Connection: keep-alive\r\n")),
    ("connection-list", DEFAULTS, SMALL,
     req(b"GET / HTTP/1.1", H, b"Connection: , ,Keep-Alive, close ,\r\n")),
    ("head-method", DEFAULTS, BYTEWISE, req(b"HEAD /h HTTP/1.1", H)),
    ("query-string", DEFAULTS, MEDIUM,
     req(b"GET /p/a%20b?q=1&r=%2F&&x HTTP/1.1", H)),
    ("query-empty", DEFAULTS, SMALL, req(b"GET /? HTTP/1.1", H)),
    ("method-token", DEFAULTS, SMALL,
     req(b"M-SEARCH * HTTP/1.1", H, b"MAN: \"ssdp:discover\"\r\n")),
    ("method-lowercase", DEFAULTS, SMALL, req(b"get / HTTP/1.1", H)),
    ("value-whitespace", DEFAULTS, MEDIUM,
     req(b"GET / HTTP/1.1", H, b"X-A: \t  inner  space \t \r\n",
         b"X-Empty:\r\n", b"X-Tabs:\t\t\r\n")),
    ("post-content-length", DEFAULTS, MEDIUM,
     req(b"POST /form HTTP/1.1", H, b"Content-Length: 11\r\n",
         b"Content-Type: text/plain\r\n", body=b"hello world")),
    ("content-length-zeros", DEFAULTS, SMALL,
     req(b"PUT /z HTTP/1.1", H, b"Content-Length: 0003\r\n", body=b"abc")),
    ("post-chunked", DEFAULTS, MEDIUM,
     req(b"POST /up HTTP/1.1", H, CHUNKED,
         body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")),
    ("chunked-extensions", DEFAULTS, SMALL,
     req(b"POST /up HTTP/1.1", H, CHUNKED,
         body=b"5;name=value;q=\"a b\"\r\nhello\r\nA ; x\r\n0123456789\r\n"
              b"0;last\r\n\r\n")),
    ("chunked-trailers", DEFAULTS, BYTEWISE,
     req(b"POST /up HTTP/1.1", H, CHUNKED,
         body=b"3\r\nabc\r\n0\r\nX-Sum: 3\r\nX-Other: a b\r\n\r\n")),
    ("chunked-uppercase-hex", DEFAULTS, MEDIUM,
     req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: ChUnKeD\r\n",
         body=b"00000000000000000000B\r\nhello world\r\n000\r\n\r\n")),
    ("expect-continue", DEFAULTS, SMALL,
     req(b"POST /e HTTP/1.1", H, b"Expect: 100-Continue\r\n",
         b"Content-Length: 2\r\n", body=b"ok")),
    ("absolute-form", DEFAULTS, MEDIUM,
     req(b"GET http://example.com:8080/a/b?c=d HTTP/1.1", H)),
    ("absolute-form-no-path", DEFAULTS, SMALL,
     req(b"GET https://example.com?x HTTP/1.1", H)),
    ("asterisk-form", DEFAULTS, SMALL, req(b"OPTIONS * HTTP/1.1", H)),
    ("authority-form", DEFAULTS, SMALL,
     req(b"CONNECT example.com:443 HTTP/1.1", b"Host: example.com:443\r\n")),
    ("leading-empty-lines", DEFAULTS, BYTEWISE,
     b"\r\n\r\n" + req(b"GET / HTTP/1.1", H)),
    ("obs-text-value", DEFAULTS, MEDIUM,
     req(b"GET / HTTP/1.1", H, b"X-Name: caf\xc3\xa9 \xff\x80\r\n")),
    ("underscore-dropped", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Content_Length: 4\r\n", b"X_A: 1\r\n")),
    ("underscore-kept", UNDERSCORES, SMALL,
     req(b"GET / HTTP/1.1", H, b"X_Auth_User: admin\r\n")),
    # pipelining
    ("pipelined-gets", DEFAULTS, LARGE,
     req(b"GET /1 HTTP/1.1", H) + req(b"GET /2 HTTP/1.1", H)
     + req(b"GET /3 HTTP/1.1", H, b"Connection: close\r\n")),
    ("pipelined-bodies", DEFAULTS, MEDIUM,
     req(b"POST /a HTTP/1.1", H, b"Content-Length: 3\r\n", body=b"abc")
     + req(b"POST /b HTTP/1.1", H, CHUNKED, body=b"2\r\nde\r\n0\r\n\r\n")
     + req(b"GET /c HTTP/1.0")),
    ("pipelined-crlf-between", DEFAULTS, SMALL,
     req(b"POST /a HTTP/1.1", H, b"Content-Length: 1\r\n", body=b"x")
     + b"\r\n" + req(b"GET /b HTTP/1.1", H)),
    # ambiguous framing
    ("cl-te", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Content-Length: 4\r\n", CHUNKED,
         body=b"0\r\n\r\n")),
    ("te-cl", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, CHUNKED, b"Content-Length: 4\r\n",
         body=b"0\r\n\r\n")),
    ("cl-duplicate-same", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Content-Length: 3\r\n",
         b"Content-Length: 3\r\n", body=b"abc")),
    ("cl-duplicate-different", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Content-Length: 3\r\n",
         b"content-length: 13\r\n", body=b"abc")),
    ("cl-list", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Content-Length: 3, 3\r\n", body=b"abc")),
    ("cl-sign", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Content-Length: +3\r\n", body=b"abc")),
    ("cl-hex", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Content-Length: 0x3\r\n", body=b"abc")),
    ("cl-19-digits", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Content-Length: 1000000000000000000\r\n")),
    ("te-http10", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.0", CHUNKED, body=b"0\r\n\r\n")),
    ("te-gzip-chunked", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: gzip, chunked\r\n",
         body=b"0\r\n\r\n")),
    ("te-chunked-gzip", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: chunked, gzip\r\n",
         body=b"0\r\n\r\n")),
    ("te-chunked-twice", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: chunked, chunked\r\n",
         body=b"0\r\n\r\n")),
    ("te-two-fields", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: identity\r\n", CHUNKED,
         body=b"0\r\n\r\n")),
    ("te-empty-elements", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: ,chunked,\r\n",
         body=b"0\r\n\r\n")),
    ("te-space-before-colon", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Transfer-Encoding : chunked\r\n",
         body=b"0\r\n\r\n")),
    ("te-vertical-tab", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: \x0bchunked\r\n",
         body=b"0\r\n\r\n")),
    ("te-quoted", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: \"chunked\"\r\n",
         body=b"0\r\n\r\n")),
    # line structure
    ("obs-fold", DEFAULTS, SMALL,
     req(b"GET / HTTP/1.1", H, b"X-Folded: a\r\n  b\r\n")),
    ("obs-fold-first", DEFAULTS, SMALL,
     req(b"GET / HTTP/1.1", b" Host: example.com\r\n")),
    ("obs-fold-te", DEFAULTS, SMALL,
     req(b"POST / HTTP/1.1", H, b"Transfer-Encoding:\r\n chunked\r\n",
         body=b"0\r\n\r\n")),
    ("bare-lf", DEFAULTS, BYTEWISE,
     b"GET / HTTP/1.1\nHost: example.com\n\n"),
    ("bare-lf-end", DEFAULTS, SMALL,
     b"GET / HTTP/1.1\r\nHost: example.com\r\n\n"),
    ("bare-cr", DEFAULTS, SMALL, b"GET / HTTP/1.1\rHost: a\r\n\r\n"),
    ("cr-cr-lf", DEFAULTS, SMALL, b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n"),
    ("cr-at-line-start", DEFAULTS, SMALL,
     b"GET / HTTP/1.1\r\nHost: a\r\n\rX: b\r\n\r\n"),
    ("nul-in-value", DEFAULTS, SMALL,
     req(b"GET / HTTP/1.1", H, b"X-A: a\x00b\r\n")),
    ("nul-in-target", DEFAULTS, SMALL, req(b"GET /a\x00b HTTP/1.1", H)),
    ("ctl-in-value", DEFAULTS, SMALL,
     req(b"GET / HTTP/1.1", H, b"X-A: a\x01\x7fb\r\n")),
    ("del-in-value", DEFAULTS, SMALL,
     req(b"GET / HTTP/1.1", H, b"X-A: a\x7fb\r\n")),
    ("non-ascii-target", DEFAULTS, SMALL, req(b"GET /caf\xc3\xa9 HTTP/1.1", H)),
    ("non-ascii-name", DEFAULTS, SMALL,
     req(b"GET / HTTP/1.1", H, b"X-\xc3\xa9: 1\r\n")),
    ("empty-name", DEFAULTS, SMALL, req(b"GET / HTTP/1.1", H, b": x\r\n")),
    ("space-before-method", DEFAULTS, SMALL, b" " + req(b"GET / HTTP/1.1", H)),
    ("double-space", DEFAULTS, SMALL, req(b"GET  / HTTP/1.1", H)),
    ("tab-separator", DEFAULTS, SMALL, req(b"GET\t/ HTTP/1.1", H)),
    ("trailing-space-version", DEFAULTS, SMALL, req(b"GET / HTTP/1.1 ", H)),
    # versions
    ("http2-preface", DEFAULTS, SMALL, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ("http09", DEFAULTS, SMALL, b"GET /\r\n\r\n"),
    ("version-lowercase", DEFAULTS, SMALL, req(b"GET / http/1.1", H)),
    ("version-two-digits", DEFAULTS, SMALL, req(b"GET / HTTP/1.10", H)),
    ("version-3", DEFAULTS, SMALL, req(b"GET / HTTP/3.0", H)),
    # Host and Expect
    ("host-missing", DEFAULTS, SMALL, req(b"GET / HTTP/1.1", b"X: y\r\n")),
    ("host-duplicate", DEFAULTS, SMALL,
     req(b"GET / HTTP/1.1", H, b"host: other.example\r\n")),
    ("host-empty", DEFAULTS, SMALL, req(b"GET / HTTP/1.1", b"Host:\r\n")),
    ("expect-other", DEFAULTS, SMALL,
     req(b"PUT / HTTP/1.1", H, b"Expect: 200-ok\r\n")),
    ("expect-http10", DEFAULTS, SMALL,
     req(b"PUT / HTTP/1.0", b"Expect: 100-continue\r\n",
         b"Content-Length: 1\r\n", body=b"x")),
    # limits
    ("long-request-line", DEFAULTS, LARGE,
     req(b"GET /" + b"a" * 8200 + b" HTTP/1.1", H)),
    ("long-line-tiny", TINY, SMALL,
     req(b"GET /0123456789abcdef0123 HTTP/1.1", H)),
    ("long-field-tiny", TINY, SMALL,
     req(b"GET / HTTP/1.1", b"Host: a\r\n", b"X-Long: 0123456789abcdef\r\n")),
    ("many-fields-tiny", TINY, MEDIUM,
     req(b"GET / HTTP/1.1", b"Host: a\r\n", b"A: 1\r\n", b"B: 2\r\n",
         b"C: 3\r\n")),
    ("one-field-smallest", SMALLEST, SMALL,
     req(b"GET / HTTP/1.1", b"Host: a\r\n", b"A: 1\r\n")),
    ("fields-over-cap", MANY, LARGE,
     req(b"GET / HTTP/1.1", H, *[b"X%d: v\r\n" % i for i in range(300)])),
    # chunked bodies on their own
    ("body-simple", BODY, BYTEWISE, b"5\r\nhello\r\n0\r\n\r\n"),
    ("body-extensions", BODY, SMALL,
     b"4;a=b;c\r\nwiki\r\n5 ;x=\"y z\"\r\npedia\r\n0\r\n\r\n"),
    ("body-whitespace-size", BODY, SMALL, b"5 \t\r\nhello\r\n0\t\r\n\r\n"),
    ("body-trailers", BODY, MEDIUM,
     b"1\r\nx\r\n0\r\nExpires: never\r\nX-A: 1\r\n\r\nGET"),
    ("body-trailer-fold", BODY, SMALL, b"0\r\nX-A: 1\r\n  2\r\n\r\n"),
    ("body-bare-lf", BODY, SMALL, b"5\nhello\n0\n\n"),
    ("body-missing-crlf", BODY, SMALL, b"5\r\nhelloX0\r\n\r\n"),
    ("body-size-overflow", BODY, SMALL, b"fffffffffffffffff\r\n"),
    ("body-size-big", BODY, SMALL, b"7fffffffffffffff\r\nabc"),
    ("body-size-prefix", BODY, SMALL, b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("body-size-negative", BODY, SMALL, b"-1\r\nx\r\n0\r\n\r\n"),
    ("body-leading-space", BODY, SMALL, b" 5\r\nhello\r\n0\r\n\r\n"),
    ("body-empty-size", BODY, SMALL, b"\r\nhello\r\n0\r\n\r\n"),
    ("body-nul-extension", BODY, SMALL, b"1;\x00\r\nx\r\n0\r\n\r\n"),
    ("body-del-extension", BODY, SMALL, b"1;a\x7f\r\nx\r\n0\r\n\r\n"),
    ("body-del-trailer", BODY, SMALL, b"0\r\nX-A: \x7f\r\n\r\n"),
    ("body-short-lines", BODY_SHORT, BYTEWISE,
     b"00005\r\nhello\r\n0;abcdef\r\nX: y\r\n\r\n"),
    ("body-data-with-crlf", BODY, MEDIUM,
     b"4\r\n\r\n\r\n\r\n0\r\n\r\n"),
]


def main() -> None:
    out = Path(__file__).resolve().parent / "corpus"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    names = set()
    for name, cfg, seed, payload in SEEDS:
        assert name not in names, name
        names.add(name)
        (out / name).write_bytes(bytes([cfg, seed]) + payload)
    print(f"{len(SEEDS)} seeds in {out}")


if __name__ == "__main__":
    main()
