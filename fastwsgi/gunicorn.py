"""A gunicorn worker class: gunicorn's arbiter, configuration and hooks,
with fastwsgi's C loop serving in each worker.

    gunicorn -k fastwsgi.gunicorn.Worker -w 4 myapp:app

What is taken from gunicorn's settings: the sockets, ``threads`` (1:
inline, more: a pool of that many), ``keepalive``, ``graceful_timeout``,
``max_requests`` with its jitter, ``limit_request_*``,
``forwarded_allow_ips``, ``proxy_protocol``, ``accesslog`` with
``access_log_format`` (written by fastwsgi's own access log, in C).  The
heartbeat gunicorn's arbiter watches is beaten only while the loop is
healthy (a loop stuck in an app call past ``timeout`` is killed, as with
gunicorn's own workers).  Signals are gunicorn's: SIGTERM graceful,
SIGINT/SIGQUIT at once (worker_int called), SIGUSR1 reopens the logs.
``pre_request`` and ``post_request`` are called when the config sets them
(the app is wrapped only then).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from gunicorn.workers.base import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
    Worker as _GunicornWorker,
)

from .beats import Beats, clock_ms
from .config import Config, make_config
from .hooks import with_request_hooks
from .listeners import inherit_listener
from .logs import setup
from .server import Server, WorkerRole

_UNLIMITED = 65536  # gunicorn's 0 ("no limit") for a size, here its largest


def settings_from(cfg: Any) -> Config:
    """fastwsgi's settings from gunicorn's."""
    threads = int(getattr(cfg, "threads", 1) or 1)
    line = int(cfg.limit_request_line) or _UNLIMITED
    field = int(cfg.limit_request_field_size) or _UNLIMITED
    values: dict[str, Any] = {
        "threads": threads if threads > 1 else 0,
        "keepalive_timeout": max(float(cfg.keepalive), 0.01),
        "graceful_timeout": float(cfg.graceful_timeout),
        "limit_request_line": min(max(line, 64), _UNLIMITED),
        "limit_request_fields": min(max(int(cfg.limit_request_fields), 1), 256),
        "limit_request_field_size": min(max(field, 64), _UNLIMITED),
        "forwarded_allow_ips": _addresses(cfg.forwarded_allow_ips),
        "secure_scheme_headers": dict(getattr(cfg, "secure_scheme_headers", None) or {}),
        "proxy_protocol": _proxy_protocol(getattr(cfg, "proxy_protocol", False)),
        "proxy_allow_ips": _addresses(getattr(cfg, "proxy_allow_ips", "127.0.0.1,::1")),
        "log_level": str(cfg.loglevel).lower(),
    }
    # gunicorn's sendfile is None unless --no-sendfile (or sendfile =
    # False) turned it off; None keeps fastwsgi's own default.
    if getattr(cfg, "sendfile", None) is False:
        values["sendfile"] = "off"
    if cfg.accesslog:
        values["access_log"] = cfg.accesslog
        values["access_log_format"] = cfg.access_log_format
    if getattr(cfg, "certfile", None):
        # TLS is the C loop's, with gunicorn's files and choices (its
        # ssl_version has no counterpart: 1.2 and 1.3 are negotiated).
        values.update(certfile=cfg.certfile, keyfile=cfg.keyfile or "",
                      ca_certs=cfg.ca_certs or "", cert_reqs=int(cfg.cert_reqs),
                      ciphers=cfg.ciphers or "",
                      suppress_ragged_eofs=bool(cfg.suppress_ragged_eofs))
    return make_config(values)


def _addresses(value: Any) -> str:
    """gunicorn keeps its address lists as a string or a list of them."""
    return value if isinstance(value, str) else ",".join(value)


def _proxy_protocol(value: Any) -> bool:
    """gunicorn up to 22 has a flag; later ones say off, v1, v2 or auto."""
    if isinstance(value, str):
        return value.lower() not in ("off", "false", "0", "")
    return bool(value)


class Worker(_GunicornWorker):  # type: ignore[misc, unused-ignore]
    """One gunicorn worker: a fastwsgi server on the arbiter's sockets."""

    def run(self) -> None:
        # gunicorn's handlers stand while the app loads; the server puts its
        # own in place (gunicorn's meanings) once it serves.
        cfg = settings_from(self.cfg)
        setup(cfg.log_level, cfg.log_format)
        beats = Beats(1)
        slot = beats.pointer(0)
        limit = self.max_requests if self.max_requests < sys.maxsize else 0
        listeners = [inherit_listener(os.dup(s.fileno()), "gunicorn") for s in self.sockets]
        if cfg.certfile:
            for listener in listeners:
                listener.secure()
        role = WorkerRole(self.age, slot, 1, limit, gunicorn=True,
                          on_quit=lambda: self.cfg.worker_int(self))
        pre, post = self._own("pre_request"), self._own("post_request")
        app = self.wsgi if pre is None and post is None else \
            with_request_hooks(self.wsgi, pre, post, self)
        server = Server(app, cfg, listeners, role=role)
        beating = threading.Event()
        beater = threading.Thread(target=self._beat, args=(beats, beating),
                                  name="fastwsgi-heartbeat", daemon=True)
        beater.start()
        try:
            server.serve(restore_signals=False)
        finally:
            beating.set()
            beater.join()

    def _own(self, name: str) -> Any:
        """A hook the config sets (None: gunicorn's default, which for
        pre_request only logs at debug level)."""
        setting = self.cfg.settings.get(name)
        if setting is None or setting.value is setting.default:
            return None
        return setting.value

    def _beat(self, beats: Beats, done: threading.Event) -> None:
        """Tell the arbiter the worker lives, as long as its loop does: it
        waits in epoll_wait, or it woke within half the timeout."""
        every = max(min(self.timeout / 4, 1.0), 0.05)
        limit_ms = int(self.timeout * 500)
        while not done.wait(every):
            beat = beats.read(0)
            if beat.waiting or not beat.turn_ms or clock_ms() - beat.turn_ms < limit_ms:
                self.notify()
            elif self.alive:
                self.log.warning("the event loop has not turned for %.1f s%s",
                                 (clock_ms() - beat.turn_ms) / 1000,
                                 f" (in {beat.request})" if beat.call_ms else "")
