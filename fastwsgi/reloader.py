"""--reload: notice that a Python file of the app changed.

With the optional `watchfiles` package (``pip install fastwsgi[reload]``)
the kernel reports changes; without it the files' modification times are
compared once a second.  What is watched: the directory of the app's
top-level package (or module), found without importing it.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

POLL_EVERY = 1.0
MAX_FILES = 20000  # a watched tree larger than this is cut short


def app_root(spec: str) -> Path:
    """Where the code behind "module:app" lives; the working directory
    when it cannot be told."""
    top = spec.partition(":")[0].split(".")[0]
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin or found.origin in ("built-in", "frozen"):
        return Path.cwd()
    # A package's __init__.py or a single module: its directory.
    return Path(found.origin).parent


def _python_files(root: Path) -> dict[str, float]:
    seen: dict[str, float] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for name in filenames:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                try:
                    seen[path] = os.stat(path).st_mtime
                except OSError:
                    continue
                if len(seen) >= MAX_FILES:
                    return seen
    return seen


def _extra_files(patterns: tuple[str, ...]) -> dict[str, float]:
    """The files the patterns name now (a glob is expanded at each call:
    a file created later is watched from then on)."""
    seen: dict[str, float] = {}
    for pattern in patterns:
        for path in glob.glob(pattern, recursive=True):
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                seen[path] = st.st_mtime
            if len(seen) >= MAX_FILES:
                return seen
    return seen


class Watcher:
    """changed() is true once after each change under the app's root, or
    to a file the extra patterns name (polled, once a second)."""

    def __init__(self, spec: str, wake_fd: int, extra: tuple[str, ...] = ()) -> None:
        self.root = app_root(spec)
        self.extra = extra
        self._extra_mtimes = _extra_files(extra)
        self._extra_poll = time.monotonic() + POLL_EVERY
        self._flag = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_fd = wake_fd
        try:
            import watchfiles  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            self._mtimes = _python_files(self.root)
            self._next_poll = time.monotonic() + POLL_EVERY
        else:
            self._thread = threading.Thread(target=self._watch, args=(watchfiles,),
                                            name="fastwsgi-reload", daemon=True)
            self._thread.start()

    def _watch(self, watchfiles: Any) -> None:
        python_filter = watchfiles.PythonFilter()
        for _ in watchfiles.watch(self.root, watch_filter=python_filter,
                                  stop_event=self._stop):
            self._flag.set()
            try:
                os.write(self._wake_fd, b"r")
            except OSError:
                pass

    def changed(self) -> bool:
        if self.extra and time.monotonic() >= self._extra_poll:
            now = _extra_files(self.extra)
            if now != self._extra_mtimes:
                self._extra_mtimes = now
                self._flag.set()
            self._extra_poll = time.monotonic() + POLL_EVERY
        if self._thread is None and time.monotonic() >= self._next_poll:
            now = _python_files(self.root)
            if now != self._mtimes:
                self._mtimes = now
                self._flag.set()
            self._next_poll = time.monotonic() + POLL_EVERY
        if self._flag.is_set():
            self._flag.clear()
            return True
        return False

    def close(self) -> None:
        self._stop.set()
