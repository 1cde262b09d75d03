"""Glue between the C loop and the WSGI layer: owns the loop handle, the
callbacks C makes, the listeners and the signal handling."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

from . import tls
from ._fastwsgi import ffi, lib
from ._version import __version__
from .access_relay import AccessRelay, file_handler, routed_logger
from .accesslog import compile_format
from .config import Config
from .listeners import Listener, inherit_listener, open_listener, systemd_listeners
from .logs import ErrorStream, PidFile, capture, logger, reopen_logs, setup
from .metrics import OwnCounters, render, serve_metrics
from .pool import Pool
from .proxies import Proxies, parse_allow
from .statsd import StatsdSender, count_logs
from .wsgi import Dispatch, Environ, FileWrapper, WSGIApp, activate

_unpack = ffi.unpack
_from_handle = ffi.from_handle
STOP_NOW = lib.FW_STOP_NOW
STOP_GRACEFUL = lib.FW_STOP_GRACEFUL
STOP_RETIRE = lib.FW_STOP_RETIRE
ABANDON_AFTER = 1.0  # seconds an inline app call may outlive a stop "now"


def _c_config(cfg: Config, keep: list[Any]) -> Any:
    """The fw_config struct; `keep` holds the C strings alive."""
    c = ffi.new("fw_config *")
    lim = c.limits
    lim.request_line = cfg.limit_request_line
    lim.fields = cfg.limit_request_fields
    lim.field_size = cfg.limit_request_field_size
    lim.head = cfg.limit_request_head
    lim.allow_underscores = int(cfg.allow_underscore_headers)
    c.max_body_size = cfg.max_body_size
    c.spool_threshold = cfg.spool_threshold
    c.keepalive_timeout_ms = int(cfg.keepalive_timeout * 1000)
    c.header_timeout_ms = int(cfg.header_timeout * 1000)
    c.body_timeout_ms = int(cfg.body_timeout * 1000)
    c.write_timeout_ms = int(cfg.write_timeout * 1000)
    c.graceful_timeout_ms = int(cfg.graceful_timeout * 1000)
    c.log_refusals = int(logger.isEnabledFor(logging.DEBUG))
    c.proxy_protocol = int(cfg.proxy_protocol)
    c.request_timeout_ms = int(cfg.request_timeout * 1000) if cfg.threads else 0
    anyone, networks = parse_allow(cfg.proxy_allow_ips)
    c.proxy_allow_any = int(anyone)
    if networks:
        nets = ffi.new("fw_net[]", len(networks))
        for net, item in zip(nets, networks):
            net.family = socket.AF_INET if item.version == 4 else socket.AF_INET6
            net.bits = item.prefixlen
            packed = item.network_address.packed
            ffi.memmove(net.addr, packed, len(packed))
        keep.append(nets)
        c.proxy_allow = nets
        c.proxy_allow_count = len(networks)
    c.file_send = {"auto": lib.FW_FILE_AUTO, "on": lib.FW_FILE_SENDFILE,
                   "off": lib.FW_FILE_COPY}[cfg.sendfile]
    spool = ffi.new("char[]", cfg.spool_directory.encode())
    name = ffi.new("char[]", cfg.server_header.encode())
    keep += [spool, name]
    c.spool_dir = spool
    c.server_name = name
    return c


def open_listeners(cfg: Config, listen: bool = True) -> list[Listener]:
    """Every socket the settings name: inherited ones (systemd socket
    activation, --fd) and the addresses to bind.  The default host:port is
    bound only when nothing else was given.  On failure the ones already
    open are closed before the OSError goes up."""
    listeners: list[Listener] = []
    try:
        listeners += systemd_listeners()
        listeners += [inherit_listener(fd, "--fd") for fd in cfg.fd]
        addresses = cfg.addresses
        if listeners and not cfg.bind and not ({"host", "port"} & cfg.given):
            addresses = ()
        # With a certificate, every listener speaks TLS, unless some
        # addresses say https://: then only those do (an inherited socket
        # has no address, as one without a scheme).
        chosen = any(a.startswith("https://") for a in addresses)

        def speaks_tls(address: str) -> bool:
            return bool(cfg.certfile) and (address.startswith("https://") if chosen
                                           else not address.startswith("http://"))

        for listener in listeners:  # inherited ones
            if speaks_tls(""):
                listener.secure()
        for address in addresses:
            listener = open_listener(address, cfg.backlog, reuse_port=cfg.reuse_port,
                                     umask=cfg.umask, listen=listen)
            listeners.append(listener)
            if speaks_tls(address):
                listener.secure()
    except BaseException:
        for listener in listeners:
            listener.sock.close()
        raise
    return listeners


@dataclass
class WorkerRole:
    """What a worker forked by the master gets: its slot in the shared
    memory and how it shares the listening sockets (1 shared, 2 own)."""

    number: int
    beat: Any
    sharing: int
    max_requests: int = 0  # its own limit, jitter included (0: none)
    gunicorn: bool = False  # under gunicorn's arbiter: SIGINT stops at once
    on_quit: Any = None  # told to stop at once: the worker_int hook
    peers: tuple[Any, int] | None = None  # every worker's slot, and how many


class Server:
    """One C loop serving one app on one or more listeners."""

    def __init__(self, app: WSGIApp, cfg: Config, listeners: list[Listener] | None = None,
                 role: WorkerRole | None = None) -> None:
        self.app = app
        self.cfg = cfg
        self.role = role
        self.listeners: list[Listener] = []
        self.templates: list[Environ] = []
        self.dispatch: Dispatch | None = None
        self.errors = ErrorStream()
        self.signals = 0
        self._keep: list[Any] = []
        self._handle = ffi.new_handle(self)
        self.loop = ffi.NULL
        self._abandon: threading.Timer | None = None
        self._relay: AccessRelay | None = None
        # stop() from a thread other than the loop's is a request the loop
        # carries out itself: its state is only ever touched by its thread.
        self._loop_thread = 0
        self._wake: socket.socket | None = None
        self._stop_wanted: list[int] = []
        # What signal handlers leave for the loop's thread (_on_signal).
        self._notes: list[tuple[int, str, tuple[Any, ...]]] = []
        self._reopen = False
        self._renew = False  # SIGHUP without a master: read the certificate again
        self._tls_given = False
        for listener in listeners or ():
            self.add(listener)

    # -- set-up --

    def add(self, listener: Listener) -> None:
        self.listeners.append(listener)
        self.templates.append(self._template(listener))

    def bind(self) -> None:
        for listener in open_listeners(self.cfg):
            self.add(listener)

    def _template(self, listener: Listener) -> Environ:
        if listener.tls:
            return {**self._plain_template(listener), "wsgi.url_scheme": "https",
                    "HTTPS": "on"}
        return self._plain_template(listener)

    def _plain_template(self, listener: Listener) -> Environ:
        return {
            "SCRIPT_NAME": "",
            "SERVER_NAME": listener.server_name,
            "SERVER_PORT": listener.server_port,
            "SERVER_SOFTWARE": f"fastwsgi/{__version__}",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": self.errors,
            "wsgi.multithread": self.cfg.threads > 0,
            "wsgi.multiprocess": self.role is not None,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input": None,  # a placeholder: each request sets its own
        }

    def serve(self, restore_signals: bool = True) -> None:
        """Run until a signal (or stop()) ends it; then clean up.

        The command line passes restore_signals=False: the process is about
        to exit 0, and a late signal must not kill it on the way out."""
        ccfg = _c_config(self.cfg, self._keep)
        if self.role is not None:
            ccfg.shared_listeners = self.role.sharing
            ccfg.max_requests = self.role.max_requests
        self.loop = lib.fw_loop_new(ccfg, self._handle)
        if self.loop == ffi.NULL:
            raise MemoryError("cannot create the event loop")
        if self.role is not None:
            lib.fw_loop_beat(self.loop, self.role.beat)
            if self.role.peers is not None:
                lib.fw_loop_peers(self.loop, *self.role.peers)
        routed = routed_logger()
        if self.cfg.access_log or routed is not None:
            self._open_access_log(routed)
        metrics = None
        statsd: StatsdSender | None = None
        if (self.cfg.metrics_bind or self.cfg.statsd_host) and self.role is not None:
            # The master reads the slot: the loop's counters, and the log
            # records this process counts for StatsD.
            lib.fw_loop_metrics(self.loop, ffi.addressof(self.role.beat, "counters"))
            if self.cfg.statsd_host:
                count_logs().target = self.role.beat.counters.log
        elif self.cfg.metrics_bind or self.cfg.statsd_host:
            own = OwnCounters()
            self._keep.append(own)
            lib.fw_loop_metrics(self.loop, own.pointer)
            try:
                if self.cfg.metrics_bind:
                    metrics = serve_metrics(self.cfg.metrics_bind,
                                            lambda: render(own.totals()))
                if self.cfg.statsd_host:
                    count_logs().target = own.pointer.log
                    statsd = StatsdSender(self.cfg, lambda: (own.totals(), 1))
                    statsd.start()
            except OSError:
                if metrics is not None:
                    metrics.server_close()
                lib.fw_loop_free(self.loop)
                self.loop = ffi.NULL
                raise
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._loop_thread = threading.get_ident()
        self._wake = wake_w
        restore = self._install_signals(wake_w.fileno())
        pool: Pool | None = None
        try:
            for index, listener in enumerate(self.listeners):
                if lib.fw_loop_listen(self.loop, listener.sock.fileno(), index) < 0:
                    raise OSError(ffi.errno, os.strerror(ffi.errno))
                listener.sock.detach()  # C owns the descriptor now
            self._give_tls()
            lib.fw_loop_wakeup_fd(self.loop, wake_r.fileno())
            proxies = Proxies(self.cfg.forwarded_allow_ips, self.cfg.forwarded_host,
                              self.cfg.secure_scheme_headers) \
                if self.cfg.forwarded_allow_ips else None
            self.dispatch = Dispatch(self.app, self.templates, proxies=proxies)
            activate(self.dispatch)
            if self.cfg.threads:
                if lib.fw_loop_threads(self.loop) < 0:
                    raise OSError(ffi.errno, os.strerror(ffi.errno))
                pool = Pool(self.loop, self.app, self.templates, self.cfg.threads,
                            self.cfg.request_timeout, proxies)
                pool.start()
            if self.role is None:
                urls = ", ".join(listener.url for listener in self.listeners)
                logger.info("fastwsgi %s listening on %s (pid %d)", __version__, urls,
                            os.getpid())
            else:
                # A log rotation while this worker booted (SIGUSR1 was
                # ignored until its handler went in above) is not missed:
                # the logs that were moved are reopened now.
                reopen_logs(only_moved=True)
                if self.cfg.access_log:
                    lib.fw_loop_access_log_reopen(self.loop)
                logger.debug("worker %d (pid %d) serving", self.role.number, os.getpid())
            if lib.fw_loop_run(self.loop) < 0:
                raise OSError(ffi.errno, "event loop failed: " + os.strerror(ffi.errno))
        finally:
            self._say_notes()   # what the last signals' handlers noted
            if metrics is not None:
                metrics.shutdown()
                metrics.server_close()
            if statsd is not None:
                statsd.stop()       # the last second's counts too
            if self._abandon is not None:
                self._abandon.cancel()  # the loop ended in time
            if self.dispatch is not None:
                for exchange in list(self.dispatch.streams.values()):
                    exchange.finish()
            loop, self.loop = self.loop, ffi.NULL
            # The loop ends once the in-flight requests are done or the
            # graceful deadline passed; a thread still in the app then
            # holds on to the loop's memory, which is not freed.
            if pool is None or pool.stop(wait=0.2):
                lib.fw_loop_free(loop)
            if self._relay is not None:
                self._relay.close()  # the lines the loop's last turn wrote, logged
            activate(None)
            restore(wakeup_only=True)
            wake_r.close()
            self._wake = None
            wake_w.close()
            for listener in self.listeners if self.role is None else ():
                if listener.unix_path:
                    try:
                        os.unlink(listener.unix_path)
                    except OSError:
                        pass
            # Last: a signal arriving during the clean-up must still find
            # our handler, not the default one that would kill the process.
            if restore_signals:
                restore()
        if self.role is None:
            logger.info("fastwsgi stopped")

    def _open_access_log(self, routed: logging.Logger | None) -> None:
        prog, headers = compile_format(self.cfg.access_log_format)
        path = b"" if self.cfg.access_log == "-" else self.cfg.access_log.encode()
        if routed is not None:
            # A logging configuration's access logger: the C lines reach it
            # through a pipe (access_relay); --access-log given as well is
            # one more of its handlers.
            if routed.level == logging.NOTSET:
                routed.setLevel(logging.INFO)   # as gunicorn sets its access logger
            if self.cfg.access_log:
                routed.addHandler(file_handler(self.cfg.access_log))
            self._relay = AccessRelay(routed)
            path = self._relay.path.encode()
        if lib.fw_loop_access_log(self.loop, path, prog, len(prog), headers.encode()) < 0:
            lib.fw_loop_free(self.loop)
            self.loop = ffi.NULL
            raise OSError(ffi.errno, f"cannot open the access log {self.cfg.access_log}: "
                                     + os.strerror(ffi.errno))
        if self._relay is not None:
            self._relay.start()

    def stop(self, how: int = STOP_GRACEFUL) -> None:
        """Stop serving (STOP_GRACEFUL, STOP_RETIRE or STOP_NOW); from any
        thread."""
        if self.loop == ffi.NULL:
            return
        if threading.get_ident() == self._loop_thread:
            lib.fw_loop_stop(self.loop, how)
            return
        self._stop_wanted.append(how)   # (list.append: atomic)
        wake = self._wake
        if wake is not None:
            try:
                wake.send(b"s")
            except OSError:
                pass  # full: the loop is being woken already

    def _stops_asked(self) -> None:
        """On the loop's thread: the stops other threads asked for."""
        while self._stop_wanted and self.loop != ffi.NULL:
            lib.fw_loop_stop(self.loop, self._stop_wanted.pop(0))

    def _install_signals(self, wake_fd: int) -> Any:
        """Signals as the table in README.md gives them.  The wake-up fd
        gets the C loop out of epoll_wait so that the handler runs at once."""
        try:
            old_wake = signal.set_wakeup_fd(wake_fd, warn_on_full_buffer=False)
        except ValueError:  # not the main thread: no signal handling
            return lambda wakeup_only=False: None
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP,
                   signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU)
        old = {sig: signal.signal(sig, self._on_signal) for sig in handled}

        def restore(wakeup_only: bool = False) -> None:
            signal.set_wakeup_fd(old_wake)
            if not wakeup_only:
                for sig, handler in old.items():
                    signal.signal(sig, handler)

        return restore

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # This runs between any two bytecodes of the main thread: maybe
        # inside a log handler's write, which a log call here would enter
        # again ("reentrant call"), or while a log file is being written,
        # which a reopen here would close under it.  So it only changes the
        # loop's state (C) and notes what to say and reopen; the loop's
        # thread does that from fw_py_wakeup (_after_signals), right after.
        if self.loop == ffi.NULL:
            return  # already stopped, on the way out
        sig = signal.Signals(signum)
        if sig == signal.SIGUSR1:
            self._reopen = True
            return
        if self.role is not None:
            self._worker_signal(sig)
            return
        if sig == signal.SIGHUP and any(listener.tls for listener in self.listeners):
            self._renew = True
            return
        if sig in (signal.SIGHUP, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU):
            self._note(logging.WARNING, "%s: one process without a master has no workers "
                       "to reload or change (run with --master or --workers N); ignored",
                       sig.name)
            return
        if sig == signal.SIGQUIT:
            self._note(logging.INFO, "SIGQUIT: stopping now")
            self._stop_now()
            return
        self.signals += 1
        if self.signals == 1:
            self._note(logging.INFO, "%s: finishing in-flight requests (up to %gs)",
                       sig.name, self.cfg.graceful_timeout)
            self.stop(STOP_GRACEFUL)
        else:
            self._note(logging.INFO, "%s again: stopping now", sig.name)
            self._stop_now()

    def _give_tls(self) -> None:
        """Give each TLS listener a context made from the files as they are
        now.  Files that do not make one stop the start (TLSError); on
        SIGHUP the reason is logged and the old certificate stays."""
        if not any(listener.tls for listener in self.listeners):
            return
        try:
            ctx = tls.context(self.cfg)
        except tls.TLSError as exc:
            if self.loop != ffi.NULL and self._tls_given:
                logger.error("SIGHUP: the certificate was not renewed: %s", exc)
                return
            raise
        try:
            for index, listener in enumerate(self.listeners):
                if listener.tls and lib.fw_loop_tls(self.loop, index, ctx) < 0:
                    raise OSError(ffi.errno, os.strerror(ffi.errno))
        finally:
            lib.fw_tls_context_free(ctx)
        if self._tls_given:
            logger.info("SIGHUP: certificate and key read again; new connections use them")
        elif self.role is None or self.role.number == 1:
            logger.info("TLS by %s (the ssl module's libssl); file bodies are copied "
                        "through it", tls.load())
        self._tls_given = True

    def _note(self, level: int, msg: str, *args: Any) -> None:
        self._notes.append((level, msg, args))  # (list.append: no I/O, no lock)

    def _after_signals(self) -> None:
        """On the loop's thread, outside any handler: what the signal
        handlers noted is said and done."""
        self._say_notes()
        if self._reopen and self.loop != ffi.NULL:
            self._reopen = False
            reopen_logs()
            lib.fw_loop_access_log_reopen(self.loop)
        if self._renew and self.loop != ffi.NULL:
            self._renew = False
            self._give_tls()
        self._stops_asked()

    def _stop_now(self) -> None:
        """Stop at once.  The loop ends between two app calls; an inline
        call that does not return within ABANDON_AFTER seconds (the loop's
        own thread is inside it) is abandoned: the process exits without
        it, as a master's SIGKILL would end a worker."""
        self.stop(STOP_NOW)
        if self.cfg.threads == 0 and self._abandon is None:
            self._abandon = threading.Timer(ABANDON_AFTER, self._exit_abandoning)
            self._abandon.daemon = True
            self._abandon.start()

    def _exit_abandoning(self) -> None:
        self._say_notes()
        logger.warning("an app call did not return within %gs of the stop; exiting "
                       "without it", ABANDON_AFTER)
        for listener in self.listeners:
            if listener.unix_path:
                try:
                    os.unlink(listener.unix_path)
                except OSError:
                    pass
        logging.shutdown()
        os._exit(0)

    def _say_notes(self) -> None:
        while self._notes:
            level, msg, args = self._notes.pop(0)
            logger.log(level, msg, *args)

    def _worker_signal(self, sig: signal.Signals) -> None:
        """In a worker the master decides: SIGTERM stops gracefully (twice:
        at once), SIGUSR2 retires (hands over without cutting a keep-alive
        connection under a client), SIGQUIT stops at once.  SIGINT is
        ignored: a terminal's Ctrl-C reaches the whole process group, and
        the master's graceful stop must not count it as a second signal."""
        if sig == signal.SIGTERM:
            self.signals += 1
            self.stop(STOP_GRACEFUL)
        elif sig == signal.SIGUSR2:
            self.stop(STOP_RETIRE)
        elif sig == signal.SIGQUIT or (sig == signal.SIGINT and self.role is not None
                                       and self.role.gunicorn):
            if self.role is not None and self.role.on_quit is not None:
                self.role.on_quit()
            self.stop(STOP_NOW)


@ffi.def_extern()
def fw_py_wakeup(ud: Any) -> None:
    # Reaching Python lets the interpreter run the pending signal handlers,
    # which tell the loop to stop; then what they noted is said and done,
    # and another thread's stop() is carried out.
    _from_handle(ud)._after_signals()


@ffi.def_extern()
def fw_py_log(ud: Any, level: int, msg: Any) -> None:
    logger.log(level, "%s", ffi.string(msg).decode("utf-8", "replace"))


def serve(app: WSGIApp, cfg: Config, restore_signals: bool = True) -> None:
    """Bind, serve until stopped, exit cleanly."""
    setup(cfg.log_level, cfg.log_format, cfg.error_log, cfg)
    if cfg.capture_output:
        capture(cfg.error_log)
    server = Server(app, cfg)
    try:
        server.bind()
    except BaseException:
        for listener in server.listeners:
            listener.sock.close()
        raise
    pid = PidFile(cfg.pid)
    try:
        server.serve(restore_signals)
    finally:
        pid.remove()

