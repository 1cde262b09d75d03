"""The master: binds the listeners, forks the workers and supervises them.

It never serves a request.  Signals only append to a queue; one loop
reaps dead workers, acts on the queued signals, reads every worker's
heartbeat from shared memory, and spawns, retires or kills.  README.md's
"Workers and signals" section is the operator's view of it.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from . import hooks, privileges
from ._version import __version__
from .beats import STOPPING, Beats, clock_ms
from .config import Config, ConfigError
from .hooks import ServerView, WorkerView
from .listeners import Listener
from .logs import PidFile, capture, logger, reopen_logs, setup
from .metrics import Totals, render, serve_metrics
from .reloader import Watcher
from .server import open_listeners
from .statsd import StatsdSender, count_logs
from .titles import set_title
from .worker import EXIT_NO_APP, run_worker
from .wsgi import WSGIApp

TICK = 0.1                 # seconds between two looks at the workers
BACKOFF_MAX = 5.0          # longest wait before the next spawn after failures
KILL_MARGIN = 1.0          # past graceful_timeout, before SIGKILL

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP,
            signal.SIGUSR1, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD)
_TO_WORKERS = {signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP,
               signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU}


@dataclass
class Worker:
    pid: int
    number: int            # 1, 2, ... in the order they were started
    slot: int
    born: float            # time.monotonic() at fork
    limit: int             # retire after this many requests (0: never)
    ready: bool = False    # its loop is serving
    due: bool = False      # to be replaced (reload): retired once another serves
    leaving: bool = False  # near its max_requests: it retires by itself
    retiring: bool = False
    stop_at: float = 0.0   # when it was told to stop
    kill_reason: str = ""  # why the master killed it
    requests: int = 0      # the last count read from its slot
    view: WorkerView | None = None  # what the hooks are given
    abort_at: float = 0.0  # when it was sent SIGABRT (worker_abort), else 0


@dataclass
class Master:
    cfg: Config
    app: WSGIApp | None = None                # imported here (preload, run())
    load: Callable[[], WSGIApp] | None = None  # imports it (in a worker)
    spec: str = "app"
    reconfigure: Callable[[], Config] | None = None
    workers: dict[int, Worker] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)
    target: int = 1
    numbers: int = 0
    failures: int = 0
    spawn_after: float = 0.0
    stopping: str = ""     # "", "graceful" or "now"
    stop_deadline: float = 0.0
    exit_code: int = 0
    pending: list[int] = field(default_factory=list)
    own_logs: Any = field(default_factory=list)  # the master's own log records, counted

    # -- the loop --

    def run(self) -> int:
        if self.app is None and self.load is None:
            raise ValueError("Master needs an app or a way to load it")
        self.who = privileges.check(self.cfg)
        if self.who is not None and self.cfg.error_log not in ("", "-"):
            # Made the workers' before the master opens it: they reopen it
            # after a rotation, and a link planted there is refused.
            privileges.create_log(self.cfg.error_log, self.who, "error_log")
        setup(self.cfg.log_level, self.cfg.log_format, self.cfg.error_log, self.cfg)
        if self.cfg.capture_output:
            capture(self.cfg.error_log)
        self.server = ServerView(self.cfg, pid=os.getpid())
        self._set_target(self.cfg.workers)
        if self.cfg.preload and self.app is None and self.who is None:
            self.app = self._load()  # gunicorn's moment: before on_starting
        self.server.app = self.app
        hooks.call(self.cfg, "on_starting", self.server)
        # The handlers go in before anything is bound: a signal from then on
        # is acted on by the loop (a stop before it starts still removes the
        # unix sockets and the pid file), never the default death.
        wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wake = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        old = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}
        pid: PidFile | None = None
        metrics = None
        statsd: StatsdSender | None = None
        self.watcher = None
        try:
            # With SO_REUSEPORT each worker listens on its own socket: the
            # master only binds, to hold the address and learn a port 0's
            # number.
            self.listeners = open_listeners(self.cfg, listen=not self.cfg.reuse_port)
            self.server.LISTENERS = [listener.sock for listener in self.listeners]
            for listener in self.listeners:
                privileges.give(listener.unix_path or "", self.who)
            if self.cfg.access_log not in ("", "-"):
                # The workers open it after switching to --user.
                privileges.create_log(self.cfg.access_log, self.who)
            pid = PidFile(self.cfg.pid)
            if self.cfg.preload and self.app is None:
                # No app code runs as root: with --user the master switches
                # once it has bound (port 80 too) and written its pid file.
                privileges.switch(self.who)
                self.app = self.server.app = self._load()
            # Room for a reload's new workers beside the old, and for SIGTTIN.
            self.beats = Beats(max(64, 4 * self.target))
            self.watcher = (Watcher(self.spec, self.wake_w, self.cfg.reload_extra_files)
                            if self.cfg.reload else None)
            self.exited = Totals()      # what workers that are gone had counted
            self.restarts = 0
            self.counting = threading.Lock()
            metrics = serve_metrics(self.cfg.metrics_bind, self._metrics_page) \
                if self.cfg.metrics_bind else None
            if self.cfg.statsd_host:
                self.own_logs = count_logs().target  # (a worker points it at its slot)
                statsd = StatsdSender(self.cfg, self._statsd_totals)
                statsd.start()
            set_title(f"fastwsgi: master [{self.cfg.name or self.spec}]")
            urls = ", ".join(listener.url for listener in self.listeners)
            logger.info("fastwsgi %s listening on %s (pid %d, the master of %d worker%s%s)",
                        __version__, urls, os.getpid(), self.target,
                        "s" if self.target != 1 else "",
                        f" with {self.cfg.threads} threads each" if self.cfg.threads else "")
            hooks.call(self.cfg, "when_ready", self.server)
            self._close_fds = (wake_r, self.wake_w,
                               *([metrics.fileno()] if metrics is not None else []),
                               *([statsd.sock.fileno()] if statsd is not None else []))
            while True:
                self._reap()
                self._act_on_signals()
                if self.stopping:
                    if not self.workers:
                        break
                    self._enforce_stop()
                else:
                    if self.watcher is not None and self.watcher.changed():
                        logger.info("a file of the app changed: reloading")
                        self._reload()
                    self._look_at_workers()
                    self._spawn_and_retire()
                self._sleep(wake_r)
        finally:
            if metrics is not None:
                metrics.shutdown()
                metrics.server_close()
            if statsd is not None:
                statsd.stop()       # the last second's counts too
            if self.watcher is not None:
                self.watcher.close()
            signal.set_wakeup_fd(old_wake)
            for sig, handler in old.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(self.wake_w)
            self._close_listeners()
            if pid is not None:
                pid.remove()
        logger.info("fastwsgi master stopped")
        hooks.call(self.cfg, "on_exit", self.server)
        return self.exit_code

    def _set_target(self, count: int) -> None:
        """The number of workers to run; nworkers_changed is told, as
        gunicorn tells it (also when a reload sets the same number)."""
        old = self.server.num_workers or None
        self.target = self.server.num_workers = count
        hooks.call(self.cfg, "nworkers_changed", self.server, count, old)

    def _sleep(self, wake_r: int) -> None:
        try:
            select.select([wake_r], [], [], TICK)
        except InterruptedError:
            pass
        try:
            while os.read(wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    # -- signals --

    def _act_on_signals(self) -> None:
        while self.pending:
            sig = signal.Signals(self.pending.pop(0))
            if sig == signal.SIGCHLD:
                continue  # _reap runs every tick
            if sig in (signal.SIGTERM, signal.SIGINT):
                if not self.stopping:
                    logger.info("%s: stopping the workers gracefully (up to %gs)",
                                sig.name, self.cfg.graceful_timeout)
                    self._stop("graceful")
                else:
                    logger.info("%s again: stopping now", sig.name)
                    self._stop("now")
            elif sig == signal.SIGQUIT:
                logger.info("SIGQUIT: stopping now")
                self._stop("now")
            elif self.stopping:
                continue
            elif sig == signal.SIGHUP:
                logger.info("SIGHUP: reloading")
                self._reload()
            elif sig == signal.SIGTTIN:
                self._set_target(min(self.target + 1, self.beats.count // 2))
                logger.info("SIGTTIN: %d workers", self.target)
            elif sig == signal.SIGTTOU:
                self._set_target(max(1, self.target - 1))
                logger.info("SIGTTOU: %d worker%s", self.target,
                            "s" if self.target != 1 else "")
            elif sig == signal.SIGUSR1:
                reopen_logs(self._prepare_log if self.who is not None else None)
                self._signal_all(signal.SIGUSR1)

    def _prepare_log(self, path: str) -> None:
        """Before the master reopens a log file: a new one is created the
        workers' (--user), so that they can reopen it after it."""
        privileges.create_log(path, self.who, "error_log")

    def _stop(self, how: str) -> None:
        # The kernel refuses new connections once the workers have closed
        # their copies too, instead of queueing them for nobody.
        self._close_listeners()
        self.stopping = how
        now = time.monotonic()
        if how == "graceful":
            self.stop_deadline = now + self.cfg.graceful_timeout + KILL_MARGIN
            self._signal_all(signal.SIGTERM)
        else:
            self.stop_deadline = min(self.stop_deadline or now + KILL_MARGIN,
                                     now + KILL_MARGIN)
            self._signal_all(signal.SIGQUIT)

    def _enforce_stop(self) -> None:
        if time.monotonic() < self.stop_deadline:
            return
        for w in self.workers.values():
            if not w.kill_reason:
                beat = self.beats.read(w.slot)
                w.kill_reason = "still busy when the graceful timeout ran out"
                if beat.call_ms:
                    w.kill_reason += f" (in {beat.request})"
                logger.warning("worker %d (pid %d) %s: killing it", w.number, w.pid,
                               w.kill_reason)
                self._kill(w.pid, signal.SIGKILL)

    def _reload(self) -> None:
        if self.reconfigure is not None:
            try:
                cfg = self.reconfigure()
            except ConfigError as exc:
                logger.error("reload: %s; the running configuration is kept", exc)
                return
            if cfg.addresses != self.cfg.addresses or cfg.fd != self.cfg.fd:
                logger.warning("reload: the addresses to listen on changed; that "
                               "needs a restart, the current ones are kept")
            self.cfg = self.server.cfg = cfg
            self._set_target(cfg.workers)
        hooks.call(self.cfg, "on_reload", self.server)
        for w in self.workers.values():
            if not w.retiring:
                w.due = True

    # -- workers --

    def _look_at_workers(self) -> None:
        now = clock_ms()
        timeout_ms = int(self.cfg.timeout * 1000)
        for w in list(self.workers.values()):
            if w.retiring or w.kill_reason:
                continue
            beat = self.beats.read(w.slot)
            w.requests = beat.requests
            if beat.serving and not w.ready:
                w.ready = True
                logger.debug("worker %d (pid %d) is serving", w.number, w.pid)
            if (timeout_ms and w.ready and beat.serving and not beat.waiting
                    and beat.turn_ms and now - beat.turn_ms > timeout_ms):
                stuck = (now - beat.turn_ms) / 1000
                if beat.call_ms:
                    what = (f"in an app call ({beat.request}"
                            + (f", the first of a round of {beat.round}" if beat.round > 1
                               else "")
                            + f", started {(now - beat.call_ms) / 1000:.1f} s ago)")
                else:
                    what = "outside any app call"
                w.kill_reason = f"its event loop was stuck for {stuck:.1f} s {what}"
                abort = self.cfg.values.get("worker_abort") is not None
                logger.error("worker %d (pid %d): %s, longer than --timeout %gs; "
                             "%s", w.number, w.pid, w.kill_reason, self.cfg.timeout,
                             "aborting it (worker_abort)" if abort else "killing it")
                if abort:
                    # Its worker_abort hook runs, then it exits; if it
                    # cannot (stuck outside Python), SIGKILL follows.
                    w.abort_at = time.monotonic()
                    self._kill(w.pid, signal.SIGABRT)
                else:
                    self._kill(w.pid, signal.SIGKILL)
                continue
            # The worker retires by itself at its limit, exactly (its loop
            # counts); from nine tenths on, its replacement is started, so
            # that it is serving by then.
            if w.limit and not w.leaving and beat.requests * 10 >= w.limit * 9:
                w.leaving = True
            if beat.state == STOPPING and w.ready:
                why = (" (max_requests)" if w.limit and beat.requests >= w.limit
                       else ", told by someone else")
                logger.info("worker %d (pid %d) is stopping after %d requests%s",
                            w.number, w.pid, beat.requests, why)
                w.leaving = w.retiring = True
                w.stop_at = time.monotonic()

    def _spawn_and_retire(self) -> None:
        active = [w for w in self.workers.values()
                  if not w.retiring and not w.due and not w.leaving and not w.kill_reason]
        while len(active) < self.target and time.monotonic() >= self.spawn_after:
            w = self._spawn()
            if w is None:
                break
            active.append(w)
        # Retire a worker due for replacement once a ready one can take its
        # place; too many workers (SIGTTOU): the newest go.
        due = sorted((w for w in self.workers.values() if w.due and not w.retiring),
                     key=lambda w: w.number)
        ready = sum(1 for w in active if w.ready)
        for w in due[:max(0, ready + len(due) - self.target)]:
            self._retire(w)
        for w in sorted(active, key=lambda w: -w.number)[:max(0, len(active) - self.target)]:
            self._retire(w)

    def _spawn(self) -> Worker | None:
        slot = self.beats.take()
        if slot is None:
            return None
        self.numbers += 1
        number = self.numbers
        limit = 0
        if self.cfg.max_requests:
            limit = self.cfg.max_requests + random.randint(0, self.cfg.max_requests_jitter)
        view = WorkerView(number, os.getpid(), self.cfg, sockets=self.server.LISTENERS)
        hooks.call(self.cfg, "pre_fork", self.server, view)
        # A signal sent to the new worker before it has replaced the
        # master's handlers (which it inherits) would be taken by them and
        # lost: it stays blocked until the worker's own are in place.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _TO_WORKERS)
        try:
            pid = os.fork()
        finally:
            if os.getpid() == self.server.pid:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if pid == 0:
            view.pid = os.getpid()
            run_worker(number, self.beats.pointer(slot), self.cfg, self.listeners,
                       self.app, self._load, self.spec, self._close_fds, limit,
                       self.server, view, self.who, mask, self.beats.all())
        view.pid = pid
        w = Worker(pid, number, slot, time.monotonic(), limit, view=view)
        self.workers[pid] = w
        self.server.WORKERS[pid] = view
        logger.info("booting worker %d (pid %d)", number, pid)
        return w

    def _load(self) -> WSGIApp:
        assert self.load is not None
        return self.load()

    def _retire(self, w: Worker) -> None:
        w.retiring = True
        w.stop_at = time.monotonic()
        self._kill(w.pid, signal.SIGUSR2)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            with self.counting:
                w = self.workers.pop(pid, None)
                if w is None:
                    continue
                self.exited.add(self.beats.pointer(w.slot).counters, gauges=False)
            w.requests = max(w.requests, self.beats.read(w.slot).requests)
            self.beats.give_back(w.slot)
            self._reaped(w, status)
            self.server.WORKERS.pop(pid, None)
            if w.view is not None:
                w.view.alive = False
                hooks.call(self.cfg, "child_exit", self.server, w.view)
        # A retiring worker past its graceful deadline is killed, and an
        # aborted one that did not exit.
        now = time.monotonic()
        for w in self.workers.values():
            if w.abort_at and now > w.abort_at + KILL_MARGIN:
                w.abort_at = 0.0
                self._kill(w.pid, signal.SIGKILL)
            if (w.retiring and not w.kill_reason
                    and now > w.stop_at + self.cfg.graceful_timeout + KILL_MARGIN):
                w.kill_reason = "did not finish within the graceful timeout"
                logger.warning("worker %d (pid %d) %s: killing it", w.number, w.pid,
                               w.kill_reason)
                self._kill(w.pid, signal.SIGKILL)

    def _reaped(self, w: Worker, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        how = (f"exit status {code}" if code >= 0
               else f"killed by {signal.Signals(-code).name}")
        expected = self.stopping or w.retiring
        if code == 0:
            # Status 0 is always a worker that chose to stop: told to, or
            # at its max_requests (its replacement is already started).
            why = (" (max_requests)" if w.limit and w.requests >= w.limit and not expected
                   else "")
            logger.info("worker %d (pid %d) exited after %d requests%s", w.number, w.pid,
                        w.requests, why)
            return
        if w.kill_reason:
            logger.warning("worker %d (pid %d) exited after %d requests (%s; %s)",
                           w.number, w.pid, w.requests, how, w.kill_reason)
        elif expected:
            # Told to stop before it had its own handlers (still importing).
            told = code in (-signal.SIGQUIT, -signal.SIGTERM, -signal.SIGUSR2)
            logger.log(logging.INFO if told else logging.WARNING,
                       "worker %d (pid %d) exited after %d requests (%s)",
                       w.number, w.pid, w.requests, how)
            return
        if code == EXIT_NO_APP:
            self._no_app(w)
            return
        self.restarts += 1
        if not w.kill_reason:
            logger.error("worker %d (pid %d) died after %d requests (%s); starting "
                         "another", w.number, w.pid, w.requests, how)
        if self.stopping:
            return
        # Back off only from workers that die before serving (a crash while
        # starting would otherwise fork again and again); one that served
        # is replaced at once.
        if not w.ready:
            self.failures += 1
            delay = min(0.1 * 2 ** self.failures, BACKOFF_MAX)
            self.spawn_after = time.monotonic() + delay
        else:
            self.failures = 0

    def _totals(self) -> tuple[Totals, int]:
        """Live workers' slots plus what exited ones had counted, under the
        lock the reaper takes (from the metrics and StatsD threads); and
        the number of workers serving (not retiring)."""
        with self.counting:
            live = Totals()
            for w in list(self.workers.values()):
                live.add(self.beats.pointer(w.slot).counters)
            serving = sum(1 for w in self.workers.values() if not w.retiring)
            return live.plus(self.exited), serving

    def _metrics_page(self) -> str:
        total, _ = self._totals()
        with self.counting:
            workers = len(self.workers)
        return render(total, workers=workers, restarts=self.restarts)

    def _statsd_totals(self) -> tuple[Totals, int]:
        total, serving = self._totals()
        total.log = [a + b for a, b in zip(total.log, self.own_logs)]
        return total, serving

    def _no_app(self, w: Worker) -> None:
        """A worker could not import the app.  At start-up that ends the
        master (status 1) instead of forking again and again; after a
        reload the workers still running go on with the old code."""
        serving = [o for o in self.workers.values() if o.ready and not o.retiring]
        if self.stopping:
            return
        if not serving:
            logger.error("worker %d could not load the app %s (the reason is above); "
                         "stopping", w.number, self.spec)
            self.exit_code = 1
            self._stop("now")
            return
        logger.error("reload: worker %d could not load the app %s (the reason is "
                     "above); the running workers go on with the code they have",
                     w.number, self.spec)
        for o in self.workers.values():
            o.due = False
        for o in list(self.workers.values()):
            if not o.ready and not o.retiring:
                self._retire(o)
        self.failures += 1
        self.spawn_after = time.monotonic() + min(0.1 * 2 ** self.failures, BACKOFF_MAX)

    def _signal_all(self, sig: signal.Signals) -> None:
        for pid in list(self.workers):
            self._kill(pid, sig)

    def _kill(self, pid: int, sig: signal.Signals) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            if listener.sock.fileno() < 0:
                continue
            listener.sock.close()
            if listener.unix_path:
                try:
                    os.unlink(listener.unix_path)
                except OSError:
                    pass
