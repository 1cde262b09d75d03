"""--statsd-host: gunicorn's StatsD metrics, under gunicorn's names, sent
over UDP by one thread of the master (or of the process without a master)
from the counters the loops keep in C.  Nothing is sent from the request
path: gunicorn sends a datagram per request, here the counters are read
once a second and what changed since is sent, summed over every worker.

- ``gunicorn.requests`` and ``gunicorn.request.status.CODE``: counts.
- ``gunicorn.request.duration``: timings (ms) with a sample rate, so that
  StatsD counts one sample per request: per bucket of the loops' duration
  histogram, the bucket's middle sent with ``@1/n`` for its n requests
  (when every request of the second fell in one bucket, their exact mean).
- ``gunicorn.workers``: a gauge.
- ``gunicorn.log.critical``, ``.error``, ``.warning``, ``.exception``:
  counts of the error log's records (an error with a traceback is an
  exception, as gunicorn counts it).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any, Optional

from .config import Config, statsd_target
from .logs import logger
from .metrics import BUCKETS, LOG_KINDS, Totals

FLUSH_EVERY = 1.0  # seconds between two sends
PACKET_MAX = 1432  # bytes in one datagram: lines past it go in the next
# Each duration bucket's value in ms: the middle of its bounds; the last,
# unbounded one, its lower bound (the exact mean is used when it can be).
_BOUNDS_MS = (0.0, *(b * 1000 for b in BUCKETS))
_MIDDLE_MS = tuple((lo + hi) / 2 for lo, hi in zip(_BOUNDS_MS, _BOUNDS_MS[1:])) \
    + (_BOUNDS_MS[-1],)

# The totals now, and the number of workers (None: no gauge to send).
Reader = Callable[[], tuple[Totals, Optional[int]]]


class LogCounter(logging.Handler):
    """Counts the fastwsgi logger's records by kind (LOG_KINDS) into
    `target`: a list, or a worker's fw_counters.log in the master's shared
    pages (the handler's lock makes each count whole)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.target: Any = [0] * len(LOG_KINDS)

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.CRITICAL:
            kind = 0
        elif record.levelno >= logging.ERROR:
            kind = 3 if record.exc_info else 1
        else:
            kind = 2
        self.target[kind] += 1


_counter: LogCounter | None = None


def count_logs() -> LogCounter:
    """The process's log counter, on the fastwsgi logger (once)."""
    global _counter
    if _counter is None:
        _counter = LogCounter()
        logger.addHandler(_counter)
    return _counter


def lines(now: Totals, before: Totals, workers: int | None) -> list[str]:
    """What changed from `before` to `now`, as StatsD lines without the
    prefix and the tags."""
    out: list[str] = []
    statuses = [(i + 100, a - b) for i, (a, b) in enumerate(zip(now.status, before.status))
                if a != b]
    requests = sum(n for _, n in statuses)
    if requests:
        out.append(f"gunicorn.requests:{requests}|c|@1.0")
    out += [f"gunicorn.request.status.{code}:{n}|c|@1.0" for code, n in statuses]
    counts = [a - b for a, b in zip(now.duration, before.duration)]
    timed = sum(counts)
    if timed:
        spent_ms = (now.duration_us - before.duration_us) / 1000
        filled = [i for i, n in enumerate(counts) if n]
        for i in filled:
            value = spent_ms / timed if len(filled) == 1 else _MIDDLE_MS[i]
            rate = "" if counts[i] == 1 else f"|@{1 / counts[i]:.12g}"
            out.append(f"gunicorn.request.duration:{value:.3f}|ms{rate}")
    out += [f"gunicorn.log.{kind}:{a - b}|c|@1.0"
            for kind, a, b in zip(LOG_KINDS, now.log, before.log) if a != b]
    if workers is not None:
        out.append(f"gunicorn.workers:{workers}|g")
    return out


def packets(body: list[str], prefix: str, tags: str) -> list[bytes]:
    """Lines with the prefix and tags, as few datagrams as fit."""
    out: list[bytes] = []
    current = b""
    for line in body:
        data = f"{prefix}{line}{tags}".encode("ascii")
        if current and len(current) + 1 + len(data) > PACKET_MAX:
            out.append(current)
            current = b""
        current = current + b"\n" + data if current else data
    if current:
        out.append(current)
    return out


class StatsdSender:
    """Reads the totals once a second with `read` and sends what changed."""

    def __init__(self, cfg: Config, read: Reader) -> None:
        target = statsd_target(cfg.statsd_host)
        assert target is not None  # checked with the settings
        family, self.address = target
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)  # a full buffer drops a datagram, never waits
        # gunicorn's spelling: "app" and "app." both give "app.".
        self.prefix = cfg.statsd_prefix.rstrip(".") + "." if cfg.statsd_prefix else ""
        self.tags = f"|#{cfg.dogstatsd_tags}" if cfg.dogstatsd_tags else ""
        self.read = read
        self.before = Totals()
        self.failing = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fastwsgi-statsd", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Send what is left, then stop."""
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()
        self.sock.close()

    def _run(self) -> None:
        while not self.done.wait(FLUSH_EVERY):
            self.flush()
        self.flush()

    def flush(self) -> None:
        now, workers = self.read()
        body = lines(now, self.before, workers)
        self.before = now
        for data in packets(body, self.prefix, self.tags):
            try:
                self.sock.sendto(data, self.address)
                self.failing = False
            except OSError as exc:
                # Said once per outage, not once a second.
                if not self.failing:
                    logger.warning("cannot send StatsD metrics to %s: %s",
                                   _shown(self.address), exc.strerror or exc)
                self.failing = True
                return


def _shown(address: Any) -> str:
    """An address as the setting wrote it."""
    if isinstance(address, tuple):
        host, port = address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"unix:{address}"

