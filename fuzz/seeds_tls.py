#!/usr/bin/env python3
"""Write the seed corpus of fuzz_tls into fuzz/corpus-tls/.

Each seed is a configuration byte, a seed byte (OpenSSL's random bytes and
the shape table's hash) and a program of operations (see "the program" in
fuzz_tls.c and fuzz/README.md).  Run it again after editing the list; it
replaces the directory's contents.
"""

from __future__ import annotations

from seeds_common import op, seed, write_corpus

# ---- configuration byte ----

ANY, TLS13, BIG, CLIENT_CERT = range(4)


def cfg(profile: int = ANY, suppress: int = 0, small: int = 0,
        timeouts: int = 0, spool: int = 0, small_head: int = 0) -> int:
    """profile: the server's (TLS 1.2-1.3; TLS 1.3 only; the big
    certificate with one TLS 1.2 cipher; client certificates asked for);
    suppress: suppress_ragged_eofs; small: 4 KiB socket buffers; timeouts:
    0 defaults, 1 300-900 ms, 2 1 ms, 3 some disabled; spool: bodies over
    1 KiB go to a file; small_head: a 4 KiB head limit."""
    return (profile | suppress << 2 | small << 3 | timeouts << 4 |
            spool << 6 | small_head << 7)


# ---- operations ----

OPEN, GEN, SEND, TURN, READ, RECSIZE, FLIP, RAW = range(8)
PTRAW, SHUT, CLOSE, TLSCTL, CLOCK, STEP, GENSEND, PIPE = range(8, 16)

TLS, TLS_ACCEPTED, GARBAGE, PLAIN = range(4)
NOTIFY, KEYUPDATE, KEYUPDATE_QUIET, RENEW = range(4)

# REC_SIZES in fuzz_tls.c: index of a record size
REC = {16384: 0, 1: 1, 2: 2, 3: 3, 5: 4, 7: 5, 16: 6, 64: 7, 100: 8,
       300: 9, 512: 10, 1000: 11, 1500: 12, 4096: 13, 8000: 14, 16383: 15}


def client(kind: int = TLS, versions: int = 0, alpn: int = 0, cert: int = 0,
           resume: int = 0, ipv6: int = 0) -> int:
    """versions: 0 TLS 1.2-1.3, 1 TLS 1.2, 2 TLS 1.3, 3 TLS 1.2 with
    ChaCha20 alone; alpn: offer h2 and http/1.1; cert: present the client
    certificate; resume: offer the last session kept."""
    return (kind | versions << 2 | alpn << 4 | cert << 5 | resume << 6 |
            ipv6 << 7)


METHOD = {"GET": 0, "POST": 1, "HEAD": 2, "PUT": 3}


def desc(method: str = "GET", http10: int = 0, conn: int = 0, body: int = 0,
         expect: int = 0, broken: int = 0, size: int = 0, mode: int = 0,
         param: int = 0, pad: int = 0) -> bytes:
    """One request description (4 bytes).

    conn: Connection: close (HTTP/1.1) or keep-alive (HTTP/1.0); body: 0
    none, 1 Content-Length, 2 chunked; size: d1 (below 192: size*53
    bytes, else (size-191)*5101); mode/param: how the app answers; pad: an
    X-Pad field of pad*31 bytes; broken: a field name with a space (400)."""
    return bytes([
        METHOD[method] | http10 << 2 | conn << 3 | body << 4 | expect << 6 |
        broken << 7,
        size,
        mode | param << 3,
        pad,
    ])


def raw(code: int, slot: int, data: bytes) -> bytes:
    """RAW or PTRAW: at most 255 bytes an operation."""
    out = b""
    for i in range(0, len(data), 255):
        piece = data[i:i + 255]
        out += op(code, slot, len(piece), piece)
    return out


SEEDS: list[tuple[str, bytes]] = []


def add(name: str, data: bytes) -> None:
    SEEDS.append((name, data))


# one GET over TLS, answered
add("get-one", seed(cfg(), 1, op(OPEN, 0, client()),
                    op(GENSEND, 0, desc()), op(STEP, 3)))

# every answer mode over TLS, on GET, HEAD and HTTP/1.0 (a close-delimited
# body ends with close_notify)
ops = [op(OPEN, s, client(versions=s & 3 if s & 3 != 3 else 0))
       for s in range(8)]
for m in range(8):
    ops.append(op(GENSEND, m, desc(mode=m, param=3 + m)))
ops.append(op(STEP, 3))
for m in range(8):
    ops.append(op(GENSEND, m, desc("HEAD", mode=m, param=5)))
ops.append(op(STEP, 3))
for m in range(8):
    ops.append(op(GENSEND, m, desc(http10=1, conn=m & 1, mode=m, param=2)))
ops.append(op(STEP, 3))
add("modes", seed(cfg(suppress=1), 2, *ops))

# the ClientHello and the first request split byte by byte, a turn after
# each; then its records one plaintext byte each
ops = [op(OPEN, 0, client(alpn=1)), op(RECSIZE, 0, REC[1]),
       op(GEN, 0, desc("POST", body=1, size=3, mode=2, param=7, pad=4))]
for _ in range(330):
    ops += [op(SEND, 0, 1), op(TURN)]
ops += [op(READ, 0, 0)]
for _ in range(120):
    ops += [op(SEND, 0, 7), op(TURN), op(READ, 0, 1)]
ops += [op(STEP, 3)]
add("split-bytes", seed(cfg(), 3, *ops))

# the same on TLS 1.2, in pieces of 5 (a record header) and 64 bytes
ops = [op(OPEN, 0, client(versions=1)), op(RECSIZE, 0, REC[3]),
       op(GEN, 0, desc(mode=0, param=9, pad=40))]
for _ in range(80):
    ops += [op(SEND, 0, 5), op(TURN), op(READ, 0, 0)]
for _ in range(40):
    ops += [op(SEND, 0, 0x80), op(TURN), op(READ, 0, 0)]
ops += [op(STEP, 3)]
add("split-tls12", seed(cfg(), 4, *ops))

# pipelined requests in one record, then one request over many records,
# a head larger than a record, bodies across records, chunked
add("records", seed(cfg(), 5, op(OPEN, 0, client()),
                    op(PIPE, 0, 7, desc(mode=0, param=1)), op(STEP, 2),
                    op(RECSIZE, 0, REC[100]),
                    op(PIPE, 0, 3, desc("POST", body=1, size=100, mode=2,
                                        param=4, pad=200)),
                    op(STEP, 2), op(RECSIZE, 0, REC[16383]),
                    op(GENSEND, 0, desc("PUT", body=2, size=200, mode=3,
                                        param=6, pad=250)),
                    op(GENSEND, 0, desc("POST", body=1, size=230, mode=4,
                                        param=20)),
                    op(STEP, 3)))

# bodies spooled to a file, 100-continue, a 4 KiB head limit (431) and a
# broken request (400: the connection lingers, then closes)
add("bodies", seed(cfg(spool=1, small_head=1), 6,
                   op(OPEN, 0, client()), op(OPEN, 1, client(versions=1)),
                   op(OPEN, 2, client()), op(OPEN, 3, client()),
                   op(GEN, 0, desc("POST", body=1, size=150, expect=1,
                                   mode=2, param=5)),
                   op(SEND, 0, 0), op(TURN), op(READ, 0, 0), op(SEND, 0, 0),
                   op(TURN), op(READ, 0, 0),
                   op(GENSEND, 0, desc("POST", body=1, size=200, expect=1,
                                       mode=1)),
                   op(GENSEND, 1, desc("POST", body=2, size=60, mode=0)),
                   op(GENSEND, 2, desc(pad=140)),
                   op(GENSEND, 3, desc(broken=1)),
                   op(GENSEND, 3, desc()),
                   op(STEP, 3)))

# small socket buffers: the big certificate's first flight does not fit
# (the handshake's read waits to send), responses back up, a client that
# reads late
add("small-buffers", seed(cfg(profile=BIG, small=1), 7,
                          op(OPEN, 0, client()), op(OPEN, 1, client(versions=1)),
                          op(OPEN, 2, client(kind=TLS_ACCEPTED)),
                          op(SEND, 0, 0), op(SEND, 1, 0), op(SEND, 2, 0),
                          op(TURN), op(TURN), op(READ, 0, 2), op(TURN),
                          op(READ, 1, 0), op(TURN), op(STEP, 1),
                          op(GENSEND, 0, desc(mode=1, param=30)),
                          op(GENSEND, 1, desc(mode=4, param=31)),
                          op(GENSEND, 2, desc(mode=3, param=31)),
                          op(TURN), op(TURN), op(READ, 0, 3), op(TURN),
                          op(READ, 1, 9), op(TURN), op(STEP, 3)))

# client certificates: presented or not, on TLS 1.2 and 1.3, and resumed
# sessions (the subject comes back with a session that had one; a session
# without one stays without, whatever the client has now)
add("client-cert", seed(cfg(profile=CLIENT_CERT), 8,
                        op(OPEN, 0, client(versions=1, cert=1)),
                        op(GENSEND, 0, desc()), op(STEP, 2),
                        op(OPEN, 1, client(versions=1, resume=1)),
                        op(GENSEND, 1, desc(mode=1)), op(STEP, 2),
                        op(OPEN, 2, client(cert=1)),
                        op(GENSEND, 2, desc()), op(STEP, 2),
                        op(OPEN, 3, client(resume=1)),
                        op(GENSEND, 3, desc(mode=2, param=3)), op(STEP, 2),
                        op(OPEN, 4, client()), op(GENSEND, 4, desc()),
                        op(STEP, 2),
                        op(OPEN, 5, client(kind=TLS_ACCEPTED, resume=1,
                                           cert=1)),
                        op(GENSEND, 5, desc()), op(STEP, 2)))

# resumption without client certificates, TLS 1.3 and 1.2, ALPN
add("resume", seed(cfg(), 9, op(OPEN, 0, client(alpn=1)),
                   op(GENSEND, 0, desc()), op(STEP, 2),
                   op(OPEN, 1, client(resume=1, alpn=1)),
                   op(GENSEND, 1, desc()), op(STEP, 2),
                   op(OPEN, 2, client(versions=1)),
                   op(GENSEND, 2, desc()), op(STEP, 2),
                   op(OPEN, 3, client(versions=1, resume=1)),
                   op(GENSEND, 3, desc()), op(STEP, 2)))

# handshakes the server refuses: TLS 1.2 against a TLS 1.3 server, a cipher
# it does not allow
add("refused-versions", seed(cfg(profile=TLS13), 10,
                             op(OPEN, 0, client(versions=1)),
                             op(OPEN, 1, client(versions=3)),
                             op(OPEN, 2, client(versions=2)),
                             op(GENSEND, 0, desc()), op(GENSEND, 1, desc()),
                             op(GENSEND, 2, desc()), op(STEP, 3)))
add("refused-cipher", seed(cfg(profile=BIG), 11,
                           op(OPEN, 0, client(versions=3)),
                           op(OPEN, 1, client(versions=1)),
                           op(GENSEND, 0, desc()), op(GENSEND, 1, desc()),
                           op(STEP, 3)))

# garbage before the handshake, inside it (between the ClientHello's
# pieces), after it (between records), and a garbage client alone
ops = [op(OPEN, 0, client()), raw(RAW, 0, b"GET / HTTP/1.1\r\n\r\n"),
       op(STEP, 2),
       op(OPEN, 1, client()), op(SEND, 1, 40), op(TURN),
       raw(RAW, 1, bytes(range(0, 64))), op(STEP, 2),
       op(OPEN, 2, client()), op(GENSEND, 2, desc()), op(STEP, 2),
       raw(RAW, 2, b"\x17\x03\x03\x00\x10" + b"\x00" * 16),
       op(GENSEND, 2, desc()), op(STEP, 2),
       op(OPEN, 3, client(kind=GARBAGE)),
       raw(RAW, 3, b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"), op(STEP, 1),
       op(OPEN, 4, client(kind=GARBAGE)),
       raw(RAW, 4, b"\x16\x03\x01\xff\xff" + b"A" * 300), op(TURN),
       op(CLOSE, 4), op(STEP, 2)]
add("garbage", seed(cfg(), 12, *ops))

# flipped bytes: in the ClientHello, in the client's Finished, in a record
# with a request, in a record header
add("flips", seed(cfg(suppress=1), 13,
                  op(OPEN, 0, client()), op(FLIP, 0, 0, 50, 1), op(STEP, 2),
                  op(OPEN, 1, client()), op(SEND, 1, 0), op(TURN),
                  op(READ, 1, 0), op(FLIP, 1, 0, 70, 0x40), op(STEP, 2),
                  op(OPEN, 2, client()), op(GENSEND, 2, desc()), op(STEP, 2),
                  op(GEN, 2, desc(mode=2, param=5)), op(FLIP, 2, 0, 20, 4),
                  op(STEP, 2),
                  op(OPEN, 3, client(versions=1)), op(GENSEND, 3, desc()),
                  op(STEP, 2), op(GEN, 3, desc()), op(FLIP, 3, 0, 3, 1),
                  op(STEP, 2)))

# closes in the middle: of the ClientHello, of the handshake, of a
# request's records, of a response; a half-close after a request
add("closes", seed(cfg(), 14,
                   op(OPEN, 0, client()), op(SEND, 0, 100), op(TURN),
                   op(CLOSE, 0),
                   op(OPEN, 1, client()), op(SEND, 1, 0), op(TURN),
                   op(READ, 1, 0), op(SEND, 1, 20), op(TURN), op(CLOSE, 1),
                   op(OPEN, 2, client()), op(STEP, 2),
                   op(GEN, 2, desc("POST", body=1, size=100)),
                   op(SEND, 2, 0x90), op(TURN), op(CLOSE, 2),
                   op(OPEN, 3, client()), op(STEP, 2),
                   op(GENSEND, 3, desc(mode=1, param=31)), op(TURN),
                   op(READ, 3, 5), op(CLOSE, 3),
                   op(OPEN, 4, client()), op(STEP, 2),
                   op(GENSEND, 4, desc()), op(SHUT, 4),
                   op(OPEN, 5, client(kind=TLS_ACCEPTED)), op(SEND, 5, 30),
                   op(CLOSE, 5), op(STEP, 3)))
add("half-close", seed(cfg(suppress=1), 15,
                       op(OPEN, 0, client()), op(STEP, 2),
                       op(GENSEND, 0, desc(mode=3, param=9)), op(SHUT, 0),
                       op(OPEN, 1, client(versions=1)), op(STEP, 2),
                       op(GENSEND, 1, desc(mode=2, param=9)), op(SHUT, 1),
                       op(STEP, 3)))

# close_notify from the client after its requests; KeyUpdates both ways
add("notify-keyupdate", seed(cfg(), 16,
                             op(OPEN, 0, client()), op(STEP, 2),
                             op(GENSEND, 0, desc(mode=2, param=20)),
                             op(TLSCTL, 0, NOTIFY), op(STEP, 3),
                             op(OPEN, 1, client()), op(STEP, 2),
                             op(TLSCTL, 1, KEYUPDATE), op(STEP, 1),
                             op(GENSEND, 1, desc(mode=0)), op(STEP, 1),
                             op(TLSCTL, 1, KEYUPDATE_QUIET),
                             op(GENSEND, 1, desc(mode=3, param=7)),
                             op(TLSCTL, 1, KEYUPDATE), op(STEP, 3),
                             op(OPEN, 2, client(versions=1)), op(STEP, 2),
                             op(TLSCTL, 2, KEYUPDATE),
                             op(GENSEND, 2, desc()), op(STEP, 2)))

# the certificate renewed while connections are open and handshaking
add("renew", seed(cfg(), 17, op(OPEN, 0, client()), op(STEP, 2),
                  op(OPEN, 1, client()), op(SEND, 1, 50),
                  op(TLSCTL, 0, RENEW), op(TURN),
                  op(OPEN, 2, client(kind=TLS_ACCEPTED)),
                  op(TLSCTL, 0, RENEW), op(GENSEND, 0, desc()),
                  op(GENSEND, 1, desc()), op(GENSEND, 2, desc()),
                  op(TLSCTL, 0, RENEW), op(STEP, 3),
                  op(OPEN, 3, client(resume=1)), op(GENSEND, 3, desc()),
                  op(STEP, 2)))

# handshakes and heads that stall: the header timeout ends them
add("timeouts", seed(cfg(timeouts=1), 18,
                     op(OPEN, 0, client()), op(SEND, 0, 60), op(TURN),
                     op(OPEN, 1, client()), op(SEND, 1, 0), op(TURN),
                     op(READ, 1, 0),
                     op(OPEN, 2, client()), op(STEP, 2),
                     op(RECSIZE, 2, REC[100]),
                     op(GEN, 2, desc(pad=50)), op(SEND, 2, 255), op(TURN),
                     op(OPEN, 3, client(kind=GARBAGE)),
                     raw(RAW, 3, b"\x16\x03\x01\x00\x40"),
                     op(CLOCK, 6), op(TURN), op(CLOCK, 5), op(TURN),
                     op(READ, 2, 0), op(CLOCK, 13), op(TURN),
                     op(STEP, 2)))

# plain HTTP on listener 1 beside TLS on listener 0, and raw plaintext in
# records (valid TLS, an unpredictable request)
add("plain-beside", seed(cfg(), 19,
                         op(OPEN, 0, client(kind=PLAIN)),
                         op(OPEN, 1, client()),
                         op(GENSEND, 0, desc(mode=1)),
                         op(GENSEND, 1, desc(mode=1)), op(STEP, 2),
                         op(PIPE, 0, 3, desc(mode=4, param=2)),
                         op(PIPE, 1, 3, desc(mode=4, param=2)), op(STEP, 2),
                         raw(PTRAW, 1, b"GET /raw HTTP/1.1\r\nHost: x\r\n\r\n"),
                         raw(PTRAW, 0, b"BREW / HTTP/1.1\r\n\r\n"),
                         op(STEP, 3)))

# the end of a response that closes the connection fills the socket: its
# close_notify waits for room (it was once lost to the close); the same
# behind a 400 (the error linger), and with a client that half-closed
add("notify-waits", seed(cfg(small=1, suppress=1), 21,
                         op(OPEN, 0, client(versions=1)),
                         op(OPEN, 1, client()), op(OPEN, 2, client()),
                         op(OPEN, 3, client(kind=TLS_ACCEPTED)), op(STEP, 2),
                         op(GENSEND, 0, desc(conn=1, mode=2, param=15)),
                         op(GENSEND, 1, desc(http10=1, mode=2, param=15)),
                         op(GEN, 2, desc(mode=2, param=15)),
                         op(GENSEND, 2, desc(broken=1)),
                         op(GENSEND, 3, desc(conn=1, mode=2, param=15)),
                         op(SHUT, 3), op(TURN), op(TURN), op(TURN),
                         op(STEP, 3)))

# many TLS connections at once, batched answers
ops = [op(OPEN, s, client(kind=TLS if s % 3 else TLS_ACCEPTED,
                          versions=s % 3, alpn=s & 1)) for s in range(8)]
ops += [op(STEP, 2)]
for r in range(3):
    ops += [op(GENSEND, s, desc(mode=r, param=s)) for s in range(8)]
    ops += [op(STEP, 1)]
add("many", seed(cfg(suppress=1, small=1), 20, *ops))


def main() -> None:
    write_corpus("corpus-tls", SEEDS)


if __name__ == "__main__":
    main()
