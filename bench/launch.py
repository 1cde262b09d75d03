"""Start a server that has no command line of its own, through its Python API.

Run inside the server's virtualenv as
    python launch.py SERVER HOST PORT module:attribute [WORKERS] [--tls CERT KEY]
It is copied next to apps.py in the run directory, so that only that directory
is on sys.path (not the orchestrator's package). Standard library only, and
Python 3.9 compatible: it also runs under PyPy.

WORKERS > 1 (bjoern only, which has no multi-process mode of its own): this
process forks that many workers, each binding its own SO_REUSEPORT socket so
that the kernel spreads the connections among them, and supervises them: on
SIGTERM or SIGINT it stops them all, and if one ends the others are stopped
too, so that the benchmark sees one server that died, never half of one.

--tls CERT KEY (socketify only): serve HTTPS with that certificate and key.
"""

from __future__ import annotations

import importlib
import os
import platform
import signal
import socket
import sys
import time
from types import FrameType
from typing import Any, Callable

BACKLOG = 1024  # bjoern's own default
STOP_GRACE = 3.0  # seconds a worker has to exit on SIGTERM before SIGKILL


def load_app(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def run_bjoern(app: Any, host: str, port: int) -> None:
    import bjoern

    bjoern.run(app, host, port)


def run_meinheld(app: Any, host: str, port: int) -> None:
    from meinheld import server

    server.listen((host, port))
    server.run(app)


def run_socketify(app: Any, host: str, port: int) -> None:
    from socketify import WSGI, AppListenOptions

    # socketify hands uSockets a host string whose buffer it does not keep
    # alive; PyPy's GC frees it early and listening fails at random. Without
    # a host (a bare port: all interfaces) there is no such buffer. Load still goes to
    # 127.0.0.1 only.
    if platform.python_implementation() == "PyPy":
        WSGI(app).listen(port, lambda config: None).run()
    else:
        WSGI(app).listen(AppListenOptions(port=port, host=host), lambda config: None).run()


def run_socketify_tls(app: Any, host: str, port: int, cert: str, key: str) -> None:
    from socketify import WSGI, AppListenOptions, AppOptions

    options = AppOptions(cert_file_name=cert, key_file_name=key)
    if platform.python_implementation() == "PyPy":  # a bare port, as above
        WSGI(app, options=options).listen(port, lambda config: None).run()
    else:
        WSGI(app, options=options).listen(AppListenOptions(port=port, host=host),
                                          lambda config: None).run()


def run_fastwsgi_009(app: Any, host: str, port: int) -> None:
    # The unrelated PyPI package of the same import name, in its own venv.
    import fastwsgi

    fastwsgi.run(app, host=host, port=port)  # type: ignore[attr-defined,unused-ignore]


def reuseport_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)  # bjoern's own sockets are non-blocking too
    sock.listen(BACKLOG)
    return sock


def bjoern_worker(app: Any, host: str, port: int) -> None:
    """The body of one forked worker; never returns into the parent's code."""
    code = 1
    try:
        # Default dispositions: the parent's handlers raise _Stop, which in
        # a worker would unwind into the supervisor's code.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        # Imported after the fork so that no event loop state is shared.
        import bjoern

        bjoern.server_run(reuseport_socket(host, port), app)
        code = 0
    except BaseException as exc:  # reported; the worker ends either way
        sys.stderr.write(f"bjoern worker {os.getpid()}: {type(exc).__name__}: {exc}\n")
    finally:
        sys.stderr.flush()
        os._exit(code)


class _Stop(Exception):
    """SIGTERM or SIGINT reached the supervisor."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def _reap(children: list[int], deadline: float) -> None:
    """Wait for the children until the deadline; remove those reaped."""
    while children and time.monotonic() < deadline:
        for pid in list(children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                children.remove(pid)
        time.sleep(0.02)


def _stop_children(children: list[int]) -> None:
    for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, STOP_GRACE)):
        for pid in children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        _reap(children, time.monotonic() + grace)
        if not children:
            return


def _wait_first(children: list[int]) -> int:
    """Block until one worker ends; the launcher's exit status to report."""
    pid, status = os.wait()
    children.remove(pid)
    code = os.waitstatus_to_exitcode(status)  # -N: killed by signal N
    sys.stderr.write(f"worker pid {pid} ended ({code}): stopping the others\n")
    # Nonzero even if the worker exited cleanly: the server is now half gone.
    return 128 - code if code < 0 else code or 1


def supervise(children: list[int]) -> int:
    """Until a signal or the first worker's end; then stop the rest."""
    code = 0
    try:
        code = _wait_first(children)
    except _Stop:
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the cleanup
        _stop_children(children)
    return code


def run_bjoern_forked(app: Any, host: str, port: int, workers: int) -> int:
    # Handlers first: a signal between two forks still stops the workers
    # forked so far (each resets them at once).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _raise_stop)
    children: list[int] = []
    try:
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:
                bjoern_worker(app, host, port)
            children.append(pid)
    except _Stop:
        _stop_children(children)
        return 0
    return supervise(children)


RUNNERS: dict[str, Callable[[Any, str, int], None]] = {
    "bjoern": run_bjoern,
    "meinheld": run_meinheld,
    "socketify": run_socketify,
    "fastwsgi-0.0.9": run_fastwsgi_009,
}
# The servers this launcher can run as several processes.
FORKED: dict[str, Callable[[Any, str, int, int], int]] = {
    "bjoern": run_bjoern_forked,
}
# The servers it can run over TLS (--tls CERT KEY).
TLS_RUNNERS: dict[str, Callable[[Any, str, int, str, str], None]] = {
    "socketify": run_socketify_tls,
}


def _usage() -> int:
    names = ",".join(RUNNERS)
    sys.stderr.write(f"usage: launch.py {{{names}}} HOST PORT module:attr [WORKERS] "
                     "[--tls CERT KEY]\n"
                     f"  WORKERS > 1 only for: {','.join(FORKED)}\n"
                     f"  --tls only for: {','.join(TLS_RUNNERS)} (one process)\n")
    return 2


def main(argv: list[str]) -> int:
    tls: tuple[str, str] | None = None
    if len(argv) >= 3 and argv[-3] == "--tls":
        tls, argv = (argv[-2], argv[-1]), argv[:-3]
    if len(argv) not in (4, 5) or argv[0] not in RUNNERS:
        return _usage()
    server, host, port, ref = argv[:4]
    workers = int(argv[4]) if len(argv) == 5 else 1
    if workers < 1 or (workers > 1 and server not in FORKED):
        return _usage()
    if tls is not None and (workers > 1 or server not in TLS_RUNNERS):
        return _usage()
    app = load_app(ref)  # once, before forking: every worker has it already
    if workers > 1:
        return FORKED[server](app, host, int(port), workers)
    if tls is not None:
        TLS_RUNNERS[server](app, host, int(port), *tls)
    else:
        RUNNERS[server](app, host, int(port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
