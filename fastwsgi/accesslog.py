"""The access log's formats, compiled into the program C runs per line
(csrc/fw.h, FW_ALOG_*): the line is built and written in C, by a thread of
its own, so the log costs the event loop no Python and no disk wait.

Formats: ``combined`` (the default; Apache's combined format and the
duration in microseconds), ``common``, ``json`` (one object per line), or
a format of gunicorn's atoms, e.g. ``'%(h)s "%(r)s" %(s)s %(D)s'``:

=========  ============================================================
atom       what
=========  ============================================================
h          remote address (``-`` for a unix socket peer)
l          ``-``
u          ``-`` (no user name is taken from the request)
t          time, ``[26/Nov/2026:07:13:38 +0000]`` (brackets included, as gunicorn's)
r          request line, ``GET /path?q=1 HTTP/1.1``
m          method
U          path, without the query (as sent, %-encoded)
q          query string
H          protocol, ``HTTP/1.1``
s          status (0 when the client left before any response)
B          body bytes of the response
b          body bytes, ``-`` for none
f          Referer
a          User-Agent
T          duration, whole seconds
M          duration, milliseconds
D          duration, microseconds
L          duration, seconds with 6 decimals
p          process id
{name}i    request header ``name``
=========  ============================================================

The duration runs from the request head being complete to the response
being complete.  Fields that come from the request are escaped: a ``"``,
``\\`` or control byte cannot break a line or forge one.
"""

from __future__ import annotations

import re

from ._fastwsgi import lib

COMBINED = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s'
COMMON = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s'
NAMED = {"combined": COMBINED, "common": COMMON}

_ATOM = re.compile(r"%\((\{[^}]*\}[A-Za-z]|[A-Za-z])\)s|%%")
_SIMPLE = {
    "h": (lib.FW_ALOG_PEER,), "t": (lib.FW_ALOG_TIME,), "r": (lib.FW_ALOG_REQUEST,),
    "m": (lib.FW_ALOG_METHOD, 0), "U": (lib.FW_ALOG_PATH, 0),
    "q": (lib.FW_ALOG_QUERY, 0), "H": (lib.FW_ALOG_PROTO, 0),
    "s": (lib.FW_ALOG_STATUS,), "B": (lib.FW_ALOG_BYTES,),
    "b": (lib.FW_ALOG_BYTES_DASH,), "T": (lib.FW_ALOG_SECONDS,),
    "M": (lib.FW_ALOG_MILLIS,), "D": (lib.FW_ALOG_MICROS,),
    "L": (lib.FW_ALOG_SECONDS_FRAC,), "p": (lib.FW_ALOG_PID,),
}
ATOMS = "h l u t r m U q H s B b f a T M D L p {name}i"


class FormatError(ValueError):
    """A format with an atom fastwsgi does not have."""


class _Program:
    def __init__(self) -> None:
        self.code = bytearray()
        self.headers: list[str] = []

    def literal(self, text: str) -> None:
        data = text.encode("utf-8")
        while data:
            part, data = data[:65535], data[65535:]
            self.code += bytes([lib.FW_ALOG_LITERAL, len(part) >> 8, len(part) & 255])
            self.code += part

    def header(self, name: str, json: int) -> None:
        name = name.lower()
        if name not in self.headers:
            if len(self.headers) == lib.FW_ALOG_HEADERS:
                raise FormatError(f"at most {lib.FW_ALOG_HEADERS} request headers "
                                  "in one format")
            if not name or len(name) > 63 or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9a-z-]+",
                                                              name):
                raise FormatError(f"{name!r} is not a header name")
            self.headers.append(name)
        self.code += bytes([lib.FW_ALOG_HEADER, self.headers.index(name), json])

    def op(self, *codes: int) -> None:
        self.code += bytes(codes)


def compile_format(fmt: str) -> tuple[bytes, str]:
    """(program, header names separated by newlines); FormatError for an
    unknown atom."""
    if fmt == "json":
        return _json()
    fmt = NAMED.get(fmt, fmt)
    prog = _Program()
    at = 0
    for m in _ATOM.finditer(fmt):
        prog.literal(fmt[at:m.start()])
        at = m.end()
        atom = m.group(1)
        if atom is None:
            prog.literal("%")
        elif atom in _SIMPLE:
            prog.op(*_SIMPLE[atom])
        elif atom in ("l", "u"):
            prog.literal("-")
        elif atom == "f":
            prog.header("referer", 0)
        elif atom == "a":
            prog.header("user-agent", 0)
        elif atom.startswith("{") and atom.endswith("}i"):
            prog.header(atom[1:-2], 0)
        else:
            raise FormatError(f"%({atom})s is not an atom fastwsgi has; the atoms are "
                              + ATOMS)
    prog.literal(fmt[at:])
    if not prog.code:
        raise FormatError("the format is empty")
    return bytes(prog.code), "\n".join(prog.headers)


# The json format's keys, in order: (key, quoted, operation).  An
# operation is a program op with its arguments, or a request header's name.
_JSON_FIELDS: tuple[tuple[str, bool, tuple[int, ...] | str], ...] = (
    ("time", True, (lib.FW_ALOG_TIME_BARE,)),
    ("remote_addr", True, (lib.FW_ALOG_PEER_JSON,)),
    ("request", True, (lib.FW_ALOG_REQUEST_JSON,)),
    ("method", True, (lib.FW_ALOG_METHOD, 1)),
    ("path", True, (lib.FW_ALOG_PATH, 1)),
    ("query", True, (lib.FW_ALOG_QUERY, 1)),
    ("protocol", True, (lib.FW_ALOG_PROTO, 1)),
    ("status", False, (lib.FW_ALOG_STATUS,)),
    ("bytes", False, (lib.FW_ALOG_BYTES,)),
    ("duration_us", False, (lib.FW_ALOG_MICROS,)),
    ("referer", True, "referer"),
    ("user_agent", True, "user-agent"),
    ("pid", False, (lib.FW_ALOG_PID,)),
)


def _json() -> tuple[bytes, str]:
    prog = _Program()
    sep = "{"
    for key, quoted, action in _JSON_FIELDS:
        prog.literal(f'{sep}"{key}":' + ('"' if quoted else ""))
        if isinstance(action, str):
            prog.header(action, 1)
        else:
            prog.op(*action)
        sep = '",' if quoted else ","
    prog.literal("}")
    return bytes(prog.code), "\n".join(prog.headers)
