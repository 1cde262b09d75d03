"""The ``fastwsgi`` logger, its default handler and the ``wsgi.errors`` stream."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

logger = logging.getLogger("fastwsgi")


class _Formatter(logging.Formatter):
    """Plain messages for INFO (the start line reads as it is), a level
    prefix for everything else so that errors stand out."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno == logging.INFO:
            return text
        return f"fastwsgi {record.levelname.lower()}: {text}"


def setup(level: str) -> None:
    """Set the level, and give the logger a stderr handler unless the
    application already configured logging for it or for the root."""
    logger.setLevel(level.upper())
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False


def reopen_logs() -> None:
    """SIGUSR1: log files rotated away are reopened under their names (the
    handlers of the fastwsgi logger and of the root logger)."""
    for owner in (logger, logging.getLogger()):
        for handler in owner.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    if handler.stream is not None:
                        handler.stream.close()
                    handler.stream = handler._open()
                finally:
                    handler.release()


class ErrorStream:
    """``wsgi.errors``: what the app writes here goes to the log."""

    def __init__(self) -> None:
        self._partial = ""

    def write(self, text: str) -> int:
        data = self._partial + text
        *lines, self._partial = data.split("\n")
        for line in lines:
            logger.error("%s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._partial:
            logger.error("%s", self._partial)
            self._partial = ""
