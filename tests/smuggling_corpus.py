"""Hostile request framings and what fastwsgi must answer to each.

Every entry is a request to the router's /body (which echoes the request
body) whose framing is ambiguous, obfuscated or malformed: the kinds of
message on which two HTTP parsers (a proxy and this server, say) may
disagree about where a request ends, so that bytes one of them takes for
body the other runs as a request of its own.

tests/test_hostile.py sends each entry followed, in the same packet, by the
hidden request SMUGGLED, and checks the expected outcome:

* an int: that error status, then the connection closes, and nothing
  after the error is read as a request;
* Accepted(body): a 200 whose body is exactly `body`.  Accepted entries all
  carry "Connection: close", so nothing after them may run either.

Either way the router must never see /smuggled.  Many entries put SMUGGLED
inside the body as well, where a parser that ends the body early would run
it.
"""

from __future__ import annotations

from typing import NamedTuple

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
assert len(SMUGGLED) == 0x23

POST = b"POST /body HTTP/1.1\r\nHost: t\r\n"
CLOSE = b"Connection: close\r\n"
CL_SMUGGLED = b"Content-Length: 35\r\n"
# a chunked body whose one chunk is the hidden request
CHUNKED_SMUGGLED = b"23\r\n" + SMUGGLED + b"\r\n0\r\n\r\n"
# what ends a chunked body at once, with the hidden request after it
EMPTY_CHUNKED_THEN = b"0\r\n\r\n" + SMUGGLED


class Accepted(NamedTuple):
    body: bytes


class Case(NamedTuple):
    name: str
    data: bytes
    expect: int | Accepted
    why: str


def te(value: bytes, body: bytes = CHUNKED_SMUGGLED, extra: bytes = b"") -> bytes:
    """A chunked-looking POST with the given Transfer-Encoding line."""
    return POST + extra + value + b"\r\n\r\n" + body


def te_cl(value: bytes) -> bytes:
    """Transfer-Encoding (as given) next to a Content-Length that covers
    an empty chunked body plus the hidden request."""
    body = EMPTY_CHUNKED_THEN
    return POST + b"Content-Length: %d\r\n" % len(body) + value + b"\r\n\r\n" + body


CASES: list[Case] = [
    # ---- Content-Length and Transfer-Encoding together (CL.TE / TE.CL)
    Case("cl-te", te_cl(b"Transfer-Encoding: chunked"), 400,
         "both framings: never pick one"),
    Case("te-cl", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
         + b"5c\r\n" + SMUGGLED, 400, "both framings, TE first"),
    Case("cl-te-upper-value", te_cl(b"Transfer-Encoding: CHUNKED"), 400,
         "coding names are case-insensitive: still both"),
    Case("cl-te-odd-case-name", te_cl(b"tRaNsFeR-eNcOdInG: chunked"), 400,
         "field names are case-insensitive"),
    Case("cl-te-leading-space", te_cl(b"Transfer-Encoding:  chunked"), 400,
         "optional whitespace is not part of the value"),
    Case("cl-te-trailing-space", te_cl(b"Transfer-Encoding: chunked  "), 400,
         "trailing whitespace is not part of the value"),
    Case("cl-te-tab", te_cl(b"Transfer-Encoding:\tchunked"), 400,
         "a tab is optional whitespace too"),
    Case("cl-te-no-space", te_cl(b"Transfer-Encoding:chunked"), 400,
         "no whitespace at all"),
    Case("cl-te-xchunked", te_cl(b"Transfer-Encoding: xchunked"), 400,
         "an unknown coding as the last one: the length is unknowable"),
    Case("cl-te-identity", te_cl(b"Transfer-Encoding: identity"), 400,
         "any Transfer-Encoding with a Content-Length is refused"),
    Case("cl-te-obs-fold", POST + b"Content-Length: 40\r\nTransfer-Encoding:\r\n chunked"
         b"\r\n\r\n" + EMPTY_CHUNKED_THEN, 400, "obs-fold hides chunked on a next line"),
    Case("cl-te-fold-in-other-field", POST + b"Content-Length: 40\r\nX-A: b\r\n"
         b" Transfer-Encoding: chunked\r\n\r\n" + EMPTY_CHUNKED_THEN, 400,
         "a folded line that looks like a field"),
    Case("cl-te-space-before-colon", te_cl(b"Transfer-Encoding : chunked"), 400,
         "whitespace before the colon"),
    Case("cl-te-nul-in-name", te_cl(b"Transfer-Encoding\x00: chunked"), 400,
         "NUL in a field name"),
    Case("cl-te-cr-in-value", te_cl(b"X-A: b\rTransfer-Encoding: chunked"), 400,
         "a bare CR that some parsers take for a line end"),
    Case("cl-te-lf-line-end", POST + b"Content-Length: 40\r\n"
         b"Transfer-Encoding: chunked\n\r\n" + EMPTY_CHUNKED_THEN, 400,
         "a bare LF line end"),
    Case("cl-te-in-chunked-and-cl", te_cl(b"Transfer-Encoding: chunked\r\n"
                                          b"Transfer-Encoding: chunked"), 400,
         "chunked twice, and a Content-Length"),
    # ---- Transfer-Encoding alone, obfuscated
    Case("te-upper-value", te(b"Transfer-Encoding: CHUNKED", extra=CLOSE),
         Accepted(SMUGGLED), "CHUNKED is chunked"),
    Case("te-padded", te(b"Transfer-Encoding: \t chunked \t", extra=CLOSE),
         Accepted(SMUGGLED), "whitespace around the value is not part of it"),
    Case("te-xchunked", te(b"Transfer-Encoding: xchunked"), 400,
         "the last coding is not chunked: the length cannot be known"),
    Case("te-chunked-identity", te(b"Transfer-Encoding: chunked, identity"), 400,
         "chunked must be the last coding"),
    Case("te-identity-chunked", te(b"Transfer-Encoding: identity, chunked"), 501,
         "a coding before chunked that is not decoded"),
    Case("te-gzip-chunked", te(b"Transfer-Encoding: gzip, chunked"), 501,
         "a coding before chunked that is not decoded"),
    Case("te-chunked-twice", te(b"Transfer-Encoding: chunked, chunked"), 400,
         "chunked applied twice"),
    Case("te-two-fields", te(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"),
         400, "chunked twice in two fields"),
    Case("te-two-fields-identity-last", te(b"Transfer-Encoding: chunked\r\n"
                                           b"Transfer-Encoding: identity"), 400,
         "the second field makes identity the last coding"),
    Case("te-two-fields-gzip-first", te(b"Transfer-Encoding: gzip\r\n"
                                        b"Transfer-Encoding: chunked"), 501,
         "the fields combine into gzip, chunked"),
    Case("te-trailing-comma", te(b"Transfer-Encoding: chunked,"), 400,
         "an empty last list element: refused, not guessed"),
    Case("te-empty-middle", te(b"Transfer-Encoding: gzip, , chunked"), 400,
         "an empty element between codings"),
    Case("te-leading-comma", te(b"Transfer-Encoding: , chunked"), 400,
         "an empty list element"),
    Case("te-comma-only", te(b"Transfer-Encoding: ,"), 400, "only an empty element"),
    Case("te-empty", te(b"Transfer-Encoding: "), 400, "no coding at all"),
    Case("te-quoted", te(b'Transfer-Encoding: "chunked"'), 400, "a quoted coding"),
    Case("te-parameter", te(b"Transfer-Encoding: chunked;q=1"), 400,
         "chunked takes no parameters"),
    Case("te-space-inside", te(b"Transfer-Encoding: chun ked"), 400,
         "a coding is a token"),
    Case("te-vertical-tab", te(b"Transfer-Encoding: chunked\x0b"), 400,
         "a control byte in the value"),
    Case("te-nbsp", te(b"Transfer-Encoding: \xa0chunked"), 400,
         "a no-break space is not whitespace"),
    Case("te-nul", te(b"Transfer-Encoding: chunked\x00"), 400, "NUL in the value"),
    Case("te-obs-fold", te(b"Transfer-Encoding: gzip,\r\n chunked"), 400,
         "obs-fold inside the value"),
    Case("te-http10", b"POST /body HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
         + CHUNKED_SMUGGLED, 400, "HTTP/1.0 has no chunked requests"),
    Case("te-http10-keepalive", b"POST /body HTTP/1.0\r\nConnection: keep-alive\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_SMUGGLED, 400,
         "not even with keep-alive"),
    Case("te-lookalike-name", POST + CLOSE + b"Content-Length: 40\r\n"
         b"Transfer-Encodings: chunked\r\n\r\n" + EMPTY_CHUNKED_THEN,
         Accepted(EMPTY_CHUNKED_THEN), "another field: the Content-Length frames it"),
    Case("te-prefixed-name", POST + CLOSE + b"Content-Length: 40\r\n"
         b"X-Transfer-Encoding: chunked\r\n\r\n" + EMPTY_CHUNKED_THEN,
         Accepted(EMPTY_CHUNKED_THEN), "another field: the Content-Length frames it"),
    Case("te-in-trailer", POST + CLOSE + b"Transfer-Encoding: chunked\r\n\r\n"
         b"23\r\n" + SMUGGLED + b"\r\n0\r\nTransfer-Encoding: chunked\r\n"
         b"Content-Length: 0\r\n\r\n", 400,
         "framing fields may not be trailers (RFC 9110 6.5.1): refused"),
    # ---- underscores: never used for framing
    Case("te-underscore-with-cl", POST + CLOSE + b"Content-Length: 40\r\n"
         b"Transfer_Encoding: chunked\r\n\r\n" + EMPTY_CHUNKED_THEN,
         Accepted(EMPTY_CHUNKED_THEN), "Transfer_Encoding is dropped: the CL frames it"),
    Case("te-underscore-alone", POST + CLOSE + b"Transfer_Encoding: chunked\r\n\r\n"
         + CHUNKED_SMUGGLED, Accepted(b""), "dropped: no body at all"),
    Case("te-underscore-next-to-te", POST + CLOSE + b"Transfer_Encoding: identity\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_SMUGGLED, Accepted(SMUGGLED),
         "the underscore field does not combine with the real one"),
    Case("cl-underscore-alone", POST + CLOSE + b"Content_Length: 35\r\n\r\n" + SMUGGLED,
         Accepted(b""), "Content_Length is dropped: no body"),
    Case("cl-underscore-then-cl", POST + CLOSE + b"Content_Length: 0\r\n" + CL_SMUGGLED
         + b"\r\n" + SMUGGLED, Accepted(SMUGGLED), "no duplicate: the first is dropped"),
    Case("cl-then-cl-underscore", POST + CLOSE + CL_SMUGGLED + b"Content_Length: 0\r\n\r\n"
         + SMUGGLED, Accepted(SMUGGLED), "no duplicate: the second is dropped"),
    Case("cl-underscore-with-te", POST + CLOSE + b"Content_Length: 5\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_SMUGGLED, Accepted(SMUGGLED),
         "no CL.TE conflict: the underscore field is not a Content-Length"),
    # ---- Content-Length alone: duplicates and malformed values
    Case("cl-twice-same", POST + CL_SMUGGLED + CL_SMUGGLED + b"\r\n" + SMUGGLED, 400,
         "two Content-Length fields, even equal"),
    Case("cl-twice-different", POST + b"Content-Length: 0\r\n" + CL_SMUGGLED + b"\r\n"
         + SMUGGLED, 400, "two different lengths"),
    Case("cl-list", POST + b"Content-Length: 35, 35\r\n\r\n" + SMUGGLED, 400,
         "a list of lengths"),
    Case("cl-list-different", POST + b"Content-Length: 0, 35\r\n\r\n" + SMUGGLED, 400,
         "a list of different lengths"),
    Case("cl-plus", POST + b"Content-Length: +35\r\n\r\n" + SMUGGLED, 400, "a sign"),
    Case("cl-negative", POST + b"Content-Length: -35\r\n\r\n" + SMUGGLED, 400,
         "a negative length"),
    Case("cl-hex", POST + b"Content-Length: 0x23\r\n\r\n" + SMUGGLED, 400, "hex"),
    Case("cl-space-inside", POST + b"Content-Length: 3 5\r\n\r\n" + SMUGGLED, 400,
         "a space between digits"),
    Case("cl-empty", POST + b"Content-Length:\r\n\r\n" + SMUGGLED, 400, "no digits"),
    Case("cl-overflow", POST + b"Content-Length: 18446744073709551651\r\n\r\n" + SMUGGLED,
         400, "2^64 + 35: wraps to 35 in 64 bits"),
    Case("cl-fullwidth-digits", POST + "Content-Length: ３５\r\n\r\n".encode() + SMUGGLED,
         400, "digits outside ASCII"),
    Case("cl-nul", POST + b"Content-Length: 35\x00\r\n\r\n" + SMUGGLED, 400,
         "NUL after the digits"),
    Case("cl-space-before-colon", POST + b"Content-Length : 35\r\n\r\n" + SMUGGLED, 400,
         "whitespace before the colon"),
    Case("cl-obs-fold", POST + b"Content-Length: 3\r\n 5\r\n\r\n" + SMUGGLED, 400,
         "a folded value"),
    Case("cl-leading-zeros", POST + CLOSE + b"Content-Length: 0035\r\n\r\n" + SMUGGLED,
         Accepted(SMUGGLED), "decimal with leading zeros, not octal"),
    Case("cl-trailing-space", POST + CLOSE + b"Content-Length: 35 \r\n\r\n" + SMUGGLED,
         Accepted(SMUGGLED), "trailing whitespace is not part of the value"),
    Case("cl-on-get", b"GET /body HTTP/1.1\r\nHost: t\r\n" + CLOSE + CL_SMUGGLED + b"\r\n"
         + SMUGGLED, Accepted(SMUGGLED), "a GET with a body: the body is read"),
    Case("cl-connection-option", POST + b"Connection: close, Content-Length\r\n"
         + CL_SMUGGLED + b"\r\n" + SMUGGLED, Accepted(SMUGGLED),
         "naming Content-Length as a connection option does not remove it"),
    Case("cl-too-large", POST + b"Content-Length: 2000000000\r\n\r\n" + SMUGGLED, 413,
         "over max_body_size: refused before the body is read"),
    # ---- chunk sizes and chunk lines
    Case("chunk-leading-zeros", te(b"Transfer-Encoding: chunked", extra=CLOSE,
                                   body=b"00000023\r\n" + SMUGGLED + b"\r\n000\r\n\r\n"),
         Accepted(SMUGGLED), "leading zeros are still hex"),
    Case("chunk-upper-hex", te(b"Transfer-Encoding: chunked", extra=CLOSE,
                               body=b"2A\r\n" + SMUGGLED + b"1234567\r\n0\r\n\r\n"),
         Accepted(SMUGGLED + b"1234567"), "upper-case hex digits"),
    Case("chunk-0x", te(b"Transfer-Encoding: chunked", body=b"0x23\r\n" + SMUGGLED
                        + b"\r\n0\r\n\r\n"), 400, "a 0x prefix"),
    Case("chunk-0X", te(b"Transfer-Encoding: chunked", body=b"0X23\r\n" + SMUGGLED
                        + b"\r\n0\r\n\r\n"), 400, "a 0X prefix"),
    Case("chunk-negative", te(b"Transfer-Encoding: chunked", body=b"-23\r\n" + SMUGGLED
                              + b"\r\n0\r\n\r\n"), 400, "a sign"),
    Case("chunk-plus", te(b"Transfer-Encoding: chunked", body=b"+23\r\n" + SMUGGLED
                          + b"\r\n0\r\n\r\n"), 400, "a sign"),
    Case("chunk-overflow", te(b"Transfer-Encoding: chunked", body=b"10000000000000023\r\n"
                              + SMUGGLED + b"\r\n0\r\n\r\n"), 400,
         "2^64 + 0x23: wraps to 0x23 in 64 bits"),
    Case("chunk-overflow-f", te(b"Transfer-Encoding: chunked", body=b"f" * 17 + b"\r\n"
                                + SMUGGLED), 400, "17 hex digits"),
    Case("chunk-size-2^59", te(b"Transfer-Encoding: chunked", body=b"800000000000000\r\n"
                               + SMUGGLED), 413,
         "a chunk declared larger than max_body_size is refused at once"),
    Case("chunk-size-2^60", te(b"Transfer-Encoding: chunked", body=b"1000000000000000\r\n"
                               + SMUGGLED), 400, "README: a chunk size of 2^60 or more"),
    Case("chunk-leading-space", te(b"Transfer-Encoding: chunked", body=b" 23\r\n"
                                   + SMUGGLED + b"\r\n0\r\n\r\n"), 400,
         "whitespace before the size"),
    Case("chunk-underscore", te(b"Transfer-Encoding: chunked", body=b"2_3\r\n" + SMUGGLED
                                + b"\r\n0\r\n\r\n"), 400, "not a hex digit"),
    Case("chunk-empty-size", te(b"Transfer-Encoding: chunked", body=b"\r\n" + SMUGGLED
                                + b"\r\n0\r\n\r\n"), 400, "no size at all"),
    Case("chunk-ext", te(b"Transfer-Encoding: chunked", extra=CLOSE,
                         body=b'23;name="a;b"\r\n' + SMUGGLED + b"\r\n0;x=1\r\n\r\n"),
         Accepted(SMUGGLED), "extensions are ignored"),
    Case("chunk-ext-bws", te(b"Transfer-Encoding: chunked", extra=CLOSE,
                             body=b"23 ; a=b\r\n" + SMUGGLED + b"\r\n0\r\n\r\n"),
         Accepted(SMUGGLED), "whitespace before an extension"),
    Case("chunk-ext-bare-cr", te(b"Transfer-Encoding: chunked", body=b"23;a\rb\r\n"
                                 + SMUGGLED + b"\r\n0\r\n\r\n"), 400,
         "a CR inside an extension"),
    Case("chunk-ext-bare-lf", te(b"Transfer-Encoding: chunked", body=b"23;a\n"
                                 + SMUGGLED + b"\r\n0\r\n\r\n"), 400,
         "an extension ended by a bare LF"),
    Case("chunk-ext-nul", te(b"Transfer-Encoding: chunked", body=b"23;a\x00\r\n"
                             + SMUGGLED + b"\r\n0\r\n\r\n"), 400, "NUL in an extension"),
    Case("chunk-size-bare-lf", te(b"Transfer-Encoding: chunked", body=b"23\n" + SMUGGLED
                                  + b"\r\n0\r\n\r\n"), 400, "a size line ended by LF"),
    Case("chunk-size-bare-cr", te(b"Transfer-Encoding: chunked", body=b"23\r" + SMUGGLED
                                  + b"\r\n0\r\n\r\n"), 400, "a size line ended by CR"),
    Case("chunk-data-too-long", te(b"Transfer-Encoding: chunked", body=b"5\r\nhello"
                                   + SMUGGLED + b"\r\n0\r\n\r\n"), 400,
         "more data than the size"),
    Case("chunk-data-bare-lf", te(b"Transfer-Encoding: chunked", body=b"5\r\nhello\n0\r\n"
                                  b"\r\n"), 400, "chunk data ended by LF"),
    Case("chunk-last-zeros", te(b"Transfer-Encoding: chunked", extra=CLOSE,
                                body=b"000\r\n\r\n"), Accepted(b""),
         "a last chunk written 000"),
    Case("chunk-trailer-fold", te(b"Transfer-Encoding: chunked", body=b"0\r\nA: 1\r\n"
                                  b" 2\r\n\r\n"), 400, "obs-fold in the trailer section"),
    Case("chunk-trailer-bare-cr", te(b"Transfer-Encoding: chunked", body=b"0\r\nA: 1\r2"
                                     b"\r\n\r\n"), 400, "a bare CR in a trailer"),
    Case("chunk-no-final-crlf", te(b"Transfer-Encoding: chunked", body=b"0\r\n"
                                   + SMUGGLED), 400,
         "the last chunk without the blank line: the next line is not a field line"),
    Case("chunk-trailer-no-colon", te(b"Transfer-Encoding: chunked", body=b"0\r\nfoo\r\n"
                                      b"\r\n"), 400, "a trailer line without a colon"),
    Case("chunk-trailer-space-before-colon", te(b"Transfer-Encoding: chunked",
                                                body=b"0\r\nA : 1\r\n\r\n"), 400,
         "whitespace before a trailer field's colon"),
    # ---- request lines, line ends and stray bytes
    Case("absolute-form", b"POST http://t/body HTTP/1.1\r\nHost: t\r\n" + CLOSE
         + CL_SMUGGLED + b"\r\n" + SMUGGLED, Accepted(SMUGGLED),
         "the path of an absolute-form target"),
    Case("absolute-form-userinfo", b"POST http://u@t/body HTTP/1.1\r\nHost: t\r\n" + CLOSE
         + CL_SMUGGLED + b"\r\n" + SMUGGLED, 400,
         "userinfo in an http target (RFC 9110 4.2.4): refused, not parsed around"),
    Case("absolute-form-empty-host", b"POST http:///body HTTP/1.1\r\nHost: t\r\n" + CLOSE
         + CL_SMUGGLED + b"\r\n" + SMUGGLED, 400,
         "an http target with an empty host is invalid (RFC 9110 4.2.1)"),
    Case("absolute-form-smuggled-host", b"POST http://smuggled/body HTTP/1.1\r\n"
         b"Host: t\r\n" + CLOSE + CL_SMUGGLED + b"\r\n" + SMUGGLED, Accepted(SMUGGLED),
         "the authority is not the path"),
    Case("authority-form", b"CONNECT t:80 HTTP/1.1\r\nHost: t\r\n" + CL_SMUGGLED + b"\r\n"
         + SMUGGLED, 400, "CONNECT's authority-form: no path to route"),
    Case("target-without-slash", b"POST body HTTP/1.1\r\nHost: t\r\n" + CL_SMUGGLED
         + b"\r\n" + SMUGGLED, 400, "neither origin-form nor absolute-form"),
    Case("target-scheme-without-slashes", b"POST http:/body HTTP/1.1\r\nHost: t\r\n"
         + CL_SMUGGLED + b"\r\n" + SMUGGLED, 400, "a scheme without an authority"),
    Case("target-asterisk-suffix", b"OPTIONS *body HTTP/1.1\r\nHost: t\r\n"
         + CL_SMUGGLED + b"\r\n" + SMUGGLED, 400, "'*' is the whole target or nothing"),
    Case("request-line-bare-cr", b"POST /body\rHTTP/1.1\r\nHost: t\r\n" + CL_SMUGGLED
         + b"\r\n" + SMUGGLED, 400, "a bare CR in the request line"),
    Case("request-line-bare-lf", b"POST /body HTTP/1.1\nHost: t\r\n" + CL_SMUGGLED
         + b"\r\n" + SMUGGLED, 400, "a bare LF ends the request line"),
    Case("all-bare-lf", b"POST /body HTTP/1.1\nHost: t\nContent-Length: 35\n\n" + SMUGGLED,
         400, "bare LF everywhere"),
    Case("bare-cr-line-start", POST + b"\rContent-Length: 0\r\n" + CL_SMUGGLED + b"\r\n"
         + SMUGGLED, 400, "a bare CR at the start of a field line"),
    Case("bare-cr-head-end", POST + CL_SMUGGLED + b"\r\r\n" + SMUGGLED, 400,
         "CR CR LF as the end of the head"),
    Case("nul-in-method", b"PO\x00ST /body HTTP/1.1\r\nHost: t\r\n" + CL_SMUGGLED + b"\r\n"
         + SMUGGLED, 400, "NUL in the method"),
    Case("nul-in-target", b"POST /body\x00 HTTP/1.1\r\nHost: t\r\n" + CL_SMUGGLED + b"\r\n"
         + SMUGGLED, 400, "NUL in the target"),
    Case("nul-encoded-in-path", b"POST /body%00 HTTP/1.1\r\nHost: t\r\n" + CL_SMUGGLED
         + b"\r\n" + SMUGGLED, 400, "%00 in the path"),
    Case("nul-between-fields", POST + CL_SMUGGLED + b"\x00\r\n\r\n" + SMUGGLED, 400,
         "a NUL line"),
    Case("space-before-colon-host", b"POST /body HTTP/1.1\r\nHost : t\r\n" + CL_SMUGGLED
         + b"\r\n" + SMUGGLED, 400, "whitespace before a colon"),
    Case("leading-space-first-field", b"POST /body HTTP/1.1\r\n Host: t\r\n" + CL_SMUGGLED
         + b"\r\n" + SMUGGLED, 400, "a first field line that looks folded"),
    Case("http09", b"GET /body\r\n\r\n" + SMUGGLED, 400, "no version"),
    Case("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SMUGGLED, 505,
         "the HTTP/2 connection preface"),
    Case("two-hosts", b"POST /body HTTP/1.1\r\nHost: t\r\nHost: smuggled\r\n" + CL_SMUGGLED
         + b"\r\n" + SMUGGLED, 400, "two Host fields"),
    Case("expect-unknown", POST + b"Expect: 100-continue-please\r\n" + CL_SMUGGLED
         + b"\r\n" + SMUGGLED, 417, "an expectation that is not 100-continue"),
]
