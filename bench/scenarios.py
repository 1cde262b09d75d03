"""The scenarios, as a registry: adding one is adding an entry to SCENARIOS
(and, if it needs a new app, a callable in apps.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from bench import apps

BodyCheck = Callable[[bytes], "str | None"]  # None when the body is right


def exact(expected: bytes) -> BodyCheck:
    def check(body: bytes) -> str | None:
        if body == expected:
            return None
        if len(body) != len(expected):
            return f"body is {len(body)} bytes, expected {len(expected)}"
        first = next(i for i, (a, b) in enumerate(zip(body, expected)) if a != b)
        return f"body differs from byte {first} on"
    return check


def json_equal(expected: object) -> BodyCheck:
    def check(body: bytes) -> str | None:
        try:
            got = json.loads(body)
        except ValueError:
            return f"body is not JSON: {body[:60]!r}"
        return None if got == expected else f"JSON body {got!r} != {expected!r}"
    return check


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    app: str  # callable name in apps.py
    check: BodyCheck
    kind: str = "load"  # "load" (wrk) or "idle" (held connections, RSS)
    connections: int = 50
    bar: bool = True  # drawn in the chart; False = recorded in the tables only
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body_size: int = 0  # request body bytes
    pipeline: int = 1  # requests per write
    expect_close: bool = False  # server must close after answering
    # nginx `location /` contents for the ceiling run; None = no nginx run.
    # {dir} is the directory holding the served files, {file} and {big} their names.
    nginx: str | None = 'default_type text/plain; return 200 "Hello, World!";'
    needs: tuple[str, ...] = ()  # extra packages in every server venv
    # Part of --smoke.  sleep200 is not: an inline server (fastwsgi's
    # default, bjoern) cannot serve it, and its 1000 queued 200 ms calls
    # outlast the check after the load.
    in_smoke: bool = True
    # Worker processes per server. Above 1 only the servers with a
    # multi-process mode run (ServerSpec.multi); the others are n/a.
    workers: int = 1
    # taskset CPU lists. One worker has CPU 0 and wrk CPU 1; several workers
    # on this 2-core machine get both CPUs, and so does wrk, since pinning
    # it to one of them would leave a worker only half a core.
    server_cpus: str = "0"
    wrk_cpus: str = "1"
    # A threaded scenario: only the servers with an app thread pool run it
    # (ServerSpec.threaded), with `workers` workers even if they take no part
    # in the multi-* rows, and servers.APP_THREADS[app] threads per worker;
    # the others are n/a.
    threaded: bool = False
    # HTTPS (wrk https://, the validator over TLS with the run's certificate):
    # only the servers with TLS options (ServerSpec.tls) and nginx run it,
    # the others are n/a.
    tls: bool = False
    # The ratios' reference in this scenario when the run's reference takes
    # no part in it (n/a, e.g. bjoern without TLS); None: ratios stay empty.
    fallback_reference: str | None = None

    @property
    def app_ref(self) -> str:
        return f"apps:{self.app}"

    def request(self) -> bytes:
        """One request exactly as the validator sends it (wrk sends the same
        method, headers and body, see load.py)."""
        lines = [f"{self.method} / HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        body = b""
        if self.body_size:
            body = request_body(self.body_size)
            lines += ["Content-Type: application/octet-stream",
                      f"Content-Length: {len(body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def request_body(size: int) -> bytes:
    return b"x" * size  # the same bytes wrk sends (string.rep("x", n))


_HELLO = exact(apps.HELLO)
_FILE_NGINX = ("default_type application/octet-stream; root {dir}; "
               "rewrite ^ /{file} break;")
# The TLS rows' reference when the run's (bjoern by default) has no TLS.
TLS_REFERENCE = "granian"

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("hello", "13-byte body with Content-Length",
                 "hello", _HELLO),
        Scenario("hello-close", "same with Connection: close (accept + teardown cost)",
                 "hello", _HELLO, headers=(("Connection", "close"),), expect_close=True),
        Scenario("pipelined", "16 requests per write", "hello", _HELLO, pipeline=16),
        Scenario("c1000", "hello with 1000 concurrent connections", "hello", _HELLO,
                 connections=1000),
        # nginx has no generator to stream: its fixed-length answer is the ceiling.
        Scenario("chunked", "generator body without Content-Length", "chunked",
                 exact(b"".join(apps.CHUNKS))),
        Scenario("big", "1 MiB body from memory", "big", exact(apps.BIG_BODY),
                 nginx="default_type application/octet-stream; root {dir}; "
                       "rewrite ^ /{big} break;"),
        Scenario("file", "10 MiB file via wsgi.file_wrapper", "file",
                 exact(apps.pattern_bytes(apps.FILE_SIZE)), nginx=_FILE_NGINX),
        Scenario("post", "64 KiB request body read fully by the app", "post",
                 exact(str(apps.POST_SIZE).encode()), method="POST",
                 body_size=apps.POST_SIZE,
                 nginx=f'default_type text/plain; return 200 "{apps.POST_SIZE}";'),
        Scenario("flask", "a small Flask JSON route (framework cost dominates)",
                 "flask_app", json_equal(apps.FLASK_PAYLOAD), needs=("flask",),
                 nginx="default_type application/json; "
                       "return 200 '" + json.dumps(apps.FLASK_PAYLOAD) + "';"),
        # HTTPS with the run's self-signed ECDSA P-256 certificate. Only the
        # servers with TLS options take part; --smoke runs tls-close alone
        # (handshake, one request, close_notify: the most TLS per second).
        Scenario("tls-hello", "hello over HTTPS (keep-alive)", "hello", _HELLO,
                 tls=True, fallback_reference=TLS_REFERENCE, in_smoke=False),
        Scenario("tls-close", "hello over HTTPS with Connection: close (a TLS "
                 "handshake per request)", "hello", _HELLO,
                 headers=(("Connection", "close"),), expect_close=True,
                 tls=True, fallback_reference=TLS_REFERENCE),
        Scenario("tls-file", "the 10 MiB file over HTTPS", "file",
                 exact(apps.pattern_bytes(apps.FILE_SIZE)), nginx=_FILE_NGINX,
                 tls=True, fallback_reference=TLS_REFERENCE, in_smoke=False),
        Scenario("idle", "RSS growth per idle keep-alive connection; latency of "
                 "a fresh request while they are held",
                 "hello", _HELLO, kind="idle", connections=10000, bar=False),
        # The same over HTTPS: every held connection a TLS session (a full
        # handshake, one request answered over it). Its KiB per connection
        # is compared with granian's where the run's reference has no TLS.
        Scenario("tls-idle", "RSS growth per idle TLS connection (full handshake, "
                 "one request answered over it); latency of a fresh HTTPS request "
                 "while they are held", "hello", _HELLO, kind="idle", connections=10000,
                 bar=False, tls=True, fallback_reference=TLS_REFERENCE, in_smoke=False),
        Scenario("sleep5ms", "blocking app sleeping 5 ms per request (recorded, "
                 "not charted: it measures the threading model, not HTTP)",
                 "sleep5ms", _HELLO, bar=False, nginx=None),
        Scenario("sleep200", "Flask view waiting 200 ms, 1000 connections: the limit "
                 "is 5,000 req/s (recorded, not charted)", "flask_sleep200", _HELLO,
                 connections=1000, bar=False, nginx=None, needs=("flask",),
                 in_smoke=False),
        # Multi-process: 2 workers per server, server and wrk sharing both
        # CPUs. Not charted (the bars are one worker on one core) and not in
        # --smoke (few servers have such a mode; smoke stays as it was).
        Scenario("multi-hello", "hello served by 2 worker processes (server and wrk "
                 "share both CPUs)", "hello", _HELLO, bar=False, nginx=None,
                 in_smoke=False, workers=2, server_cpus="0,1", wrk_cpus="0,1"),
        Scenario("multi-c1000", "multi-hello with 1000 concurrent connections",
                 "hello", _HELLO, connections=1000, bar=False, nginx=None,
                 in_smoke=False, workers=2, server_cpus="0,1", wrk_cpus="0,1"),
        # A deployment: nginx's upstream keepalive pool (8 long-lived
        # connections) in front of 2 workers × 4 app threads, and an app that
        # computes. Latency, and how evenly the 2 workers share the work.
        Scenario("fairness", "app computing 1 ms per request, 2 workers × 4 threads, "
                 "8 keep-alive connections: latency and each worker's CPU share",
                 "cpu1ms", _HELLO, connections=8, bar=False, nginx=None,
                 in_smoke=False, workers=2, server_cpus="0,1", wrk_cpus="0,1",
                 threaded=True),
    )
}

BIG_FILE_NAME = "big.bin"
FILE_NAME = "file.bin"
