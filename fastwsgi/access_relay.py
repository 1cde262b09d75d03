"""Access lines through Python logging, for a logging configuration
(logconfig, logconfig_dict, logconfig_json) that gives the access logger
handlers of its own: gunicorn's ``gunicorn.access``, or
``fastwsgi.access``.

The lines are still built by the C access log, in the format
--access-log-format names; its writer thread writes them into a pipe
instead of a file, and a thread of this module reads the pipe and hands
each line to the logger, as the record's message.  The event loop never
waits for Python logging: while the pipe is full the C writer waits, the
loop's buffer takes the lines meanwhile, and past its 256 KiB lines are
dropped and counted, as for a slow disk.
"""

from __future__ import annotations

import logging
import os
import threading

ACCESS_LOGGERS = ("gunicorn.access", "fastwsgi.access")


def routed_logger() -> logging.Logger | None:
    """The access logger a logging configuration gave handlers to, if any."""
    for name in ACCESS_LOGGERS:
        candidate = logging.getLogger(name)
        if candidate.handlers and not candidate.disabled:
            return candidate
    return None


def file_handler(path: str) -> logging.Handler:
    """--access-log given as well: its file (or standard output) becomes
    one more handler of the access logger, with the bare line."""
    import sys

    handler: logging.Handler = (logging.StreamHandler(sys.stdout) if path == "-"
                                else logging.FileHandler(path))
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


class AccessRelay:
    """A pipe the C access log writes to, and the thread that logs what
    comes out of it."""

    def __init__(self, target: logging.Logger) -> None:
        self.target = target
        self._read, self._write = os.pipe2(os.O_CLOEXEC)
        self.thread = threading.Thread(target=self._run, name="fastwsgi-access-log",
                                       daemon=True)

    @property
    def path(self) -> str:
        """The name the C writer opens (and reopens at SIGUSR1)."""
        return f"/dev/fd/{self._write}"

    def start(self) -> None:
        self.thread.start()

    def close(self, wait: float = 2.0) -> None:
        """After the loop closed its end: the thread logs what is left and
        ends at the end of the pipe."""
        os.close(self._write)
        self.thread.join(wait)

    def _run(self) -> None:
        partial = b""
        try:
            while True:
                data = os.read(self._read, 65536)
                if not data:
                    break
                *lines, partial = (partial + data).split(b"\n")
                for line in lines:
                    # The C writer escaped every byte above 0x7e: ASCII.
                    self.target.info("%s", line.decode("ascii", "replace"))
        finally:
            os.close(self._read)
