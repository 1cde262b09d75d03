"""Load with an oracle: many connections send requests with random header
sets, paths, queries and bodies, many of them completing in the same
server turn (so that they are gathered into one batch while requests of
new header-name sets arrive), some pipelined two or three to a write.
The app echoes its environ; every client checks that what its app call
saw is exactly what it sent.

The run is random but reproducible: the seed is printed, and
FASTWSGI_ORACLE_SEED=<seed> repeats it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import string
import time
from urllib.parse import quote, unquote_to_bytes

SEED = int(os.environ.get("FASTWSGI_ORACLE_SEED") or random.SystemRandom().randrange(1 << 32))
CONNECTIONS = 50
REQUESTS = 3000

COMMON = [
    "Accept", "Accept-Language", "Accept-Encoding", "Accept-Charset", "Cookie",
    "User-Agent", "Authorization", "If-None-Match", "If-Modified-Since",
    "Referer", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-Ip",
    "Cache-Control", "Pragma", "Origin", "Dnt", "Upgrade-Insecure-Requests",
    "Sec-Fetch-Mode", "Sec-Fetch-Site", "X-Csrf-Token",
]
# the server's own business, never compared: framing and connection fields
IGNORED = {"HTTP_TRANSFER_ENCODING", "HTTP_CONNECTION"}
VALUE_CHARS = string.ascii_letters + string.digits + "!#$%&'()*+,-./:;<=>?@[]^_`{|}~\" "
PATH_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"
QUERY_CHARS = string.ascii_letters + string.digits + "-._~!$'()*+,;:@/?%"


class Oracle:
    """Makes requests and remembers what each one must look like."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        letters = string.ascii_letters
        self.extra_names = sorted({"X-" + "".join(rng.choices(letters, k=rng.randint(3, 12)))
                                   for _ in range(400)})
        # Most requests come from a client that sends the same names in
        # the same order each time (a known shape: gathered for the batch);
        # there are more such sets than the server's 64 shape slots.
        self.profiles = []
        for _ in range(80):
            names = ["Host", "X-Request-Id", *rng.sample(COMMON, rng.randint(0, 12)),
                     *rng.sample(self.extra_names, rng.randint(0, 2))]
            rng.shuffle(names)
            self.profiles.append(names)
        self.serial = 0

    def value(self) -> str:
        rng = self.rng
        v = "".join(rng.choices(VALUE_CHARS, k=rng.randint(1, 60))).strip()
        if rng.random() < 0.05:
            v += "\u00e9\u00ff"      # obs-text: latin-1 bytes
        return v or "v"

    def path(self) -> str:
        rng = self.rng
        segments = []
        for _ in range(rng.randint(0, 4)):
            seg = "".join(rng.choices(PATH_CHARS, k=rng.randint(1, 12)))
            if rng.random() < 0.3:
                seg += "%" + f"{rng.randint(1, 255):02X}"   # never %00
            segments.append(seg)
        return "/" + "/".join(segments)

    def request(self, port: int) -> tuple[bytes, dict]:
        rng = self.rng
        self.serial += 1
        token = f"t{self.serial}-{rng.getrandbits(40):010x}"
        method = rng.choices(["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                             weights=[70, 20, 4, 3, 3])[0]
        path = self.path()
        pairs = [f"tok={token}"]
        for _ in range(rng.randint(0, 3)):
            pairs.append("".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 6))) + "="
                         + "".join(rng.choices(QUERY_CHARS, k=rng.randint(0, 10))))
        rng.shuffle(pairs)
        query = "&".join(pairs)
        target = f"{path}?{query}"
        host = f"h{rng.randint(0, 9)}.example"
        profile = rng.random() < 0.7
        if profile:
            names = rng.choice(self.profiles)
        else:
            # names never seen together before (a new shape), perhaps with
            # one of them repeated, perhaps in another case
            names = ["Host", "X-Request-Id", *rng.sample(COMMON, rng.randint(0, 12)),
                     *rng.sample(self.extra_names, rng.randint(0, 3))]
            if len(names) > 2 and rng.random() < 0.3:
                name = rng.choice(names[2:])
                names.append(name.lower() if rng.random() < 0.5 else name)
        fields = [(n, host if n == "Host" else token if n == "X-Request-Id" else self.value())
                  for n in names]
        body = b""
        framing: list[tuple[str, str]] = []
        expected: dict = {}
        if method in ("POST", "PUT"):
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 1500)))
            if rng.random() < 0.5:
                ctype = rng.choice(["application/json", "text/plain; charset=utf-8",
                                    "application/x-www-form-urlencoded"])
                framing.append(("Content-Type", ctype))
                expected["CONTENT_TYPE"] = ctype
            framing.append(("Content-Length", str(len(body))))
            expected["CONTENT_LENGTH"] = str(len(body))
        elif rng.random() < 0.05:
            framing.append(("Content-Length", "0"))
            expected["CONTENT_LENGTH"] = "0"
        all_fields = fields + framing
        if not profile:
            rng.shuffle(all_fields)
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in all_fields)
        # repeated names are joined with ", " in the order they came
        http: dict[str, str] = {}
        for n, v in all_fields:
            if (n, v) in framing:
                continue
            key = "HTTP_" + n.upper().replace("-", "_")
            http[key] = http[key] + ", " + v if key in http else v
        expected.update(http)
        expected.update({
            "REQUEST_METHOD": method,
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query,
            "REQUEST_URI": target,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": str(port),
            "body_len": len(body),
        })
        return head.encode("latin-1") + b"\r\n" + body, expected


def compare(env: dict, expected: dict) -> list[str]:
    problems = []
    sent = {k for k in expected if k.startswith("HTTP_")}
    seen = {k for k in env if k.startswith("HTTP_")} - IGNORED
    if sent != seen:
        problems.append(f"HTTP_* keys: missing {sorted(sent - seen)}, extra {sorted(seen - sent)}")
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if key not in expected and key in env:
            problems.append(f"{key} {env[key]!r} was not sent")
    for key, want in expected.items():
        if env.get(key) != want:
            problems.append(f"{key}: sent {want!r}, app saw {env.get(key)!r}")
    return problems


class Client:
    """One keep-alive connection and the bytes received on it that no
    response has taken yet (pipelined answers arrive together)."""

    def __init__(self, srv) -> None:
        self.sock = srv.connect(10.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = self.sock.getsockname()[1]
        self.buf = bytearray()

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass    # the server closed it: reading the answers says so

    def _more(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no answer in time")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed, {len(self.buf)} bytes unread")
        self.buf += data

    def response(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next response; all of them carry a Content-Length."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._more(deadline)
        end = self.buf.index(b"\r\n\r\n")
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[:end + 4]
        status = int(lines[0].split(" ")[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise ConnectionError(f"a response without Content-Length: {lines}")
        while len(self.buf) < length:
            self._more(deadline)
        body = bytes(self.buf[:length])
        del self.buf[:length]
        return status, body

    def close(self) -> None:
        self.sock.close()


def test_every_request_sees_exactly_its_own_environ(start_server):
    print(f"\nenviron oracle: seed {SEED} (repeat with FASTWSGI_ORACLE_SEED={SEED})")
    rng = random.Random(SEED)
    oracle = Oracle(rng)
    srv = start_server("apps:environ_echo")
    clients = [Client(srv) for _ in range(CONNECTIONS)]
    problems: list[str] = []
    statuses: dict[int, int] = {}
    dropped = 0
    sent = 0
    rounds = 0
    start = time.monotonic()
    try:
        # bounded even when the server misbehaves: stop early once the
        # failure is plain
        while sent < REQUESTS and len(problems) < 200 and time.monotonic() - start < 30:
            rounds += 1
            plan = []
            for c in clients:
                k = rng.choices([1, 2, 3], weights=[60, 25, 15])[0]
                plan.append([oracle.request(c.port) for _ in range(k)])
            sent += sum(map(len, plan))
            data = [b"".join(r for r, _ in reqs) for reqs in plan]
            together = rng.random() < 0.7
            for c, d in zip(clients, data):
                c.send(d[:-1] if together else d)
            if together:
                # the last bytes together: many requests complete in the
                # same server turn
                time.sleep(0.01)
                for c, d in zip(clients, data):
                    c.send(d[-1:])
            for i, reqs in enumerate(plan):
                c = clients[i]
                for j, (_, expected) in enumerate(reqs):
                    where = f"round {rounds} conn {i} request {j} ({expected['HTTP_X_REQUEST_ID']})"
                    try:
                        status, body = c.response()
                    except (ConnectionError, OSError) as e:
                        dropped += 1
                        problems.append(f"{where}: dropped ({e})")
                        status = None
                    else:
                        statuses[status] = statuses.get(status, 0) + 1
                        if status != 200:
                            problems.append(f"{where}: status {status}")
                    if status != 200:
                        # the connection is over: the rest of its requests
                        # are not answered
                        c.close()
                        clients[i] = Client(srv)
                        break
                    for p in compare(json.loads(body), expected):
                        problems.append(f"{where}: {p}")
                else:
                    if c.buf:
                        problems.append(f"round {rounds} conn {i}: {len(c.buf)} extra bytes")
                        c.buf.clear()
    finally:
        for c in clients:
            c.close()
    took = time.monotonic() - start
    print(f"environ oracle: {sent} requests in {rounds} rounds on {CONNECTIONS} connections, "
          f"{took:.2f} s; statuses {statuses}; {dropped} dropped; {len(problems)} problems")
    assert not problems, (f"seed {SEED}: {len(problems)} problems, first ones:\n"
                          + "\n".join(problems[:25]))
    assert sent >= REQUESTS
    assert srv.alive()


def test_oracle_checks_what_it_should():
    """The oracle itself: a mismatch of any kind is reported."""
    oracle = Oracle(random.Random(1))
    _, expected = oracle.request(1234)
    env = {k: v for k, v in expected.items()}
    assert compare(env, expected) == []
    for key in ("PATH_INFO", "QUERY_STRING", "REMOTE_PORT", "HTTP_X_REQUEST_ID"):
        bad = dict(env, **{key: "wrong"})
        assert compare(bad, expected), key
    assert compare(dict(env, HTTP_X_INTRUDER="1"), expected)
    missing = dict(env)
    del missing["HTTP_HOST"]
    assert compare(missing, expected)
    assert quote("/a b") == "/a%20b"
