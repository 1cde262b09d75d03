"""The ``fastwsgi`` logger, its default handler and the ``wsgi.errors`` stream."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger("fastwsgi")


class _Text(logging.Formatter):
    """``[2026-11-26 07:30:00.123 +0000] [1234] [INFO] message``: when, which
    process (a master and its workers share one stream) and how bad."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"[{_when(record)}] [{record.process}] [{record.levelname}] " \
               f"{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _Json(logging.Formatter):
    """One JSON object per line, for a log collector."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": _when(record), "pid": record.process,
                 "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _when(record: logging.LogRecord) -> str:
    moment = time.localtime(record.created)
    return (time.strftime("%Y-%m-%d %H:%M:%S", moment)
            + f".{int(record.msecs):03d} " + time.strftime("%z", moment))


def setup(level: str, fmt: str = "text", path: str = "-", cfg: Any = None) -> None:
    """Set the level, apply the logging configuration `cfg` names
    (logconfig, logconfig_json, logconfig_dict), and give the logger a
    handler (stderr, or the file at `path`) unless that configuration or
    the application configured logging for it or for the root.  OSError
    naming the setting for a configuration that cannot be applied."""
    logger.setLevel(level.upper())
    if cfg is not None:
        _apply_config(cfg)
    if not (logger.handlers or logging.getLogger().handlers):
        handler: logging.Handler = (logging.StreamHandler(sys.stderr) if path in ("-", "")
                                    else logging.FileHandler(path))
        handler.setFormatter(_Json() if fmt == "json" else _Text())
        logger.addHandler(handler)
        logger.propagate = False
    if cfg is not None and getattr(cfg, "syslog", False):
        logger.addHandler(_syslog_handler(cfg))


def _syslog_handler(cfg: Any) -> logging.Handler:
    """gunicorn's syslog settings: the standard library's handler, at
    udp://HOST:PORT, tcp://HOST:PORT or unix://PATH."""
    import logging.handlers
    import socket

    scheme, _, rest = cfg.syslog_addr.partition("://")
    address: Any = rest
    kind = None
    if scheme != "unix":
        host, _, port = rest.rpartition(":")
        address = (host.strip("[]"), int(port))
        kind = socket.SOCK_STREAM if scheme == "tcp" else socket.SOCK_DGRAM
    facility = logging.handlers.SysLogHandler.facility_names[cfg.syslog_facility]
    try:
        handler = logging.handlers.SysLogHandler(address, facility, kind)
    except OSError as exc:
        raise OSError(exc.errno, f"syslog_addr: cannot reach {cfg.syslog_addr}: "
                                 f"{exc.strerror or exc}") from None
    handler.setFormatter(logging.Formatter(
        cfg.syslog_prefix + "[%(process)d]: [%(levelname)s] %(message)s"))
    return handler


def _apply_config(cfg: Any) -> None:
    """gunicorn's logging settings, with gunicorn's logger names: what a
    configuration says of ``gunicorn.error`` is said of fastwsgi's log."""
    import configparser
    import logging.config

    name = next((n for n in ("logconfig_dict", "logconfig_json", "logconfig")
                 if getattr(cfg, n, None)), None)
    if name is None:
        return
    try:
        if name == "logconfig":
            logging.config.fileConfig(cfg.logconfig, disable_existing_loggers=False)
        else:
            data = cfg.logconfig_dict
            if name == "logconfig_json":
                with open(cfg.logconfig_json, encoding="utf-8") as f:
                    data = json.load(f)
            logging.config.dictConfig(data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, ImportError,
            configparser.Error) as exc:
        raise OSError(errno.EINVAL, f"{name}: cannot be applied: {exc}") from None
    # dictConfig disables the loggers it does not name: never this one.
    logger.disabled = False
    error = logging.getLogger("gunicorn.error")
    if error.handlers and not logger.handlers:
        for handler in error.handlers:
            logger.addHandler(handler)
        logger.propagate = False
        if error.level:
            logger.setLevel(error.level)


# The error log file that stdout and stderr go to (capture_output), or "".
_captured = ""


def capture(path: str) -> None:
    """capture_output: the process's stdout and stderr (the app's print(),
    a C library's messages, a traceback written to stderr) go to the error
    log file as well, as under gunicorn.  Inherited by the workers."""
    global _captured
    if path in ("", "-"):
        return  # already on standard error, where the log goes
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            os.dup2(fd, stream.fileno())
    finally:
        os.close(fd)
    # A file is block-buffered: a print() would wait for kilobytes more.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    _captured = path


def _moved(path: str, fd: int) -> bool:
    """Whether `path` no longer names the file open at `fd` (rotated)."""
    try:
        now, held = os.stat(path), os.fstat(fd)
    except (OSError, ValueError):
        return True
    return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)


def reopen_logs(prepare: Callable[[str], None] | None = None,
                only_moved: bool = False) -> None:
    """SIGUSR1: log files rotated away are reopened under their names (the
    file handlers of the fastwsgi logger and of the root logger, and the
    captured stdout and stderr).  `prepare(path)` runs first for each (the
    master with --user creates the file for the workers' user, so that
    they can reopen it too).  A file that cannot be reopened is written on
    where it was, with a warning; the others are reopened all the same.
    `only_moved`: only the files whose name now names another file (a
    worker that booted while a rotation went by)."""
    if _captured and not (only_moved and not _moved(_captured, sys.stderr.fileno())):
        try:
            if prepare is not None:
                prepare(_captured)
            capture(_captured)
        except OSError as exc:
            logger.warning("cannot reopen %s for stdout and stderr: %s", _captured,
                           exc.strerror or exc)
    for owner in (logger, logging.getLogger()):
        for handler in owner.handlers:
            if not isinstance(handler, logging.FileHandler):
                continue
            if only_moved and handler.stream is not None and not _moved(
                    handler.baseFilename, handler.stream.fileno()):
                continue
            try:
                if prepare is not None:
                    prepare(handler.baseFilename)
                # Opened before the old one is closed: a failure leaves the
                # handler as it was, never without a stream.
                stream = handler._open()
            except OSError as exc:
                logger.warning("cannot reopen the log file %s: %s", handler.baseFilename,
                               exc.strerror or exc)
                continue
            handler.acquire()
            try:
                old, handler.stream = handler.stream, stream
            finally:
                handler.release()
            if old is not None:
                old.close()


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


class PidFile:
    """--pid: the process id in a file while the server runs."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path:
            # A file of its own renamed into place: the rename replaces
            # whatever is at `path` (a symbolic link included) instead of
            # writing through it, which as root would truncate any file a
            # planted link names.
            folder = os.path.dirname(os.path.abspath(path))
            fd, tmp = tempfile.mkstemp(prefix=".fastwsgi-pid-", dir=folder)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(f"{os.getpid()}\n")
                    os.fchmod(f.fileno(), 0o644)
                os.rename(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    def remove(self) -> None:
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass
