"""fastwsgi's request parser against h11, request by request.

Both parsers read the same bytes: fw_parse_head and fw_chunked_decode (called
through cffi, as tests/test_parser.py does) on one side, an h11 server
connection on the other.  For each input the test compares whether the head
is accepted, and for accepted heads the framing: chunked or Content-Length,
the body bytes, and where the message ends.

Two kinds of disagreement are allowed, and only when a rule below names the
input's feature:

* STRICTER: fastwsgi refuses something h11 accepts.  The parser is strict on
  purpose (csrc/http1.c): wherever a lenient reading could let two parsers
  disagree about where a message ends, it answers 400 instead of guessing.
* LENIENT: fastwsgi accepts something h11 refuses.  Each such rule also
  names an equivalent message that h11 does accept, and the test checks that
  h11 frames that one exactly as fastwsgi framed the original.

Anything else fails: a rejection no rule explains, an acceptance h11 refuses,
and above all two accepted readings of one message that differ in framing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import h11
import pytest
from fastwsgi._fastwsgi import ffi, lib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# h11 before 0.16 did not check the CRLF after chunk data (CVE-2025-43859):
# the reference would be the one misreading those bodies.
if tuple(int(x) for x in h11.__version__.split(".")[:2]) < (0, 16):
    pytest.skip("needs h11 0.16 or later", allow_module_level=True)

LIMITS = {
    "request_line": 8190,
    "fields": 100,
    "field_size": 8190,
    "head": 65536,
    "allow_underscores": 0,
}

# ---------------------------------------------------------------------------
# The allow-list.
#
# STRICTER: fastwsgi rejects, h11 accepts.  reason -> (statuses fastwsgi may
# answer, why).
STRICTER: dict[str, tuple[frozenset[int], str]] = {
    "bare-lf": (frozenset({400}),
                "a head line ends in LF without CR.  h11 takes a bare LF as a line "
                "end; fastwsgi accepts CRLF only, because parsers that differ on "
                "bare LF differ on where a head ends."),
    "obs-fold": (frozenset({400}),
                 "a field line continues on the next line (obs-fold).  h11 unfolds it; "
                 "RFC 9112 5.2 lets a server reject it, and fastwsgi does."),
    "ctl-in-head": (frozenset({400}),
                    "a control byte (0x01-0x08, 0x0e-0x1f, 0x7f) in a field value.  "
                    "h11's field-vchar admits them; fastwsgi admits only HTAB, SP, "
                    "VCHAR and obs-text (RFC 9110 5.5)."),
    "cl-and-te": (frozenset({400}),
                  "Content-Length and Transfer-Encoding together.  h11 lets "
                  "Transfer-Encoding win (RFC 9112 6.3); fastwsgi refuses the "
                  "classic smuggling shape outright."),
    "te-http10": (frozenset({400}),
                  "Transfer-Encoding in an HTTP/1.0 request.  h11 decodes it as "
                  "chunked; RFC 9112 6.1 has the framing treated as faulty, and "
                  "fastwsgi refuses the request."),
    "cl-list-or-repeat": (frozenset({400}),
                          "Content-Length repeated, or a list of equal values "
                          "(\"5, 5\").  h11 collapses equal values; fastwsgi wants "
                          "exactly one field of 1*DIGIT."),
    "cl-19-digits": (frozenset({400}),
                     "a Content-Length of more than 18 digits.  h11 allows 20; "
                     "fastwsgi keeps the value within an int64."),
    "version": (frozenset({505}),
                "a major HTTP version other than 1.  h11 serves any HTTP/d.d as "
                "1.1; fastwsgi serves HTTP/1.x as 1.1 (RFC 9110 2.5) and answers "
                "505 to the rest."),
    "host-missing-1x": (frozenset({400}),
                        "no Host in an HTTP/1.2 (or later 1.x) request.  fastwsgi "
                        "serves it as HTTP/1.1, which requires Host (RFC 9112 3.2); "
                        "h11 requires Host of HTTP/1.1 only."),
    "content-type-repeated": (frozenset({400}),
                              "Content-Type twice.  It allows one value (RFC 9110 "
                              "8.3); h11 passes both on, fastwsgi refuses as for two "
                              "Content-Lengths."),
    "fragment": (frozenset({400}),
                 "a '#' in the request-target.  A fragment is not part of a "
                 "request-target (RFC 9112 3.2); h11 passes it on, fastwsgi "
                 "refuses rather than hand it to the app inside the query."),
    "asterisk-not-options": (frozenset({400}),
                             "the asterisk form with a method other than OPTIONS "
                             "(RFC 9112 3.2.4).  h11 accepts it; fastwsgi refuses."),
    "host-value": (frozenset({400}),
                   "a Host, or an absolute-form authority, that is not "
                   "uri-host [\":\" port] (RFC 9110 7.2, RFC 3986 3.2.2): h11 does not "
                   "look; fastwsgi refuses what a framework would paste into a URL."),
    "target-form": (frozenset({400}),
                    "a request-target that is none of origin-form (\"/...\"), "
                    "absolute-form (\"scheme://...\") or \"*\": authority-form "
                    "(CONNECT, which no WSGI app can serve) or junk.  h11 takes any "
                    "visible bytes; fastwsgi refuses to cut a path out of them."),
    "expect": (frozenset({417}),
               "an Expect other than 100-continue on HTTP/1.1.  h11 ignores it; "
               "fastwsgi answers 417 (RFC 9110 10.1.1)."),
    # in chunked bodies
    "ctl-in-chunk-ext": (frozenset({400}),
                         "a control byte or bare CR in a chunk extension.  h11 skips "
                         "any byte up to CRLF; fastwsgi allows field bytes only."),
    "trailer-bare-lf": (frozenset({400}),
                        "the trailer section uses a bare LF line end (as in "
                        "\"0\\r\\n\\n\").  h11 accepts it; fastwsgi wants CRLF."),
    "trailer-obs-fold": (frozenset({400}),
                         "a trailer field folded onto a second line."),
    "trailer-ctl": (frozenset({400}),
                    "a control byte in a trailer field."),
    "chunk-size-ws": (frozenset({400}),
                      "whitespace after a chunk size with no extension (\"5 \").  "
                      "RFC 9112 7.1.1 allows BWS only before ';'; h11 skips it."),
    "trailer-forbidden": (frozenset({400}),
                          "a field that must not be a trailer (RFC 9110 6.5.1: "
                          "framing, routing, request modifiers, authentication, "
                          "content format).  h11 accepts it; fastwsgi refuses."),
}

# LENIENT: fastwsgi accepts, h11 rejects.  reason -> why.  Each has a
# normalizer in LENIENT_RULES below giving the equivalent message for h11.
LENIENT: dict[str, str] = {
    "leading-empty-lines": (
        "empty lines (CRLF) before the request line.  RFC 9112 2.2: a server "
        "SHOULD ignore at least one; fastwsgi ignores them, h11 refuses."),
    "chunk-ext-bws": (
        "whitespace between the chunk size and ';' (\"5 ;x\").  RFC 9112 7.1.1 "
        "allows BWS there; h11's chunk-header pattern does not."),
}

# ---------------------------------------------------------------------------
# The two parsers.

TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Control bytes h11 admits in a field value (its field-vchar is [^\x00\s]).
CTL = bytes(range(1, 9)) + bytes(range(0x0E, 0x20)) + b"\x7f"
# Bytes fastwsgi refuses in a field value or chunk extension.
NOT_FIELD_BYTE = bytes(c for c in range(0x20) if c != 9) + b"\x7f"


@dataclass
class Outcome:
    verdict: str                    # accept, reject, incomplete
    status: int = 0                 # fastwsgi's answer to a rejected head
    head_len: int = 0
    method: bytes = b""
    target: bytes = b""
    version: bytes = b""
    chunked: bool = False
    length: int = 0                 # Content-Length when not chunked
    body_verdict: str = ""          # accept, reject, incomplete
    body: bytes = b""
    end: int = 0                    # offset just past the message
    request: h11.Request | None = None


def fw_decode_chunked(body: bytes) -> tuple[str, bytes, int]:
    st = ffi.new("fw_chunked *")
    buf = ffi.new("char[]", body)
    consumed = ffi.new("size_t *")
    produced = ffi.new("size_t *")
    rc = lib.fw_chunked_decode(st, buf, len(body), LIMITS["field_size"], consumed, produced)
    data = ffi.buffer(buf, produced[0])[:]
    verdict = "accept" if rc == 1 else "incomplete" if rc == 0 else "reject"
    return verdict, data, consumed[0]


def fw_outcome(data: bytes) -> Outcome:
    lim = ffi.new("fw_limits *", LIMITS)
    head = ffi.new("fw_head *")
    scanned = ffi.new("size_t *")
    rc = lib.fw_parse_head(data, len(data), lim, head, scanned)
    if rc < 0:
        return Outcome("reject", status=-rc)
    if rc == 0:
        return Outcome("incomplete")

    def sl(s) -> bytes:
        return data[s.off:s.off + s.len]

    out = Outcome(
        "accept", head_len=rc, method=sl(head.method), target=sl(head.target),
        version=b"1.1" if head.flags & lib.FW_REQ_HTTP11 else b"1.0",
        chunked=bool(head.flags & lib.FW_REQ_CHUNKED),
        length=max(head.content_length, 0),
    )
    rest = data[rc:]
    if out.chunked:
        out.body_verdict, out.body, used = fw_decode_chunked(rest)
        out.end = rc + used
    elif len(rest) >= out.length:
        out.body_verdict, out.body, out.end = "accept", rest[:out.length], rc + out.length
    else:
        out.body_verdict = "incomplete"
    return out


def h11_outcome(data: bytes) -> Outcome:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return Outcome("reject")
    if event is h11.NEED_DATA:
        return Outcome("incomplete")
    assert isinstance(event, h11.Request), event
    names = [name for name, _ in event.headers]
    chunked = b"transfer-encoding" in names
    length = 0 if chunked else int(dict(event.headers).get(b"content-length", b"0"))
    out = Outcome(
        "accept", head_len=len(data) - len(conn.trailing_data[0]), method=event.method,
        # both serve HTTP/1.x above 1.1 as 1.1 (RFC 9110 2.5)
        target=event.target,
        version=b"1.1" if event.http_version.startswith(b"1.") and event.http_version != b"1.0"
        else event.http_version,
        chunked=chunked, length=length,
        request=event,
    )
    body = bytearray()
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                out.body_verdict = "incomplete"
                break
            if isinstance(event, h11.Data):
                body += event.data
            else:
                assert isinstance(event, h11.EndOfMessage), event
                out.body_verdict = "accept"
                out.end = len(data) - len(conn.trailing_data[0])
                break
    except h11.RemoteProtocolError:
        out.body_verdict = "reject"
    out.body = bytes(body)
    return out


# ---------------------------------------------------------------------------
# What an input contains: the predicates behind the STRICTER rules.  They are
# only consulted once h11 has accepted the part they look at, so they can
# read it with h11's grammar.

def h11_head(data: bytes) -> bytes:
    m = re.search(rb"\n\r?\n", data)
    assert m is not None
    return data[:m.end()]


def header_lines(head: bytes) -> list[bytes]:
    """The field lines of a head as h11 splits it (CR dropped, continuation
    lines left as they are)."""
    return [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")[1:-2]]


# uri-host [":" port] as fastwsgi takes it: an IP literal, or reg-name /
# IPv4 characters (unreserved, pct-encoded, sub-delims), then digits.
HOST_VALUE = re.compile(
    rb"(?:\[[0-9A-Fa-f:.vV]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?")


def stricter_head(data: bytes, req: h11.Request) -> set[str]:
    head = h11_head(data)
    lines = header_lines(head)
    reasons = set()
    if re.search(rb"(?<!\r)\n", head):
        reasons.add("bare-lf")
    if any(line[:1] in (b" ", b"\t") for line in lines):
        reasons.add("obs-fold")
    if any(c in CTL for c in head):
        reasons.add("ctl-in-head")
    fields = [(n, v) for n, v in req.headers]
    names = [n for n, _ in fields]
    if b"transfer-encoding" in names and b"content-length" in names:
        reasons.add("cl-and-te")
    if b"transfer-encoding" in names and req.http_version == b"1.0":
        reasons.add("te-http10")
    raw_cl = [line.split(b":", 1)[1].strip(b" \t") for line in lines
              if line.split(b":", 1)[0].lower() == b"content-length"]
    if len(raw_cl) > 1 or any(b"," in v for v in raw_cl):
        reasons.add("cl-list-or-repeat")
    if any(len(v) > 18 for n, v in fields if n == b"content-length"):
        reasons.add("cl-19-digits")
    if not req.http_version.startswith(b"1."):
        reasons.add("version")
    if (req.http_version.startswith(b"1.") and req.http_version not in (b"1.0", b"1.1")
            and b"host" not in names):
        reasons.add("host-missing-1x")
    if names.count(b"content-type") > 1:
        reasons.add("content-type-repeated")
    if b"#" in req.target:
        reasons.add("fragment")
    if req.target == b"*" and req.method != b"OPTIONS":
        reasons.add("asterisk-not-options")
    authority = re.match(rb"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)", req.target)
    hosts = [v for n, v in fields if n == b"host"] + ([authority[1]] if authority else [])
    if any(not HOST_VALUE.fullmatch(v) for v in hosts):
        reasons.add("host-value")
    if req.http_version != b"1.0" and any(
            v.lower() != b"100-continue" for n, v in fields if n == b"expect"):
        reasons.add("expect")
    if not (req.target.startswith(b"/") or req.target == b"*"
            or re.match(rb"[A-Za-z][A-Za-z0-9+.-]*://", req.target)):
        reasons.add("target-form")
    return reasons


@dataclass
class ChunkedParts:
    size_lines: list[bytes]         # without CRLF
    datas: list[bytes]
    trailers: bytes                 # the trailer section, without the final empty line
    end: int


def walk_chunks(body: bytes) -> tuple[list[bytes], list[bytes], int]:
    """Size lines and data of a chunked body one parser accepted, and the
    offset of its trailer section: both read these parts alike."""
    sizes, datas, pos = [], [], 0
    while True:
        eol = body.index(b"\r\n", pos)
        line = body[pos:eol]
        sizes.append(line)
        size = int(re.match(rb"[0-9A-Fa-f]+", line)[0], 16)
        pos = eol + 2
        if size == 0:
            return sizes, datas, pos
        datas.append(body[pos:pos + size])
        pos += size + 2


def h11_chunked_parts(body: bytes) -> ChunkedParts:
    """Split a chunked body that h11 accepted, with h11's grammar."""
    sizes, datas, pos = walk_chunks(body)
    if body[pos:pos + 1] == b"\n":
        return ChunkedParts(sizes, datas, b"", pos + 1)
    if body[pos:pos + 2] == b"\r\n":
        return ChunkedParts(sizes, datas, b"", pos + 2)
    m = re.compile(rb"\n\r?\n").search(body, pos)
    assert m is not None
    return ChunkedParts(sizes, datas, body[pos:m.start() + 1], m.end())


def stricter_body(body: bytes) -> set[str]:
    parts = h11_chunked_parts(body)
    reasons = set()
    for line in parts.size_lines:
        digits = re.match(rb"[0-9A-Fa-f]+", line)[0]
        if any(c in NOT_FIELD_BYTE for c in line[len(digits):]):
            reasons.add("ctl-in-chunk-ext")
    trailers = parts.trailers
    if re.search(rb"(?<!\r)\n", trailers) or body[parts.end - 2:parts.end] != b"\r\n":
        reasons.add("trailer-bare-lf")
    if re.search(rb"\n[ \t]", trailers):
        reasons.add("trailer-obs-fold")
    if any(c in CTL for c in trailers):
        reasons.add("trailer-ctl")
    for line in parts.size_lines:
        rest = line[len(re.match(rb"[0-9A-Fa-f]+", line)[0]):]
        if rest and not rest.strip(b" \t"):
            reasons.add("chunk-size-ws")
    names = [t.split(b":", 1)[0].strip().lower() for t in trailers.split(b"\n") if b":" in t]
    if any(n in FORBIDDEN_TRAILERS for n in names):
        reasons.add("trailer-forbidden")
    return reasons


FORBIDDEN_TRAILERS = {
    b"content-length", b"transfer-encoding", b"host", b"trailer", b"te", b"connection",
    b"keep-alive", b"upgrade", b"expect", b"max-forwards", b"cache-control",
    b"authorization", b"proxy-authorization", b"cookie", b"content-encoding",
    b"content-type", b"content-range", b"range", b"if-match", b"if-none-match",
    b"if-modified-since", b"if-unmodified-since", b"if-range",
}


# ---------------------------------------------------------------------------
# The LENIENT rules: each returns the equivalent message h11 should accept,
# how many bytes before the end of the message it removed and whether they
# were in the head; or None when the input does not have the feature.

Normalized = tuple[bytes, int, bool]


def fw_chunked_parts(body: bytes) -> ChunkedParts:
    """Split a chunked body that fastwsgi accepted, with its grammar."""
    sizes, datas, pos = walk_chunks(body)
    if body[pos:pos + 2] == b"\r\n":
        return ChunkedParts(sizes, datas, b"", pos + 2)
    idx = body.index(b"\r\n\r\n", pos)
    return ChunkedParts(sizes, datas, body[pos:idx + 2], idx + 4)


def rebuild_chunked(parts: ChunkedParts, trailers: bytes) -> bytes:
    out = bytearray()
    for line, chunk in zip(parts.size_lines, parts.datas + [None]):
        out += line + b"\r\n"
        if chunk is not None:
            out += chunk + b"\r\n"
    return bytes(out + trailers + b"\r\n")


def norm_leading_empty_lines(data: bytes, fw: Outcome) -> Normalized | None:
    n = 0
    while data[n:n + 2] == b"\r\n":
        n += 2
    return (data[n:], n, True) if n else None


TE_COMMA = re.compile(rb"(\r\ntransfer-encoding:[ \t]*chunked)[ \t]*,([ \t]*\r\n)", re.I)


def _norm_body(data: bytes, fw: Outcome,
               change: Callable[[ChunkedParts], bytes | None]) -> Normalized | None:
    if not fw.chunked or fw.body_verdict != "accept":
        return None
    body = data[fw.head_len:fw.end]
    new = change(fw_chunked_parts(body))
    if new is None:
        return None
    return data[:fw.head_len] + new + data[fw.end:], len(body) - len(new), False


def norm_chunk_ext_bws(data: bytes, fw: Outcome) -> Normalized | None:
    def change(parts: ChunkedParts) -> bytes | None:
        lines = [re.sub(rb"^([0-9A-Fa-f]+)[ \t]+;", rb"\1;", s) for s in parts.size_lines]
        if lines == parts.size_lines:
            return None
        parts.size_lines = lines
        return rebuild_chunked(parts, parts.trailers)
    return _norm_body(data, fw, change)


LENIENT_RULES: dict[str, Callable[[bytes, Outcome], Normalized | None]] = {
    "leading-empty-lines": norm_leading_empty_lines,
    "chunk-ext-bws": norm_chunk_ext_bws,
}
assert set(LENIENT_RULES) == set(LENIENT)


# ---------------------------------------------------------------------------
# The comparison.

class Disagreement(AssertionError):
    pass


def same_framing(data: bytes, fw: Outcome, hv: Outcome, shift: int = 0) -> None:
    """Both accepted the head: the message must be read the same way."""
    where = f"\n  input: {data!r}\n  fastwsgi: {fw}\n  h11: {hv}"
    if (fw.head_len - shift, fw.method, fw.target, fw.version) != (
            hv.head_len, hv.method, hv.target, hv.version):
        raise Disagreement("the heads differ" + where)
    if fw.chunked != hv.chunked or (not fw.chunked and fw.length != hv.length):
        raise Disagreement("FRAMING: chunked/Content-Length differ" + where)


def differences(data: bytes) -> set[str]:
    """The allow-list rules this input needs; raises on anything not allowed."""
    fw, hv = fw_outcome(data), h11_outcome(data)
    where = f"\n  input: {data!r}\n  fastwsgi: {fw}\n  h11: {hv}"
    verdicts = (fw.verdict, hv.verdict)

    if verdicts == ("accept", "accept"):
        same_framing(data, fw, hv)
        return body_differences(data, fw, hv)
    if verdicts == ("reject", "accept"):
        reasons = stricter_head(data, hv.request)
        if not reasons:
            raise Disagreement(f"fastwsgi answers {fw.status}, h11 accepts, no rule says "
                               "why" + where)
        allowed = set().union(*(STRICTER[r][0] for r in reasons))
        if fw.status not in allowed:
            raise Disagreement(f"status {fw.status}, expected one of {allowed} for "
                               f"{reasons}" + where)
        return reasons
    if verdicts == ("accept", "reject"):
        return lenient(data, fw, where)
    if "accept" in verdicts:
        raise Disagreement("FRAMING: one parser has a complete head, the other waits" + where)
    return set()                    # both refuse, or both (or one) wait


def body_differences(data: bytes, fw: Outcome, hv: Outcome) -> set[str]:
    where = f"\n  input: {data!r}\n  fastwsgi: {fw}\n  h11: {hv}"
    verdicts = (fw.body_verdict, hv.body_verdict)
    if verdicts == ("accept", "accept"):
        if fw.body != hv.body or fw.end != hv.end:
            raise Disagreement("FRAMING: the body or the end of the message differ" + where)
        return set()
    if verdicts == ("reject", "accept"):
        reasons = stricter_body(data[fw.head_len:])
        if not reasons:
            raise Disagreement("fastwsgi refuses a body h11 accepts, no rule says why" + where)
        return reasons
    if verdicts == ("accept", "reject"):
        return lenient(data, fw, where)
    if "accept" in verdicts:
        raise Disagreement("FRAMING: one parser has the whole body, the other waits" + where)
    return set()


def lenient(data: bytes, fw: Outcome, where: str) -> set[str]:
    """fastwsgi accepted what h11 refused.  Some LENIENT rule must turn the
    input into an equivalent one that fastwsgi frames exactly as before and
    on which the two parsers agree (perhaps after more rules).  Returns the
    smallest set of rules that does it."""
    best: set[str] | None = None
    for reason, normalize in LENIENT_RULES.items():
        fixed = normalize(data, fw)
        if fixed is None:
            continue
        new, removed, in_head = fixed
        fwn = fw_outcome(new)
        shift = removed if in_head else 0
        if (fwn.verdict, fwn.method, fwn.target, fwn.version, fwn.chunked, fwn.length,
                fwn.body_verdict, fwn.body) != (
                fw.verdict, fw.method, fw.target, fw.version, fw.chunked, fw.length,
                fw.body_verdict, fw.body) or fwn.head_len != fw.head_len - shift or (
                fw.body_verdict == "accept" and fwn.end != fw.end - removed):
            raise Disagreement(f"{reason}: fastwsgi reads the equivalent message "
                               f"differently: {fwn}" + where)
        try:
            more = differences(new)
        except Disagreement:
            continue
        if best is None or len(more) + 1 < len(best):
            best = {reason} | more
    if best is None:
        raise Disagreement("fastwsgi accepts what h11 refuses, no rule allows it" + where)
    return best


# ---------------------------------------------------------------------------
# Hand-written inputs: (name, bytes, what fastwsgi answers, rules needed).

H = b"Host: example.com\r\n"
TE = b"Transfer-Encoding: chunked\r\n"


def req(line: bytes, *fields: bytes, body: bytes = b"") -> bytes:
    return line + b"\r\n" + b"".join(fields) + b"\r\n" + body


POST = b"POST /p HTTP/1.1"
OK = "accept"

CASES: list[tuple[str, bytes, object, set[str]]] = [
    # Content-Length / Transfer-Encoding
    ("cl", req(POST, H, b"Content-Length: 3\r\n", body=b"abcGET"), OK, set()),
    ("cl-leading-zeros", req(POST, H, b"Content-Length: 003\r\n", body=b"abc"), OK, set()),
    ("cl-and-te", req(POST, H, b"Content-Length: 3\r\n", TE, body=b"0\r\n\r\n"),
     400, {"cl-and-te"}),
    ("te-and-cl", req(POST, H, TE, b"Content-Length: 3\r\n", body=b"0\r\n\r\n"),
     400, {"cl-and-te"}),
    ("cl-repeated-equal", req(POST, H, b"Content-Length: 3\r\n", b"Content-Length: 3\r\n",
                              body=b"abc"), 400, {"cl-list-or-repeat"}),
    ("cl-repeated-different", req(POST, H, b"Content-Length: 3\r\n",
                                  b"Content-Length: 4\r\n", body=b"abcd"), 400, set()),
    ("cl-list", req(POST, H, b"Content-Length: 3, 3\r\n", body=b"abc"),
     400, {"cl-list-or-repeat"}),
    ("cl-plus", req(POST, H, b"Content-Length: +3\r\n", body=b"abc"), 400, set()),
    ("cl-negative", req(POST, H, b"Content-Length: -1\r\n"), 400, set()),
    ("cl-hex", req(POST, H, b"Content-Length: 0x3\r\n", body=b"abc"), 400, set()),
    ("cl-inner-space", req(POST, H, b"Content-Length: 1 2\r\n"), 400, set()),
    ("cl-19-digits", req(POST, H, b"Content-Length: 0000000000000000003\r\n", body=b"abc"),
     400, {"cl-19-digits"}),
    ("cl-empty", req(POST, H, b"Content-Length:\r\n"), 400, set()),
    ("cl-space-before-colon", req(POST, H, b"Content-Length : 3\r\n", body=b"abc"),
     400, set()),
    ("cl-underscore", req(POST, H, b"Content_Length: 3\r\n", body=b"abc"), OK, set()),
    ("te-underscore", req(POST, H, b"Transfer_Encoding: chunked\r\n", body=b"0\r\n\r\n"),
     OK, set()),
    ("te-mixed-case", req(POST, H, b"transfer-encoding: ChUnKeD\r\n", body=b"0\r\n\r\n"),
     OK, set()),
    ("te-http10", req(b"POST /p HTTP/1.0", TE, body=b"3\r\nabc\r\n0\r\n\r\n"),
     400, {"te-http10"}),
    ("te-gzip-chunked", req(POST, H, b"Transfer-Encoding: gzip, chunked\r\n",
                            body=b"0\r\n\r\n"), 501, set()),
    ("te-chunked-gzip", req(POST, H, b"Transfer-Encoding: chunked, gzip\r\n"), 400, set()),
    ("te-chunked-twice", req(POST, H, b"Transfer-Encoding: chunked, chunked\r\n"), 400, set()),
    ("te-two-fields", req(POST, H, TE, TE, body=b"0\r\n\r\n"), 400, set()),
    ("te-identity", req(POST, H, b"Transfer-Encoding: identity\r\n"), 400, set()),
    ("te-empty", req(POST, H, b"Transfer-Encoding:\r\n"), 400, set()),
    ("te-trailing-comma", req(POST, H, b"Transfer-Encoding: chunked,\r\n",
                              body=b"3\r\nabc\r\n0\r\n\r\n"), 400, set()),
    ("te-trailing-comma-space", req(POST, H, b"Transfer-Encoding: chunked , \r\n",
                                    body=b"0\r\n\r\n"), 400, set()),
    ("te-leading-comma", req(POST, H, b"Transfer-Encoding: , chunked\r\n"), 400, set()),
    ("te-quoted", req(POST, H, b"Transfer-Encoding: \"chunked\"\r\n"), 400, set()),
    ("te-vertical-tab", req(POST, H, b"Transfer-Encoding: \x0bchunked\r\n"), 400, set()),
    ("te-tab-around", req(POST, H, b"Transfer-Encoding:\tchunked\t\r\n",
                          body=b"0\r\n\r\n"), OK, set()),
    ("te-space-before-colon", req(POST, H, b"Transfer-Encoding : chunked\r\n"), 400, set()),
    ("te-obs-fold", req(POST, H, b"Transfer-Encoding:\r\n chunked\r\n", body=b"0\r\n\r\n"),
     400, {"obs-fold"}),
    # line ends and whitespace
    ("lf-only", b"GET / HTTP/1.1\nHost: a\n\n", 400, {"bare-lf"}),
    ("lf-only-end", b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400, {"bare-lf"}),
    ("lf-in-fields", b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400, {"bare-lf"}),
    ("bare-cr", b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400, set()),
    ("cr-cr-lf", b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400, set()),
    ("obs-fold", req(b"GET / HTTP/1.1", H, b"X-A: a\r\n\tb\r\n"), 400, {"obs-fold"}),
    ("fold-first-line", req(b"GET / HTTP/1.1", b" Host: a\r\n"), 400, set()),
    ("leading-crlf", b"\r\n" + req(b"GET / HTTP/1.1", H), OK, {"leading-empty-lines"}),
    ("leading-lf", b"\n" + req(b"GET / HTTP/1.1", H), 400, set()),
    ("leading-space", b" " + req(b"GET / HTTP/1.1", H), 400, set()),
    ("double-space", req(b"GET  / HTTP/1.1", H), 400, set()),
    ("tab-in-request-line", req(b"GET\t/ HTTP/1.1", H), 400, set()),
    ("space-after-version", req(b"GET / HTTP/1.1 ", H), 400, set()),
    ("value-whitespace", req(b"GET / HTTP/1.1", H, b"X-A: \t a  b \t\r\n"), OK, set()),
    # bytes
    ("nul-in-value", req(b"GET / HTTP/1.1", H, b"X-A: a\x00b\r\n"), 400, set()),
    ("nul-in-target", req(b"GET /\x00 HTTP/1.1", H), 400, set()),
    ("ctl-in-value", req(b"GET / HTTP/1.1", H, b"X-A: a\x01b\r\n"), 400, {"ctl-in-head"}),
    ("del-in-value", req(b"GET / HTTP/1.1", H, b"X-A: a\x7f\r\n"), 400, {"ctl-in-head"}),
    ("obs-text-value", req(b"GET / HTTP/1.1", H, b"X-A: caf\xc3\xa9\xff\r\n"), OK, set()),
    ("non-ascii-target", req(b"GET /caf\xc3\xa9 HTTP/1.1", H), 400, set()),
    ("non-ascii-name", req(b"GET / HTTP/1.1", H, b"X-\xe9: 1\r\n"), 400, set()),
    ("non-ascii-method", req(b"G\xc9T / HTTP/1.1", H), 400, set()),
    # request targets and versions
    ("absolute-form", req(b"GET http://example.com/a?b HTTP/1.1", H), OK, set()),
    ("absolute-form-no-host", req(b"GET http://example.com/ HTTP/1.1"), 400, set()),
    ("authority-form", req(b"CONNECT example.com:443 HTTP/1.1", H), 400, {"target-form"}),
    ("target-scheme-anywhere", req(b"GET ?://h/admin HTTP/1.1", H), 400, {"target-form"}),
    ("target-bad-scheme", req(b"GET ht*tp://a/b HTTP/1.1", H), 400, {"target-form"}),
    ("asterisk-form", req(b"OPTIONS * HTTP/1.1", H), OK, set()),
    ("http10-no-host", req(b"GET / HTTP/1.0"), OK, set()),
    ("http2", req(b"GET / HTTP/2.0", H), 505, {"version"}),
    ("http12", req(b"GET / HTTP/1.2", H), OK, set()),
    ("http12-no-host", req(b"GET / HTTP/1.2"), 400, {"host-missing-1x"}),
    ("content-type-twice", req(b"GET / HTTP/1.1", H, b"Content-Type: a/b\r\n",
                               b"content-type: c/d\r\n"), 400, {"content-type-repeated"}),
    ("fragment", req(b"GET /p?x=1#frag HTTP/1.1", H), 400, {"fragment"}),
    ("asterisk-get", req(b"GET * HTTP/1.1", H), 400, {"asterisk-not-options"}),
    ("host-slash", req(b"GET / HTTP/1.1", b"Host: a/b\r\n"), 400, {"host-value"}),
    ("authority-bad-port", req(b"GET http://h:8x/ HTTP/1.1", H), 400, {"host-value"}),
    ("http-lowercase", req(b"GET / http/1.1", H), 400, set()),
    ("http-two-digits", req(b"GET / HTTP/1.10", H), 400, set()),
    # Host
    ("host-missing", req(b"GET / HTTP/1.1"), 400, set()),
    ("host-twice", req(b"GET / HTTP/1.1", H, H), 400, set()),
    ("host-empty", req(b"GET / HTTP/1.1", b"Host:\r\n"), OK, set()),
    ("host-underscore", req(b"GET / HTTP/1.1", b"Ho_st: a\r\n"), 400, set()),
    # Expect
    ("expect-continue", req(POST, H, b"Expect: 100-CONTINUE\r\n", b"Content-Length: 1\r\n",
                            body=b"x"), OK, set()),
    ("expect-other", req(POST, H, b"Expect: 200-ok\r\n"), 417, {"expect"}),
    ("expect-list", req(POST, H, b"Expect: 100-continue, x\r\n"), 417, {"expect"}),
    ("expect-http10", req(b"POST / HTTP/1.0", b"Expect: 200-ok\r\n"), OK, set()),
    # chunk sizes, extensions, data ends and trailers
    ("chunked", req(POST, H, TE, body=b"5\r\nhello\r\n0\r\n\r\nGET"), OK, set()),
    ("chunk-upper-hex", req(POST, H, TE, body=b"A\r\n0123456789\r\n0\r\n\r\n"), OK, set()),
    ("chunk-zeros", req(POST, H, TE, body=b"00000000000000000005\r\nhello\r\n000\r\n\r\n"),
     OK, set()),
    # fastwsgi refuses chunk sizes beyond 15 hex digits; h11 reads up to 20
    # but can never see the end of such a chunk, so it only ever waits
    ("chunk-16-digits", req(POST, H, TE, body=b"1000000000000000\r\nab"), OK, set()),
    ("chunk-0x", req(POST, H, TE, body=b"0x5\r\nhello\r\n0\r\n\r\n"), OK, set()),
    ("chunk-negative", req(POST, H, TE, body=b"-5\r\nhello\r\n0\r\n\r\n"), OK, set()),
    ("chunk-leading-space", req(POST, H, TE, body=b" 5\r\nhello\r\n0\r\n\r\n"), OK, set()),
    ("chunk-trailing-space", req(POST, H, TE, body=b"5 \t\r\nhello\r\n0\r\n\r\n"), OK,
     {"chunk-size-ws"}),
    ("chunk-ext", req(POST, H, TE, body=b"5;a=b;c=\"d e\"\r\nhello\r\n0;z\r\n\r\n"),
     OK, set()),
    ("chunk-ext-bws", req(POST, H, TE, body=b"5 ;a=b\r\nhello\r\n0\r\n\r\n"),
     OK, {"chunk-ext-bws"}),
    ("chunk-ext-bare-cr", req(POST, H, TE, body=b"5;a\rb\r\nhello\r\n0\r\n\r\n"),
     OK, {"ctl-in-chunk-ext"}),
    ("chunk-ext-lf", req(POST, H, TE, body=b"5;a\nb\r\nhello\r\n0\r\n\r\n"), OK, set()),
    ("chunk-lf-only", req(POST, H, TE, body=b"5\nhello\n0\n\n"), OK, set()),
    ("chunk-data-no-crlf", req(POST, H, TE, body=b"5\r\nhelloXX0\r\n\r\n"), OK, set()),
    ("chunk-data-lf", req(POST, H, TE, body=b"5\r\nhello\n0\r\n\r\n"), OK, set()),
    ("chunk-size-too-small", req(POST, H, TE, body=b"3\r\nhello\r\n0\r\n\r\n"), OK, set()),
    ("chunk-empty-size", req(POST, H, TE, body=b"\r\nhello\r\n0\r\n\r\n"), OK, set()),
    ("chunked-trailers", req(POST, H, TE, body=b"0\r\nX-A: 1\r\nX-B: 2\r\n\r\n"), OK, set()),
    ("trailer-lf-end", req(POST, H, TE, body=b"0\r\n\n"), OK, {"trailer-bare-lf"}),
    ("trailer-fold", req(POST, H, TE, body=b"0\r\nX-A: 1\r\n 2\r\n\r\n"),
     OK, {"trailer-obs-fold"}),
    ("trailer-no-colon", req(POST, H, TE, body=b"0\r\nnot a field\r\n\r\n"),
     OK, set()),
    ("trailer-bad-cl", req(POST, H, TE, body=b"0\r\nContent-Length: x\r\n\r\n"),
     OK, set()),
    ("trailer-host", req(POST, H, TE, body=b"0\r\nHost: evil\r\n\r\n"),
     OK, {"trailer-forbidden"}),
    ("trailer-ctl", req(POST, H, TE, body=b"0\r\nX-A: \x01\r\n\r\n"), OK, {"trailer-ctl"}),
]


@pytest.mark.parametrize("name, data, fw_answer, rules", CASES, ids=[c[0] for c in CASES])
def test_hand_written(name, data, fw_answer, rules):
    fw = fw_outcome(data)
    assert (fw.verdict if fw.verdict != "reject" else fw.status) == fw_answer
    assert differences(data) == rules


def test_allow_list_is_exercised():
    """Every rule of the allow-list has a hand-written example."""
    used = set().union(*(c[3] for c in CASES))
    assert used == set(STRICTER) | set(LENIENT)


# ---------------------------------------------------------------------------
# Generated inputs.

token = st.text(alphabet=TCHAR.decode(), min_size=1, max_size=8).map(str.encode)
vchars = st.binary(min_size=1, max_size=10).map(lambda b: bytes(0x21 + c % 94 for c in b))
printable = st.binary(max_size=8).map(lambda b: bytes(0x20 + c % 95 for c in b))


def often(common: list[bytes], rare: list[bytes], weight: int = 6) -> st.SearchStrategy:
    """One of the common values, and about once in `weight` draws a rare one."""
    return st.integers(1, weight).flatmap(
        lambda k: st.sampled_from(rare if k == weight else common))


CL_ODD = [b"3, 3", b"3,4", b"+3", b"-1", b"0x3", b"1 2", b"", b"0" * 16 + b"003",
          b"1" * 19, b"99999999999999999"]
TE_ODD = [b"chunked,", b"chunked ,", b", chunked", b"chunked,,", b"gzip, chunked",
          b"chunked, gzip", b"identity", b"chunked, chunked", b"", b"\"chunked\"",
          b"chunked;q=1", b"chunked\xff", b"Chunked", b"CHUNKED"]
MISC_FIELDS = [b"Connection: close", b"Connection: keep-alive", b"Connection: Upgrade",
               b"Upgrade: websocket", b"Expect: 100-continue", b"Expect: 200-ok",
               b"Content_Length: 5", b"Transfer_Encoding: chunked", b"Trailer: X-T",
               b"Accept: */*", b"X-Empty:", b"X-Tab:\tv\t"]
ODD_BYTES = [b"\x00", b"\x01", b"\x7f", b"\x0b", b"\x0c", b"\xe9", b" ", b"\t", b"\r",
             b"\n", b",", b":", b";"]


@st.composite
def chunked_bodies(draw) -> bytes:
    """Mostly well-formed chunked bodies, with now and then one odd detail."""
    def odd(common: bytes, rare: list[bytes]) -> bytes:
        return draw(st.sampled_from(rare)) if draw(st.integers(0, 11)) == 0 else common

    out = bytearray()
    for chunk in draw(st.lists(st.binary(min_size=1, max_size=10), max_size=3)) + [b""]:
        size = len(chunk) + (draw(st.sampled_from([-1, 1])) if draw(st.integers(0, 19)) == 0
                             else 0)
        digits = b"%x" % max(size, 0)
        if draw(st.booleans()):
            digits = digits.upper()
        digits = odd(b"", [b"0", b"000", b"0" * 15, b"0" * 19, b"0x", b" ", b"-"]) + digits
        ext = odd(b"", [b";a=b", b" ;x", b"\t; y", b";\"q r\"", b";\x01", b";\r", b" ",
                        b"\t", b";\xff", b"\x00", b";a\x00"])
        out += digits + ext + odd(b"\r\n", [b"\n", b"\r", b"\r\r\n"])
        if chunk:
            out += chunk + odd(b"\r\n", [b"\n", b"", b"XX", b"\r"])
    if draw(st.integers(0, 3)) == 0:
        out += b"".join(draw(st.lists(often(
            [b"X-T: 1\r\n"],
            [b"X-T: a b\r\n", b"bad line\r\n", b" fold\r\n", b"X-T: \x01\r\n",
             b"X-T: 1\n", b"Content-Length: 5\r\n", b"Transfer-Encoding: gzip\r\n",
             b"X-T : 1\r\n", b":x\r\n"], 4), min_size=1, max_size=2)))
    out += odd(b"\r\n", [b"\n", b"", b"\r"])
    return bytes(out)


@st.composite
def requests(draw) -> bytes:
    """A plausible request with a few (often no) odd details."""
    version = draw(often([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"],
                         [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2", b"http/1.1", b"HTTP/1"]))
    method = draw(often([b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS"], [b"M-SEARCH"]) | token)
    target = draw(often([b"/", b"/a/b?c=d", b"*", b"http://h.example/x?y", b"h.example:443"],
                        [b"/caf\xc3\xa9", b"/a b"]) | vchars)
    lines = [method + b" " + target + b" " + version]
    if version != b"HTTP/1.0" or draw(st.booleans()):
        lines.append(b"Host: " + draw(often([b"example.com"], [b"", b"a:80", b"a b"])))
    lines += draw(st.lists(st.sampled_from(MISC_FIELDS) | token.flatmap(
        lambda n: printable.map(lambda v: n + b": " + v)), max_size=3))

    framing = draw(st.sampled_from(["none", "cl", "cl", "te", "te", "te", "both"]))
    chunked = framing in ("te", "both") and draw(st.integers(0, 9)) != 0
    body = draw(chunked_bodies() if chunked else st.binary(max_size=12))
    if framing in ("cl", "both"):
        lines.append(b"Content-Length: " + draw(often([b"%d" % len(body)], CL_ODD, 10)))
    if framing in ("te", "both"):
        lines.append(b"Transfer-Encoding: " + draw(often([b"chunked"], TE_ODD, 12)))
    lines = [lines[0]] + draw(st.permutations(lines[1:]))
    eols = [b"\r\n"] * (len(lines) + 1)
    lead = b""

    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 1, 1, 2]))):
        kind = draw(st.integers(0, 8))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == 0:
            eols[draw(st.integers(0, len(eols) - 1))] = draw(
                st.sampled_from([b"\n", b"\r", b"\r\r\n", b"\n\r"]))
        elif kind == 1 and i > 0:
            lines.insert(i + 1, draw(st.sampled_from([b" x", b"\tx", b" ", b"  chunked"])))
            eols.append(b"\r\n")
        elif kind == 2:
            j = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:j] + draw(st.sampled_from(ODD_BYTES)) + lines[i][j:]
        elif kind == 3:
            lead = draw(st.sampled_from([b"\r\n", b"\r\n\r\n", b"\n", b" "]))
        elif kind == 4 and i > 0:
            lines.insert(i, lines[i])
            eols.append(b"\r\n")
        elif kind == 5:
            lines[i] = lines[i].replace(b":", b" :", 1).replace(b" ", b"  ", i == 0)
        elif kind == 6 and i > 0:
            lines[i] = lines[i].lower() if draw(st.booleans()) else lines[i].upper()
        elif kind == 7 and i > 0:
            del lines[i]
            del eols[i]
        elif kind == 8:
            lines[i] = lines[i].replace(b" ", b"\t", 1)

    head = lead + b"".join(line + eol for line, eol in zip(lines, eols)) + eols[-1]
    tail = draw(st.sampled_from([b"", b"", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]))
    return head + body + tail


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_generated(data):
    differences(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_generated_chunked_bodies_raw(body):
    """Arbitrary bytes as the body of a chunked request."""
    differences(req(POST, H, TE, body=body))
