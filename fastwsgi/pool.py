"""Threaded mode: the app threads.

Each thread joins the C loop's pool once, then takes requests one after the
other.  The wait for a request happens in C without the interpreter lock,
and so does every wait for output to drain: a thread blocks only itself.
The loop thread never runs Python here (except to log and for signals).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
import traceback
from typing import Any

from ._fastwsgi import ffi, lib
from .logs import logger
from .proxies import Proxies
from .wsgi import EMPTY_INPUT, Dispatch, Environ, WSGIApp, serve_request

_next = lib.fw_pool_next
FW_IN_BODY = lib.FW_IN_BODY
FW_NEXT_TAKEN = lib.FW_NEXT_TAKEN
FW_POOL_STOPS = lib.FW_POOL_STOPS

# CPython's interpreter lock: a thread waiting for it wakes every switch
# interval (5 ms by default) to ask for it.  Hundreds of app threads back
# from I/O at once then wake a few hundred thousand times a second, and the
# process spends its CPU in futex calls instead of serving: with 1000
# threads and a Flask view waiting 200 ms, 1,500 to 3,400 req/s and a p99
# of up to 2.9 s at 5 ms, against 3,900 to 4,250 and 340 ms at 50 ms.  So
# the interval grows with the pool, keeping those wake-ups near 20,000 a
# second; a pool of up to 100 threads keeps the default.
DEFAULT_SWITCH_INTERVAL = 0.005
WAKE_BUDGET = 20_000  # wake-ups a second of threads waiting for the lock
MAX_SWITCH_INTERVAL = 0.05


def switch_interval_for(threads: int) -> float:
    return min(MAX_SWITCH_INTERVAL, max(DEFAULT_SWITCH_INTERVAL, threads / WAKE_BUDGET))


def tune_switch_interval(threads: int) -> None:
    """Lengthen the switch interval for a large pool, unless the app chose
    its own (the interpreter's is then not the default)."""
    want = switch_interval_for(threads)
    if want == DEFAULT_SWITCH_INTERVAL or sys.getswitchinterval() != DEFAULT_SWITCH_INTERVAL:
        return
    sys.setswitchinterval(want)
    logger.info("%d app threads: interpreter switch interval %g ms (waiting threads "
                "wake less often)", threads, want * 1000)


def _work(loop: Any, app: WSGIApp, templates: list[Environ],
          jobs: dict[int, threading.Thread], proxies: Proxies | None) -> None:
    job = lib.fw_pool_join(loop)
    if job == ffi.NULL:
        logger.error("an app thread could not join the pool (out of memory)")
        return
    # So that the request timeout can name the thread behind a job.
    jobs[int(ffi.cast("uintptr_t", job))] = threading.current_thread()
    d = Dispatch(app, templates, threaded=True, proxies=proxies)
    # A whole response and the wait for the next request in one call.
    d.simple = functools.partial(lib.fw_pool_simple_next, loop, job)
    left = False
    try:
        more = _next(loop, job)
        while more:
            conn = job.conn
            try:
                environ = d.job_environ(job)
            except BaseException:  # noqa: B036 - the thread must go on serving
                logger.exception("cannot build the environ")
                if d.input is not EMPTY_INPUT:
                    d.input.close()
                    d.input = EMPTY_INPUT
                elif job.flags & FW_IN_BODY and job.body_fd >= 0:
                    os.close(job.body_fd)  # no file object was made of it
                lib.fw_response_error(conn, 500)
                more = _next(loop, job)
                continue
            try:
                rc = serve_request(d, conn, environ, job.flags)
            except BaseException:  # noqa: B036 - the thread must go on serving
                # serve_request answers the app's own failures; this is one
                # of its own (or a second one while it answered): the client
                # gets a 500 or a close, never a hang.
                logger.exception("an app thread's request failed")
                lib.fw_response_error(conn, 500)
                rc = 0
            if rc == FW_NEXT_TAKEN:
                continue
            if rc == FW_POOL_STOPS:
                break
            more = _next(loop, job)
        left = True
    finally:
        lib.fw_pool_leave(loop, job)
        if not left:
            # Something escaped all of the above: the pool must not shrink
            # silently until no thread serves.
            logger.error("%s ended unexpectedly; starting another",
                         threading.current_thread().name)
            threading.Thread(target=_work, args=(loop, app, templates, jobs, proxies),
                             name=threading.current_thread().name, daemon=True).start()


class Pool:
    """The app threads of one loop."""

    def __init__(self, loop: Any, app: WSGIApp, templates: list[Environ],
                 size: int, request_timeout: float = 0.0,
                 proxies: Proxies | None = None) -> None:
        self.loop = loop
        self.jobs: dict[int, threading.Thread] = {}
        self.threads = [
            threading.Thread(target=_work, args=(loop, app, templates, self.jobs, proxies),
                             name=f"fastwsgi-app-{i}", daemon=True)
            for i in range(size)
        ]
        self.watch = RequestTimeout(self, request_timeout) if request_timeout else None

    def start(self) -> None:
        tune_switch_interval(len(self.threads))
        for thread in self.threads:
            thread.start()
        if self.watch is not None:
            self.watch.start()

    def stop(self, wait: float) -> bool:
        """Tell the threads to leave once their request is over, and wait
        up to `wait` seconds.  True when every one has left (the loop may
        then be freed); a thread still in the app keeps it alive."""
        if self.watch is not None:
            self.watch.stop()
        lib.fw_pool_stop(self.loop)
        deadline = time.monotonic() + wait
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = [thread for thread in self.threads if thread.is_alive()]
        frames = sys._current_frames()
        for thread in busy:
            frame = frames.get(thread.ident or -1)
            where = "".join(traceback.format_stack(frame)) if frame else "(unknown)\n"
            logger.warning("%s is still inside the app at exit; it is left "
                           "behind, here:\n%s", thread.name, where.rstrip())
        return not busy


def _stack(thread: threading.Thread) -> str:
    frame = sys._current_frames().get(thread.ident or -1)
    return "".join(traceback.format_stack(frame)).rstrip() if frame else "(unknown)"


class RequestTimeout:
    """Watches the app threads: a request whose app call has not started
    its response within the timeout is answered 503 and closed (in C), and
    the stack of the thread running it is logged: where the app is stuck.
    The thread cannot be stopped; the threads stuck so are counted."""

    def __init__(self, pool: Pool, timeout: float) -> None:
        self.pool = pool
        self.age_us = int(timeout * 1_000_000)
        self.every = max(0.05, min(1.0, timeout / 4))
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fastwsgi-timeout",
                                       daemon=True)
        # Threads past the timeout, with the connection they were stuck on.
        self.stuck: dict[threading.Thread, int] = {}

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop watching; returns once the watcher no longer touches the
        loop (which may be freed next)."""
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        size = max(1, len(self.pool.threads))
        found = ffi.new("fw_job *[]", size)
        loop = self.pool.loop
        while not self.done.wait(self.every):
            self._forget_finished()
            for i in range(lib.fw_pool_overdue(loop, self.age_us, found, size)):
                job = found[i]
                thread = self.pool.jobs.get(int(ffi.cast("uintptr_t", job)))
                conn = lib.fw_pool_conn_id(loop, job)
                if thread is None or not lib.fw_pool_expire(loop, job, self.age_us):
                    continue
                self.stuck[thread] = conn
                logger.warning(
                    "a request ran past the request timeout (%gs): answered 503 and "
                    "closed; %s is still in the app (%d thread(s) stuck), here:\n%s",
                    self.age_us / 1e6, thread.name, len(self.stuck), _stack(thread))

    def _forget_finished(self) -> None:
        """A stuck thread that left its request is counted no more."""
        jobs = {thread: job for job, thread in list(self.pool.jobs.items())}
        for thread, conn in list(self.stuck.items()):
            job = jobs.get(thread)
            if job is None or lib.fw_pool_conn_id(
                    self.pool.loop, ffi.cast("fw_job *", job)) != conn:
                del self.stuck[thread]
                logger.warning("%s left the request that had run past the timeout "
                               "(%d thread(s) still stuck)", thread.name, len(self.stuck))
