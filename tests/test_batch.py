"""Requests that arrive together are answered together.

Requests without a body are gathered while the server handles one round of
socket events, and the app is called for them in one go.  These tests send
on many connections before reading any answer, so that many requests land
in the same round (more than one batch holds, too), and check that every
connection gets the answer to its own request, in order, with its own
environ.
"""

from __future__ import annotations

import json
import socket
import time

from conftest import parse_responses, read_response, read_until_close

CONNS = 300  # more than one batch holds: the rest are answered one by one


def _open(server, n: int) -> list[socket.socket]:
    return [server.connect(10.0) for _ in range(n)]


def _request(i: int, rnd: int) -> bytes:
    method = ("GET", "HEAD", "DELETE")[i % 3] if i % 7 else "GET"
    version = "HTTP/1.0" if i % 5 == 0 else "HTTP/1.1"
    extra = ""
    if i % 4 == 0:
        extra += f"X-Twice: a{i}\r\nX-Twice: b{i}\r\n"   # repeated name
    if version == "HTTP/1.0":
        extra += "Connection: keep-alive\r\n"
    query = f"?id={i}&round={rnd}" if i % 2 else ""
    return (f"{method} /echo{query} {version}\r\nHost: t{i}\r\nX-Id: {i}\r\n"
            f"{extra}\r\n").encode()


def test_each_connection_gets_its_own_answer(server):
    socks = _open(server, CONNS)
    try:
        for rnd in range(3):
            for i, s in enumerate(socks):
                s.sendall(_request(i, rnd))
            for i, s in enumerate(socks):
                head = _request(i, rnd).startswith(b"HEAD")
                status, headers, body, rest = read_response(s, 10.0, head=head)
                assert status == 200, (i, rnd)
                assert rest == b""
                if head:
                    assert body == b""
                    continue
                env = json.loads(body)
                assert env["HTTP_X_ID"] == str(i)
                assert env["HTTP_HOST"] == f"t{i}"
                assert env["REQUEST_METHOD"] == _request(i, rnd).split(b" ")[0].decode()
                assert env["SERVER_PROTOCOL"] == ("HTTP/1.0" if i % 5 == 0 else "HTTP/1.1")
                assert env["QUERY_STRING"] == (f"id={i}&round={rnd}" if i % 2 else "")
                assert env["PATH_INFO"] == "/echo"
                if i % 4 == 0:
                    assert env["HTTP_X_TWICE"] == f"a{i}, b{i}"
                else:
                    assert "HTTP_X_TWICE" not in env
    finally:
        for s in socks:
            s.close()


def _post(i: int, rnd: int) -> tuple[bytes, bytes, str]:
    """Connection i's request in round rnd: (bytes to send, the body the
    answer must carry, what kind of exchange it is)."""
    body = f"<{i}:{rnd}>".encode() * (1 + (i * 7919 + rnd * 104729) % 3000)
    kind = ("slow" if i % 5 == 0 else "large" if i % 13 == 0 else
            "close" if i % 17 == 0 else "pipelined" if i % 7 == 0 else "echo")
    if kind == "large":
        body = body * (1 + (1 << 17) // len(body))   # an answer too big to wait
    path = "/sleep?s=0.002" if kind == "slow" else f"/body?n={i}"
    extra = "Connection: close\r\n" if kind == "close" else ""
    data = (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
            f"{extra}\r\n").encode() + body
    if kind == "pipelined":
        data += f"GET /echo?n={i}&r={rnd} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    return data, (b"slept" if kind == "slow" else body), kind


def test_answers_to_requests_with_a_body_reach_their_own_clients(server):
    """Requests with a body are answered one at a time, and a small answer
    that keeps its connection waits for the turn's burst of sends (or goes
    with a later one once the first waited FW_HOLD_US): with each client's
    own body echoed, 2 ms calls among fast ones, answers too large to
    wait, closing answers and a pipelined request behind the body, every
    client gets exactly its own answers, in order."""
    socks = _open(server, 90)
    try:
        for rnd in range(4):
            sent = [_post(i, rnd) for i in range(len(socks))]
            for s, (data, _, _) in zip(socks, sent):
                s.sendall(data)
            for i, (s, (_, want, kind)) in enumerate(zip(socks, sent)):
                status, headers, body, rest = read_response(s, 10.0)
                assert (status, len(body)) == (200, len(want)), (i, rnd, kind)
                assert body == want, (i, rnd, kind)
                if kind == "pipelined":
                    body, rest = _split_one(s, rest)
                    assert json.loads(body)["QUERY_STRING"] == f"n={i}&r={rnd}"
                assert rest == b"", (i, rnd, kind)
                if kind == "close":
                    s.settimeout(5.0)
                    assert s.recv(1) == b"", (i, rnd)
                    s.close()
                    socks[i] = server.connect(10.0)
    finally:
        for s in socks:
            s.close()


def _split_one(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    """The body of the response that starts `buf` (the rest of it read
    from sock), and what follows it."""
    sock.settimeout(10.0)
    while b"\r\n\r\n" not in buf:
        more = sock.recv(65536)
        assert more, "closed inside a head"
        buf += more
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(rest) < length:
        more = sock.recv(65536)
        assert more, "closed inside a body"
        rest += more
    return rest[:length], rest[length:]


def test_a_failing_request_does_not_disturb_its_batch(server):
    socks = _open(server, 60)
    try:
        for _ in range(2):
            for i, s in enumerate(socks):
                path = "/raise-before" if i % 3 == 0 else f"/echo?n={i}"
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            for i, s in enumerate(socks):
                status, headers, body, _ = read_response(s, 10.0)
                if i % 3 == 0:
                    assert status == 500
                else:
                    assert status == 200
                    assert json.loads(body)["QUERY_STRING"] == f"n={i}"
            # A 500 from an app error closes its connection: reopen those.
            socks = [server.connect(10.0) if i % 3 == 0 else s
                     for i, s in enumerate(socks)]
    finally:
        for s in socks:
            s.close()


def test_pipelined_close_in_the_middle_closes(server):
    """A request that asks to close, with more requests behind it in the
    same packet: it is answered, the connection closes, and nothing
    after it is answered (its answer is not left waiting for a later
    request that never comes)."""
    for tail in (b"GET /echo?n=2 HTTP/1.1\r\nHost: t\r\n\r\n", b"GET /ec"):
        sock = server.connect()
        try:
            # One exchange first: the connection is then settled in the
            # loop, and no readiness event of its first turn is pending.
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock)[0] == 200
            time.sleep(0.05)
            sock.sendall(b"GET /echo?n=0 HTTP/1.1\r\nHost: t\r\n\r\n"
                         b"GET /echo?n=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                         + tail)
            data, closed = read_until_close(sock, 3.0)
        finally:
            sock.close()
        assert closed, f"the connection stayed open after Connection: close: {data!r}"
        answers = parse_responses(data)
        assert [json.loads(body)["QUERY_STRING"] for _, _, body in answers] == \
            ["n=0", "n=1"]


def test_deep_pipelines_answer_in_order(server):
    """Many connections, each with 40 requests in one send: every answer
    is its own request's, in order (pipelined requests are answered one
    per connection per round, together with the other connections')."""
    socks = _open(server, 30)
    try:
        for c, sock in enumerate(socks):
            sock.sendall(b"".join(
                f"GET /echo?c={c}&n={n} HTTP/1.1\r\nHost: t\r\nX-Id: {c}-{n}\r\n\r\n".encode()
                for n in range(40)))
        for c, sock in enumerate(socks):
            data = b""
            while data.count(b"HTTP/1.1 200") < 40:
                more = sock.recv(1 << 20)
                assert more, f"connection {c} closed early after {data.count(b'HTTP/1.1 ')}"
                data += more
            answers = parse_responses(data)
            got = [json.loads(body)["QUERY_STRING"] for _, _, body in answers]
            assert got == [f"c={c}&n={n}" for n in range(40)]
    finally:
        for sock in socks:
            sock.close()


def test_answers_held_for_a_burst_reach_their_own_clients(server):
    """Finished answers in a round are held for one burst of sends, at
    most FW_HOLD_US, and go out at the round's end or at the first call
    after that moment: with app calls of 2 ms among fast ones (both moments
    happen in each round), an answer that goes out at once (a stream), and
    a closing answer, every connection still gets its own answer, whole."""
    socks = _open(server, 90)
    try:
        for rnd in range(3):
            paths = []
            for i, s in enumerate(socks):
                path = ("/sleep?s=0.002" if i % 3 == 0 else
                        "/stream" if i % 11 == 0 else f"/echo?n={i}&r={rnd}")
                paths.append(path)
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            for i, s in enumerate(socks):
                status, headers, body, rest = read_response(s, 10.0)
                assert status == 200, (i, rnd)
                assert rest == b""
                if paths[i].startswith("/sleep"):
                    assert body == b"slept"
                elif paths[i] == "/stream":
                    assert body
                else:
                    assert json.loads(body)["QUERY_STRING"] == f"n={i}&r={rnd}"
    finally:
        for s in socks:
            s.close()


def test_a_deferred_answer_waits_for_at_most_one_more_call(server):
    """A small answer given on its own waits for the turn's end, but not
    past the first app call that starts once it has waited 250 µs: with
    three requests that come while the loop is busy (an echo, then two
    calls of 0.3 s, all with a body so that each is answered on its own),
    the echo's answer leaves before the second slow call, not at the
    turn's end."""
    blocker, echo, slow1, slow2 = socks = [server.connect(10.0) for _ in range(4)]
    try:
        # One exchange on each first: the connections are then accepted
        # and settled, and the three requests below come in one turn.
        for sock in socks:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock, 10.0)[0] == 200
        blocker.sendall(b"GET /sleep?s=0.3 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.05)   # the loop is inside that call now
        for sock, path in ((echo, "/body"), (slow1, "/sleep?s=0.3"),
                           (slow2, "/sleep?s=0.3")):
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\n"
                         f"Content-Length: 4\r\n\r\nping".encode())
            time.sleep(0.02)   # so that they are reported in this order
        assert read_response(blocker, 10.0)[0] == 200
        freed = time.monotonic()
        status, _, body, _ = read_response(echo, 10.0)
        waited = time.monotonic() - freed
        assert (status, body) == (200, b"ping")
        # One slow call (0.3 s) after it, not both (0.6 s).
        assert waited < 0.5, f"the echo's answer came {waited:.2f} s after the loop was free"
        for sock in (slow1, slow2):
            assert read_response(sock, 10.0)[2] == b"slept"
    finally:
        for sock in socks:
            sock.close()


def test_no_app_call_for_a_client_that_reset_its_connection(start_server):
    """Inline: requests that arrive while the app is busy are answered
    together in the next round.  A client that sent its request and then
    reset the connection in the meantime is gone: the app is not called
    for it (it was, for each of them)."""
    import struct

    srv = start_server("apps:router", "--threads", "0")
    clients = []
    for _ in range(30):
        c = srv.connect(timeout=10)
        c.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.recv(1000).startswith(b"HTTP/1.1 200")
        clients.append(c)
    busy = srv.connect(timeout=10)
    busy.sendall(b"GET /sleep?s=0.6 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.2)   # the loop is in the app call now
    for c in clients:
        c.sendall(b"GET /counted HTTP/1.1\r\nHost: t\r\n\r\n")
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()     # a reset, with the request unanswered
    assert busy.recv(1000).startswith(b"HTTP/1.1 200")
    busy.close()
    # ... and a client that only half-closes still gets its answer.
    half = srv.connect(timeout=10)
    half.sendall(b"GET /counted HTTP/1.1\r\nHost: t\r\n\r\n")
    half.shutdown(socket.SHUT_WR)
    assert b"counted" in half.recv(1000)
    half.close()
    got = srv.connect(timeout=10)
    got.sendall(b"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := got.recv(1000):
        data += chunk
    assert data.endswith(b"\r\n\r\n1"), data
