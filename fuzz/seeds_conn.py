#!/usr/bin/env python3
"""Write the seed corpus of fuzz_conn into fuzz/corpus-conn/.

Each seed is a configuration byte, a hash-seed byte and a program of
operations (see "the program" in fuzz_conn.c and fuzz/README.md).  Run it
again after editing the list; it replaces the directory's contents.
"""

from __future__ import annotations

from seeds_common import op, seed, write_corpus

# ---- configuration byte ----


def cfg(limits: int = 0, underscores: int = 0, body: int = 0, timeouts: int = 0,
        small: int = 0) -> int:
    """limits: 0 defaults, 1 small, 2 largest, 3 smallest; body: max body /
    spool threshold profile 0-3; timeouts: 0 defaults, 1 300-900 ms, 2 1 ms,
    3 some disabled; small: 4 KiB socket buffers."""
    return limits | underscores << 2 | body << 3 | timeouts << 5 | small << 7


# ---- operations ----

OPEN, GEN, SEND, TURN, READ, CLOCK, PIPE, BURST = range(8)
RAW, SHUT, CLOSE, TURNS, READALL, SENDALL, GENSEND, OPENMANY = range(8, 16)

METHOD = {"GET": 0, "POST": 1, "HEAD": 2, "PUT": 3, "DELETE": 4,
          "OPTIONS": 5, "PATCH": 6, "M-SEARCH": 7}


def desc(method: str = "GET", http10: int = 0, conn: int = 0, expect: int = 0,
         absolute: int = 0, body: int = 0, size: int = 0, hset: int = 0,
         pad: int = 0, mode: int = 0, param: int = 0, var: int = 0,
         chunk: int = 0, brk: int = 0, extra: int = 0) -> bytes:
    """One request description (9 bytes).

    body: 0 none, 1 Content-Length, 2 chunked, 3 Content-Length: 0;
    size: 0-63 body size class; hset: 16-bit header-set seed; pad: X-Pad
    size (>= 128: exact environ length with `extra`); mode/param: how the
    app answers; var: target variations; chunk: chunk-size seed; brk: 0
    valid, else the way the request is broken; conn: Connection field 0
    none, 1 close, 2 keep-alive, 3 "TE, close"."""
    return bytes([
        METHOD[method] | http10 << 3 | conn << 4 | expect << 6 | absolute << 7,
        body | size << 2,
        hset >> 8 & 255, hset & 255,
        pad,
        mode | param << 4,
        var,
        chunk | brk << 5,
        extra,
    ])


def exact_env(length: int) -> dict[str, int]:
    """desc() arguments for an environ values block of `length` bytes: the
    15 low bits in pad and extra, the top bit in chunk's bit 4."""
    return {"pad": 0x80 | (length >> 8 & 0x7F), "extra": length & 255,
            "chunk": (length >> 15 & 1) << 4}


def all_slots_burst(d: bytes) -> bytes:
    return op(BURST, 0xFF, 0xFF, d)


SEEDS: list[tuple[str, bytes]] = []


def add(name: str, data: bytes) -> None:
    SEEDS.append((name, data))


# one GET, answered
add("get-one", seed(cfg(), 1,
                    op(OPEN, 0, 0), op(GENSEND, 0, desc()), op(TURN),
                    op(READALL)))

# every response mode, one connection each, in one turn
add("modes", seed(cfg(), 2, op(OPENMANY, 15, 0x10),
                  *[op(GENSEND, m, desc(mode=m, param=3, hset=m * 77))
                    for m in range(16)],
                  op(TURNS, 3), op(READALL), op(TURNS, 3), op(READALL)))

# the same modes on HEAD requests and on HTTP/1.0
add("modes-head", seed(cfg(), 3, op(OPENMANY, 15, 0x10),
                       *[op(GENSEND, m, desc("HEAD", mode=m, param=5))
                         for m in range(16)],
                       op(TURNS, 3), op(READALL)))
add("modes-http10", seed(cfg(), 4, op(OPENMANY, 15, 0x11),
                         *[op(GENSEND, m, desc(http10=1, conn=2 * (m & 1),
                                               mode=m, param=2))
                           for m in range(16)],
                         op(TURNS, 3), op(READALL)))

# many connections, each with its own header set, in one turn; then again
# (known shapes: one batch), then new sets colliding in the shape table
ops = [op(OPENMANY, 31, 0x10)]
for round_ in range(6):
    ops.append(all_slots_burst(desc(hset=0x0100 + round_ % 2 * 0x3300,
                                    mode=round_ % 3, param=round_)))
    ops.append(op(READALL))
add("many-conns-batches", seed(cfg(), 5, *ops))

ops = [op(OPENMANY, 31, 0x11)]
for round_ in range(10):
    ops.append(all_slots_burst(desc(hset=round_ * 0x1111, param=1)))
    ops.append(op(READALL))
add("shape-eviction", seed(cfg(), 6, *ops))

# hundreds of header sets on one connection, one request a turn
ops = [op(OPEN, 0, 0)]
for i in range(120):
    ops += [op(GENSEND, 0, desc(hset=i * 523 + 7, mode=i % 3)), op(TURN),
            op(READ, 0, 0)]
add("shape-churn", seed(cfg(), 7, *ops))

# pipelining: eight requests in one send, some with bodies
add("pipeline", seed(cfg(), 8, op(OPEN, 0, 0),
                     op(PIPE, 0, 7, desc(hset=42, mode=1)),
                     op(PIPE, 0, 3, desc("POST", body=1, size=20, hset=43,
                                         mode=5, param=1)),
                     op(PIPE, 0, 4, desc("POST", body=2, size=33, chunk=9,
                                         hset=44, mode=6, param=2)),
                     op(TURNS, 2), op(READALL)))

# a request trickling in byte by byte, with turns in between
ops = [op(OPEN, 0, 1),
       op(GEN, 0, desc("POST", body=1, size=10, hset=99, expect=1, mode=3))]
for _ in range(60):
    ops += [op(SEND, 0, 3), op(TURN)]
ops += [op(SENDALL), op(TURN), op(READALL)]
add("fragments", seed(cfg(), 9, *ops))

# chunked bodies in fragments, with extensions and trailers
ops = [op(OPEN, 0, 0),
       op(GEN, 0, desc("PUT", body=2, size=40, chunk=0x1f, hset=5, mode=5,
                       param=4))]
for _ in range(40):
    ops += [op(SEND, 0, 50), op(TURN)]
ops += [op(SENDALL), op(TURN), op(READALL)]
add("chunked-fragments", seed(cfg(), 10, *ops))

# large bodies: in memory, spooled (profile 1: spool above 1 KiB)
add("bodies-spooled", seed(cfg(body=1), 11, op(OPENMANY, 3, 0),
                           op(GENSEND, 0, desc("POST", body=1, size=50)),
                           op(GENSEND, 1, desc("POST", body=2, size=40,
                                               chunk=3)),
                           op(GENSEND, 2, desc("POST", body=1, size=20)),
                           op(TURNS, 7), op(READALL), op(TURNS, 7),
                           op(READALL)))
add("body-too-large", seed(cfg(body=3), 12, op(OPENMANY, 1, 0),
                           op(GENSEND, 0, desc("POST", body=1, size=40)),
                           op(GENSEND, 1, desc("POST", body=2, size=40)),
                           op(TURNS, 3), op(READALL)))

# timeouts: partial head, partial body, idle, a client that stops reading
add("timeouts", seed(cfg(timeouts=1), 13, op(OPENMANY, 5, 0),
                     op(GEN, 0, desc(hset=1)), op(SEND, 0, 10),
                     op(GEN, 1, desc("POST", body=1, size=30)),
                     op(SEND, 1, 0x90),
                     op(GENSEND, 2, desc(hset=2)),
                     op(GENSEND, 3, desc(mode=5, param=15)),
                     op(TURNS, 2), op(READ, 2, 0),
                     op(CLOCK, 5), op(TURN), op(CLOCK, 8), op(TURN),
                     op(CLOCK, 11), op(TURN), op(READALL), op(CLOCK, 13),
                     op(TURN), op(READALL)))

# clients that do not read: output backs up, streams wait for writable
add("non-reading", seed(cfg(small=1), 14, op(OPENMANY, 3, 0),
                        op(GENSEND, 0, desc(mode=5, param=15)),
                        op(GENSEND, 1, desc(mode=4, param=9)),
                        op(GENSEND, 2, desc(mode=7, param=13)),
                        op(GENSEND, 3, desc(mode=15, param=12)),
                        op(TURNS, 7), op(READ, 0, 10), op(TURNS, 2),
                        op(READ, 1, 200), op(TURNS, 2), op(READALL),
                        op(TURNS, 7), op(READALL)))
add("non-reading-timeout", seed(cfg(small=1, timeouts=1), 15,
                                op(OPENMANY, 1, 0),
                                op(GENSEND, 0, desc(mode=6, param=15)),
                                op(GENSEND, 1, desc(mode=5, param=15)),
                                op(TURNS, 3), op(CLOCK, 11), op(TURN),
                                op(CLOCK, 11), op(TURN), op(READALL)))

# a full batch: four connections whose environs add up to the batch block
add("batch-exact-fill", seed(cfg(limits=2), 16, op(OPENMANY, 3, 0x10),
                             op(BURST, 0x0F, 0,
                                desc(hset=7, **exact_env(43690))),
                             op(READALL),
                             op(BURST, 0x0F, 0,
                                desc(hset=7, **exact_env(43690))),
                             op(READALL)))
add("batch-many-large", seed(cfg(limits=2), 17, op(OPENMANY, 31, 0x10),
                             all_slots_burst(desc(hset=3,
                                                  **exact_env(8191))),
                             op(READALL),
                             all_slots_burst(desc(hset=3,
                                                  **exact_env(8191))),
                             op(READALL)))

# refusals: each broken request ends its connection
add("refusals", seed(cfg(), 18, op(OPENMANY, 7, 0),
                     *[op(GENSEND, b, desc("POST", body=2 if b in (3, 4)
                                           else 0, brk=b, hset=b))
                       for b in range(8)],
                     op(TURNS, 2), op(READALL)))
add("limits-small", seed(cfg(limits=1), 19, op(OPENMANY, 3, 0),
                         op(GENSEND, 0, desc(hset=0xF123)),
                         op(GENSEND, 1, desc(var=0x20, extra=40)),
                         op(GENSEND, 2, desc(hset=5, pad=100)),
                         op(GENSEND, 3, desc(hset=5)),
                         op(TURNS, 2), op(READALL)))

# target forms, HTTP/1.0, underscores, repeated names
add("targets", seed(cfg(underscores=1), 20, op(OPENMANY, 7, 0x10),
                    op(GENSEND, 0, desc(absolute=1, var=1)),
                    op(GENSEND, 1, desc(absolute=1, var=0x44, extra=4)),
                    op(GENSEND, 2, desc("OPTIONS", var=0x80)),
                    op(GENSEND, 3, desc(var=0x0E)),
                    op(GENSEND, 4, desc(http10=1, absolute=1)),
                    op(GENSEND, 5, desc("M-SEARCH", var=0x14)),
                    op(GENSEND, 6, desc(hset=0xF0F0)),
                    op(GENSEND, 7, desc(http10=1, conn=2, hset=0xF777)),
                    op(TURNS, 2), op(READALL)))

# raw bytes after valid requests; shut down and close mid-request
add("raw", seed(cfg(), 21, op(OPENMANY, 1, 0),
                op(GENSEND, 0, desc(hset=9)),
                op(RAW, 0, 12) + b"GET /x HTTP/",
                op(TURN), op(RAW, 0, 6) + b"1.1\r\n\r",
                op(GENSEND, 1, desc()), op(RAW, 1, 4) + b"\x00\r\n\r",
                op(TURNS, 2), op(READALL)))
add("shut-close", seed(cfg(), 22, op(OPENMANY, 3, 0),
                       op(GEN, 0, desc("POST", body=1, size=30)),
                       op(SEND, 0, 60), op(SHUT, 0),
                       op(GENSEND, 1, desc(mode=5, param=10)),
                       op(CLOSE, 1),
                       op(PIPE, 2, 3, desc()), op(SHUT, 2),
                       op(GEN, 3, desc()), op(SEND, 3, 20), op(CLOSE, 3),
                       op(TURNS, 3), op(READALL)))

# connections through a listening socket
add("listener", seed(cfg(), 23, op(OPENMANY, 7, 3),
                     all_slots_burst(desc(hset=11)), op(READALL),
                     all_slots_burst(desc(hset=11, mode=7, param=3)),
                     op(READALL), op(CLOSE, 2), op(TURN)))

# expect 100-continue with the body held back
add("expect-continue", seed(cfg(), 24, op(OPEN, 0, 0),
                            op(GEN, 0, desc("POST", body=1, size=35,
                                            expect=1)),
                            op(SEND, 0, 255), op(TURN), op(READ, 0, 0),
                            op(SENDALL), op(TURN), op(READALL)))

# a new key sequence whose two slots both hold batched requests gets
# FW_SHAPE_ONCE: 24 known shapes batched, 8 new ones in the same turn
ops = [op(OPENMANY, 31, 0x10)]
ops += [op(GENSEND, s, desc(hset=0x0200 + s * 97)) for s in range(32)]
ops += [op(TURN), op(READALL)]
for round_ in range(4):
    ops += [op(GENSEND, s, desc(hset=0x0200 + s * 97)) for s in range(24)]
    ops += [op(GENSEND, s, desc(hset=0x4000 + round_ * 1000 + s * 13))
            for s in range(24, 32)]
    ops += [op(TURN), op(READALL)]
add("shape-once", seed(cfg(), 25, *ops))

# a body held back after its head, then sent in pieces (body timer re-armed)
ops = [op(OPENMANY, 1, 0),
       op(GEN, 0, desc("POST", body=1, size=45, hset=3)),
       op(GEN, 1, desc("POST", body=2, size=45, chunk=2, hset=3)),
       op(SEND, 0, 255), op(SEND, 1, 255), op(TURN)]
for _ in range(8):
    ops += [op(CLOCK, 4), op(SEND, 0, 0x82), op(SEND, 1, 0x82), op(TURN)]
ops += [op(SENDALL), op(TURN), op(READALL)]
add("body-held-back", seed(cfg(timeouts=1), 26, *ops))

# responses the app aborts: short of its length, half a chunked body, half
# a close-delimited one
add("aborts", seed(cfg(), 27, op(OPENMANY, 3, 0),
                   op(GENSEND, 0, desc(mode=12, param=9)),
                   op(GENSEND, 1, desc(mode=6, param=12)),
                   op(GENSEND, 2, desc(http10=1, mode=6, param=10)),
                   op(GENSEND, 3, desc(http10=1, conn=2, mode=12, param=15)),
                   op(TURNS, 3), op(READALL), op(TURNS, 3), op(READALL)))

# an app that calls with a stale connection pointer (another connection,
# open, idle or streaming): refused, and that connection is unharmed
add("stale-calls", seed(cfg(small=1), 29, op(OPENMANY, 3, 0),
                        op(GENSEND, 0, desc(mode=5, param=15)),
                        op(GENSEND, 1, desc(hset=4)), op(TURN),
                        op(GENSEND, 2, desc(extra=8)),
                        op(GENSEND, 1, desc(hset=4, extra=8)),
                        op(TURNS, 2), op(READALL), op(TURNS, 3),
                        op(READALL)))

# a graceful stop with requests in flight, idle connections and a pending
# accept; the final fw_loop_run closes the rest
add("graceful-stop", seed(cfg(), 28, op(OPENMANY, 5, 0),
                          op(GENSEND, 0, desc(mode=5, param=12)),
                          op(GEN, 1, desc("POST", body=1, size=40)),
                          op(SEND, 1, 255), op(TURN),
                          op(TURNS, 250), op(GENSEND, 2, desc()),
                          op(OPEN, 9, 3), op(GENSEND, 9, desc()),
                          op(TURNS, 2), op(READ, 0, 0), op(SENDALL),
                          op(TURNS, 2), op(READALL)))


def main() -> None:
    write_corpus("corpus-conn", SEEDS)


if __name__ == "__main__":
    main()
