"""Server hooks: functions a Python config file defines under gunicorn's
names, called at the same moments as gunicorn calls them and with
arguments of the same shape (``server``, ``worker``, ``req``, ``environ``,
``resp``), so that a ``gunicorn.conf.py`` runs unchanged.

The hooks are settings like any other (config.py declares one per entry of
HOOKS), given only by a Python config file or ``run()``.  Setting any of
them runs the master, as gunicorn always does: most of the moments
(pre_fork, post_fork, child_exit, ...) exist only there.  pre_request and
post_request wrap the app only when one of them is set: without them the
request path does not even look for them.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .logs import logger


@dataclass(frozen=True)
class Hook:
    name: str
    params: tuple[str, ...]
    when: str


HOOKS: tuple[Hook, ...] = (
    Hook("on_starting", ("server",), "in the master, before the sockets are opened"),
    Hook("when_ready", ("server",), "in the master, once it listens, before the first fork"),
    Hook("pre_fork", ("server", "worker"), "in the master, just before a worker is forked"),
    Hook("post_fork", ("server", "worker"),
         "in the worker, just after the fork, before the app is imported"),
    Hook("post_worker_init", ("worker",), "in the worker, once the app is imported"),
    Hook("worker_int", ("worker",), "in the worker, on SIGQUIT (told to stop at once)"),
    Hook("worker_abort", ("worker",),
         "in the worker, on SIGABRT: the master found its loop stuck past --timeout"),
    Hook("pre_request", ("worker", "req"), "in the worker, before the app is called"),
    Hook("post_request", ("worker", "req", "environ", "resp"),
         "in the worker, once the response is done and its iterable closed"),
    Hook("child_exit", ("server", "worker"), "in the master, once a worker has exited"),
    Hook("worker_exit", ("server", "worker"), "in the worker, as it exits"),
    Hook("nworkers_changed", ("server", "new_value", "old_value"),
         "in the master, when the number of workers to run changes (at start"
         " old_value is None)"),
    Hook("on_reload", ("server",), "in the master, on SIGHUP, before new workers are forked"),
    Hook("on_exit", ("server",), "in the master, just before it exits"),
)

BY_NAME: Mapping[str, Hook] = {h.name: h for h in HOOKS}


def checker(hook: Hook) -> tuple[Callable[[Any], Any], str]:
    """The setting's check: None, or a callable that accepts the hook's
    positional arguments."""
    def check(value: Any) -> Any:
        if value is None:
            return None
        if not callable(value):
            raise ValueError
        try:
            inspect.signature(value).bind(*hook.params)
        except TypeError:
            raise ValueError from None
        except ValueError:
            pass  # a builtin without a signature: taken on trust
        return value

    count = len(hook.params)
    return check, (f"a function of {count} argument{'s' if count != 1 else ''} "
                   f"({', '.join(hook.params)})")


def call(cfg: Any, name: str, *args: Any, fatal: bool = False) -> None:
    """Call the hook `name` if the settings have it.  Its failure is logged
    with its traceback, naming the hook; with `fatal` it is raised again
    (a worker whose post_fork failed must not serve)."""
    func = cfg.values.get(name)
    if func is None:
        return
    try:
        func(*args)
    except BaseException:
        logger.exception("the %s hook failed", name)
        if fatal:
            raise


def any_set(values: Mapping[str, Any]) -> bool:
    return any(values.get(h.name) is not None for h in HOOKS)


# -- what the hooks are given --

@dataclass(eq=False)
class ServerView:
    """``server``: the master, with the attributes of gunicorn's arbiter
    that hooks read."""

    cfg: Any
    app: Any = None
    pid: int = field(default_factory=os.getpid)
    num_workers: int = 0
    WORKERS: dict[int, WorkerView] = field(default_factory=dict)  # noqa: N815 - gunicorn's name
    LISTENERS: list[Any] = field(default_factory=list)  # noqa: N815 - gunicorn's name
    log: logging.Logger = logger

    @property
    def proc_name(self) -> str:
        return str(self.cfg.name or "fastwsgi")


@dataclass(eq=False)
class WorkerView:
    """``worker``: one worker process, with the attributes of gunicorn's
    worker that hooks read (``age`` is its number, 1, 2, ... in order of
    starting)."""

    age: int
    ppid: int
    cfg: Any
    pid: int | str = "[booting]"
    alive: bool = True
    booted: bool = False
    nr: int = 0
    wsgi: Any = None
    sockets: list[Any] = field(default_factory=list)
    log: logging.Logger = logger


@dataclass(eq=False)
class RequestView:
    """``req``: the request as gunicorn's hooks see it (method, uri, path,
    query, version, headers as upper-case (name, value) pairs)."""

    method: str
    uri: str
    path: str
    query: str
    version: tuple[int, int]
    headers: list[tuple[str, str]]
    scheme: str
    peer_addr: Any
    fragment: str = ""

    @classmethod
    def of(cls, environ: Mapping[str, Any]) -> RequestView:
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        protocol = environ.get("SERVER_PROTOCOL", "HTTP/1.1")
        try:
            major, minor = protocol[5:].split(".")
            version = (int(major), int(minor))
        except ValueError:
            version = (1, 1)
        headers = [(key[5:].replace("_", "-"), value) for key, value in environ.items()
                   if key.startswith("HTTP_")]
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers.append((key.replace("_", "-"), environ[key]))
        uri = environ.get("REQUEST_URI") or (path + ("?" + query if query else ""))
        return cls(environ.get("REQUEST_METHOD", ""), uri, path, query, version, headers,
                   environ.get("wsgi.url_scheme", "http"),
                   (environ.get("REMOTE_ADDR", ""), environ.get("REMOTE_PORT", "")))


@dataclass(eq=False)
class ResponseView:
    """``resp``: the response as gunicorn's post_request sees it; status is
    None when the app failed before starting one."""

    status: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    sent: int = 0
    headers_sent: bool = False

    @property
    def status_code(self) -> int | None:
        return int(self.status.split(None, 1)[0]) if self.status else None


def with_request_hooks(app: Any, pre: Callable[..., Any] | None,
                       post: Callable[..., Any] | None, worker: Any) -> Any:
    """The app wrapped so that pre_request runs before it and post_request
    after its response's close(), whatever happened; only used when one
    of them is set."""
    from .wsgi import FileWrapper

    def hooked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        req = RequestView.of(environ)
        resp = ResponseView()
        worker.nr += 1
        def started(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            resp.status, resp.headers, resp.headers_sent = status, headers, True
            write = start_response(status, headers, exc_info)

            def counted(data: bytes) -> Any:
                resp.sent += len(data)
                return write(data)

            return counted

        def done() -> None:
            if post is not None:
                try:
                    post(worker, req, environ, resp)
                except Exception:
                    logger.exception("the post_request hook failed")

        try:
            if pre is not None:
                # As in gunicorn: a failing pre_request fails the request
                # (500), and post_request still runs.
                pre(worker, req)
            body = app(environ, started)
        except BaseException:
            done()
            raise
        if type(body) is FileWrapper:
            # Kept as it is, so that it still goes out with sendfile: only
            # its close() is chained.
            inner = getattr(body, "close", None)
            body.close = _closing(inner, done)
            return body
        return _Counted(body, resp, done)

    return hooked


def _closing(inner: Callable[[], Any] | None, after: Callable[[], None]) -> Callable[[], None]:
    def close() -> None:
        try:
            if inner is not None:
                inner()
        finally:
            after()

    return close


class _Counted:
    """The app's iterable, counting what it yields; close() closes it and
    then runs post_request, exactly once."""

    def __init__(self, body: Iterable[bytes], resp: ResponseView,
                 done: Callable[[], None]) -> None:
        self.body = body
        self.resp = resp
        self.done: Callable[[], None] | None = done
        self.it: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self.it is None:
            self.it = iter(self.body)
        block = next(self.it)
        self.resp.sent += len(block)
        return block

    def close(self) -> None:
        done, self.done = self.done, None
        if done is None:
            return
        try:
            inner = getattr(self.body, "close", None)
            if inner is not None:
                inner()
        finally:
            done()
