"""Threaded mode: the app threads.

Each thread joins the C loop's pool once, then takes requests one after the
other.  The wait for a request happens in C without the interpreter lock,
and so does every wait for output to drain: a thread blocks only itself.
The loop thread never runs Python here (except to log and for signals).
"""

from __future__ import annotations

import functools
import sys
import threading
import time
import traceback
from typing import Any

from ._fastwsgi import ffi, lib
from .logs import logger
from .wsgi import Dispatch, Environ, WSGIApp, serve_request

_next = lib.fw_pool_next
FW_NEXT_TAKEN = lib.FW_NEXT_TAKEN
FW_POOL_STOPS = lib.FW_POOL_STOPS


def _work(loop: Any, app: WSGIApp, templates: list[Environ]) -> None:
    job = lib.fw_pool_join(loop)
    if job == ffi.NULL:
        logger.error("an app thread could not join the pool (out of memory)")
        return
    d = Dispatch(app, templates, threaded=True)
    # A whole response and the wait for the next request in one call.
    d.simple = functools.partial(lib.fw_pool_simple_next, loop, job)
    try:
        more = _next(loop, job)
        while more:
            conn = job.conn
            try:
                environ = d.job_environ(job)
            except BaseException:  # noqa: B036 - the thread must go on serving
                logger.exception("cannot build the environ")
                lib.fw_response_error(conn, 500)
                more = _next(loop, job)
                continue
            rc = serve_request(d, conn, environ, job.flags)
            if rc == FW_NEXT_TAKEN:
                continue
            if rc == FW_POOL_STOPS:
                break
            more = _next(loop, job)
    finally:
        lib.fw_pool_leave(loop, job)


class Pool:
    """The app threads of one loop."""

    def __init__(self, loop: Any, app: WSGIApp, templates: list[Environ],
                 size: int) -> None:
        self.loop = loop
        self.threads = [
            threading.Thread(target=_work, args=(loop, app, templates),
                             name=f"fastwsgi-app-{i}", daemon=True)
            for i in range(size)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self, wait: float) -> bool:
        """Tell the threads to leave once their request is over, and wait
        up to `wait` seconds.  True when every one has left (the loop may
        then be freed); a thread still in the app keeps it alive."""
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
