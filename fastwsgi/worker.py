"""What a worker process runs once the master has forked it.

A worker is the single-process server (one C loop, and with --threads its
own app pool) on the sockets the master opened, writing its health into
its slot of the shared memory.  It never returns into the master's code:
it ends with os._exit and a status the master reads.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from . import hooks, privileges
from .config import Config
from .hooks import ServerView, WorkerView
from .listeners import Listener, open_listener
from .logs import logger
from .titles import set_title
from .wsgi import WSGIApp

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NO_APP = 3  # the app could not be loaded: respawning would not help

# The master's handlers must not run in a worker: back to the defaults
# until the worker's server installs its own.
_MASTER_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP,
                   signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU,
                   signal.SIGCHLD)


def _own_sockets(listeners: Sequence[Listener], cfg: Config) -> list[Listener]:
    """With --reuse-port each worker listens on sockets of its own at the
    addresses the master reserved; unix and inherited sockets stay shared."""
    own = []
    for listener in listeners:
        if listener.unix_path is not None or listener.inherited:
            own.append(listener)
            continue
        host = listener.server_name
        shown = f"[{host}]" if ":" in host else host
        mine = open_listener(f"{shown}:{listener.server_port}", cfg.backlog,
                             reuse_port=True)
        listener.sock.close()
        own.append(mine)
    return own


def _abort(server: ServerView, view: WorkerView) -> NoReturn:
    """SIGABRT from the master (its loop was stuck past --timeout): the
    worker_abort hook, then worker_exit, then out."""
    view.alive = False
    hooks.call(view.cfg, "worker_abort", view)
    hooks.call(view.cfg, "worker_exit", server, view)
    logging.shutdown()
    os._exit(EXIT_FAILED)


def run_worker(number: int, beat: object, cfg: Config, listeners: Sequence[Listener],
               app: WSGIApp | None, load: Callable[[], WSGIApp], spec: str,
               close_fds: Sequence[int], max_requests: int,
               server: ServerView, view: WorkerView,
               who: privileges.Identity | None,
               sigmask: Iterable[int | signal.Signals] = (),
               peers: tuple[Any, int] | None = None) -> NoReturn:
    """The body of a forked worker; never returns."""
    code = EXIT_FAILED
    try:
        for sig in _MASTER_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        # Until the server has its handlers (the app may take long to
        # import): a log rotation's SIGUSR1 or a stray SIGHUP must not kill
        # the worker; SIGINT is ignored for good (see Server._worker_signal).
        for sig in (signal.SIGINT, signal.SIGUSR1, signal.SIGHUP, signal.SIGTTIN,
                    signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)
        # The master's wake-up pipe: forget it before closing it, or a signal
        # would write into whatever reuses the descriptor number.
        signal.set_wakeup_fd(-1)
        # The master blocked its signals across the fork (see _spawn): one
        # already sent is delivered now, to these handlers.
        signal.pthread_sigmask(signal.SIG_SETMASK, sigmask)
        for fd in close_fds:
            os.close(fd)
        set_title(f"fastwsgi: worker {number} [{cfg.name or spec}]")
        if cfg.values.get("worker_abort") is not None:
            signal.signal(signal.SIGABRT, lambda *_: _abort(server, view))
        # Until it serves, a failure here means the worker cannot start:
        # the master stops at start-up rather than forking again and again.
        code = EXIT_NO_APP
        hooks.call(cfg, "post_fork", server, view, fatal=True)
        privileges.switch(who)
        if app is None:
            app = load()  # on failure it printed the one-line reason
        view.wsgi = app
        pre, post = cfg.values.get("pre_request"), cfg.values.get("post_request")
        if pre is not None or post is not None:
            app = hooks.with_request_hooks(app, pre, post, view)
        hooks.call(cfg, "post_worker_init", view, fatal=True)
        view.booted = True
        code = EXIT_FAILED
        from .server import Server, WorkerRole

        sharing = 2 if cfg.reuse_port else 1
        mine = _own_sockets(listeners, cfg) if cfg.reuse_port else list(listeners)
        role = WorkerRole(number, beat, sharing, max_requests,
                          on_quit=lambda: hooks.call(cfg, "worker_int", view),
                          peers=peers)
        Server(app, cfg, mine, role=role).serve(restore_signals=False)
        code = EXIT_OK
    except SystemExit:
        pass
    except BaseException:  # noqa: B036 - whatever happens, the status says it
        logger.error("worker %d (pid %d) failed:\n%s", number, os.getpid(),
                     traceback.format_exc().rstrip())
    finally:
        view.alive = False
        hooks.call(cfg, "worker_exit", server, view)
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110 - exiting anyway
                pass
        os._exit(code)
