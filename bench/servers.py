"""How to start, recognise as ready, and stop each server.

Every server runs one worker, pinned to CPU 0 with taskset (the multi
scenarios: as many workers as the scenario says, on the CPUs it names), in
its own process group, so that stopping it also stops any worker processes
it forked.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench import httpcheck

HOST = "127.0.0.1"
READY_TIMEOUT = 30.0  # seconds for a server to answer its first request
STOP_TIMEOUT = 5.0

# python, port, "module:attr", launch.py path, worker processes -> argv.
# A builder is only given workers > 1 when its ServerSpec has multi=True,
# or threaded=True in a threaded scenario.
CommandBuilder = Callable[[str, int, str, str, int], list[str]]
# certificate path, key path -> the options, appended to the command line,
# that make the server speak HTTPS on its port (the tls-* scenarios).
TlsOptions = Callable[[str, str], list[str]]


def _tls_options(cert_option: str, key_option: str) -> TlsOptions:
    def options(cert: str, key: str) -> list[str]:
        return [cert_option, cert, key_option, key]
    return options


# fastwsgi and gunicorn name them alike; granian has its own names.
_CERTFILE_KEYFILE = _tls_options("--certfile", "--keyfile")
_GRANIAN_TLS = _tls_options("--ssl-certificate", "--ssl-keyfile")


def _launch_tls(cert: str, key: str) -> list[str]:
    # launch.py takes them as a trailing `--tls CERT KEY` (socketify only).
    return ["--tls", cert, key]


def _ours(py: str, port: int, ref: str, launch: str, workers: int) -> list[str]:
    # Prints "fastwsgi X.Y.Z listening on http://HOST:PORT (pid N)" when ready;
    # readiness is still judged by an HTTP answer, as for every server.
    # With workers > 1 the master forks them onto the one listening socket
    # and, when stopped, logs "worker N (pid P) exited after R requests".
    extra = ["--workers", str(workers)] if workers > 1 else []
    return [py, "-m", "fastwsgi", "--host", HOST, "--port", str(port), *extra, ref]


# fastwsgi's master, stopped, logs one such line per worker (also
# "... died after N requests (...)" for one it had to replace).
_WORKER_LINE = re.compile(r"worker \d+ \(pid (\d+)\) (?:exited|died) after (\d+) requests")


def logged_worker_requests(log_path: Path) -> dict[int, int]:
    """{worker pid: requests} from a server's log; empty if it logs none."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return {}
    return {int(m.group(1)): int(m.group(2)) for m in _WORKER_LINE.finditer(text)}


# Threaded servers get, for the apps that wait, threads enough for their
# connections (each peer in its best threaded configuration); for the
# others, fastwsgi's threaded mode uses 8 and the peers keep their defaults.
WAITING_APPS = {"apps:sleep5ms": 50, "apps:flask_sleep200": 1000}
# The app that computes (the fairness scenario) gets 4 threads per worker
# in every threaded server: its 8 connections are twice one worker's pool,
# so how the 2 workers split them shows in latency and CPU shares.
COMPUTING_APPS = {"apps:cpu1ms": 4}
# App threads per worker for the apps that set them.
APP_THREADS = {**WAITING_APPS, **COMPUTING_APPS}


def _ours_threaded(py: str, port: int, ref: str, launch: str, workers: int) -> list[str]:
    threads = APP_THREADS.get(ref, 8)
    return [*_ours(py, port, ref, launch, workers), "--threads", str(threads)]


def _ours_access_log(py: str, port: int, ref: str, launch: str, workers: int) -> list[str]:
    # The access log on, written to a real file (the cost the setting's
    # users pay; the file is replaced at each start).
    path = os.path.join(tempfile.gettempdir(), f"fastwsgi-bench-access-{port}.log")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return [*_ours(py, port, ref, launch, workers), "--access-log", path]


def _ours_metrics(py: str, port: int, ref: str, launch: str, workers: int) -> list[str]:
    # Counting on (the page itself on a port of its own, not scraped).
    return [*_ours(py, port, ref, launch, workers), "--metrics-bind", f"{HOST}:0"]


def _gunicorn_ours(py: str, port: int, ref: str, launch: str, workers: int) -> list[str]:
    # gunicorn's arbiter with fastwsgi's C loop in each worker.
    return [py, "-m", "gunicorn", "-w", str(workers), "-k", "fastwsgi.gunicorn.Worker",
            "-b", f"{HOST}:{port}", "--log-level", "warning", ref]


def _via_launch(name: str) -> CommandBuilder:
    def build(py: str, port: int, ref: str, launch: str, workers: int) -> list[str]:
        # The worker count is appended only when it matters, so the
        # one-worker command lines stay as they were.
        extra = [str(workers)] if workers > 1 else []
        return [py, launch, name, HOST, str(port), ref, *extra]
    return build


def _granian(py: str, port: int, ref: str, launch: str, workers: int) -> list[str]:
    extra = (["--blocking-threads", str(APP_THREADS[ref])]
             if ref in APP_THREADS else [])
    return [py, "-m", "granian", "--interface", "wsgi", "--workers", str(workers), *extra,
            "--host", HOST, "--port", str(port), ref]


def _gunicorn(worker: str) -> CommandBuilder:
    def build(py: str, port: int, ref: str, launch: str, workers: int) -> list[str]:
        extra = (["--threads", str(APP_THREADS.get(ref, 4)),
                  "--worker-connections", "2000"] if worker == "gthread" else [])
        return [py, "-m", "gunicorn", "-w", str(workers), "-k", worker, *extra,
                "-b", f"{HOST}:{port}", "--log-level", "warning", ref]
    return build


def _waitress(py: str, port: int, ref: str, launch: str, workers: int) -> list[str]:
    # Defaults kept (4 threads, 100 connections): we compare servers as
    # shipped, except for the apps that wait (threads and connections enough).
    extra = ([f"--threads={WAITING_APPS[ref]}", "--connection-limit=2000"]
             if ref in WAITING_APPS else [])
    return [py, "-m", "waitress", *extra, "--host", HOST, "--port", str(port), ref]


@dataclass(frozen=True)
class ServerSpec:
    label: str
    venv: str | None  # key in envs.make_venvs(); None = nginx (Debian)
    requirement: str | None
    build: CommandBuilder | None
    ours: bool = False
    in_smoke: bool = False
    on_pypy: bool = False  # also run under PyPy with --pypy
    multi: bool = False  # runs in the multi-worker scenarios (Scenario.workers > 1)
    # Has an app thread pool sized by APP_THREADS, also with several workers:
    # runs the threaded scenarios (Scenario.threaded), which no other does.
    threaded: bool = False
    # Serves HTTPS with these options: runs the TLS scenarios (Scenario.tls),
    # which no other does (nginx has its own TLS config, see nginx.py).
    tls: TlsOptions | None = None
    no_tls: str = "no TLS"  # the n/a reason in the TLS scenarios when tls is None

    def pypy_variant(self) -> ServerSpec:
        return ServerSpec(f"{self.label} (pypy)", "pypy", self.requirement, self.build,
                          ours=self.ours, in_smoke=False, on_pypy=False, multi=self.multi,
                          threaded=self.threaded, tls=self.tls, no_tls=self.no_tls)

    @property
    def is_nginx(self) -> bool:
        return self.venv is None

    @property
    def is_peer(self) -> bool:
        """Another project's WSGI server: not ours, not a baseline build of
        ours, not the nginx ceiling."""
        return not self.ours and not self.is_nginx and self.venv != BASELINE_VENV


OURS = "fastwsgi"
NGINX = "nginx"
BASELINE_VENV = "baseline"
# fastwsgi's variants could serve HTTPS too; the TLS rows keep to fastwsgi
# itself, against the peers that have TLS of their own.
_VARIANT_NO_TLS = "no TLS run in this suite (fastwsgi itself has the TLS rows)"

SERVERS: list[ServerSpec] = [
    ServerSpec(OURS, "main", "fastwsgi", _ours, ours=True, in_smoke=True, on_pypy=True,
               multi=True, tls=_CERTFILE_KEYFILE),
    ServerSpec("fastwsgi-threads", "main", "fastwsgi", _ours_threaded, ours=True,
               on_pypy=True, threaded=True, no_tls=_VARIANT_NO_TLS),
    ServerSpec("fastwsgi-accesslog", "main", "fastwsgi", _ours_access_log, ours=True,
               no_tls=_VARIANT_NO_TLS),
    ServerSpec("fastwsgi-metrics", "main", "fastwsgi", _ours_metrics, ours=True,
               no_tls=_VARIANT_NO_TLS),
    ServerSpec("gunicorn-fastwsgi", "main", "fastwsgi", _gunicorn_ours, ours=True, multi=True,
               no_tls=_VARIANT_NO_TLS),
    ServerSpec("bjoern", "main", "bjoern", _via_launch("bjoern"), in_smoke=True, on_pypy=True,
               multi=True),  # several workers: forked by launch.py on SO_REUSEPORT
    ServerSpec("fastwsgi-0.0.9", "fastwsgi009", "fastwsgi==0.0.9",
               _via_launch("fastwsgi-0.0.9")),
    ServerSpec("granian", "main", "granian", _granian, on_pypy=True, multi=True,
               threaded=True, tls=_GRANIAN_TLS),
    ServerSpec("socketify", "main", "socketify", _via_launch("socketify"), on_pypy=True,
               tls=_launch_tls),
    ServerSpec("meinheld", "main", "meinheld", _via_launch("meinheld")),
    ServerSpec("waitress", "main", "waitress", _waitress, on_pypy=True),
    ServerSpec("gunicorn-gthread", "main", "gunicorn", _gunicorn("gthread"), on_pypy=True,
               multi=True, threaded=True, tls=_CERTFILE_KEYFILE),
    ServerSpec("gunicorn-sync", "main", "gunicorn", _gunicorn("sync"), on_pypy=True,
               tls=_CERTFILE_KEYFILE),
    ServerSpec(NGINX, None, None, None, in_smoke=True),
]


def baseline_spec(label: str) -> ServerSpec:
    """fastwsgi built from a git revision (--baseline), started exactly like
    ours, from its own venv; its requirement is registered under `label`.
    It runs the multi and TLS scenarios too: a revision without --workers
    or --certfile FAILs them, and the reason says so."""
    return ServerSpec(label, BASELINE_VENV, label, _ours, in_smoke=True, multi=True,
                      tls=_CERTFILE_KEYFILE)


@dataclass
class Running:
    spec: ServerSpec
    port: int
    proc: subprocess.Popen  # type: ignore[type-arg]
    log_path: Path
    # Stop by SIGTERM to the leader alone first: a master then stops its
    # workers itself and can report on them (fastwsgi logs each worker's
    # request count), as it would under a process supervisor.
    leader_first: bool = False
    # Serving HTTPS: the client context that readiness and validation use.
    tls: ssl.SSLContext | None = None
    # Set by wait_ready: the server answered, but its TLS handshake failed
    # (it is up, not hung; waiting longer would not help).
    tls_refused: bool = False

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip()[:200] for line in text[-lines:])


def start(spec: ServerSpec, argv: list[str], port: int, cwd: Path, env: dict[str, str],
          log_path: Path, cpus: str = "0", leader_first: bool = False,
          tls: ssl.SSLContext | None = None) -> Running:
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["taskset", "-c", cpus, *argv], cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killpg reaches workers
        )
    return Running(spec, port, proc, log_path, leader_first, tls)


def wait_ready(server: Running, timeout: float = READY_TIMEOUT) -> str | None:
    """None once the server answers HTTP (HTTPS for a TLS run); else why it
    is not ready."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if not server.alive():
            tail = server.log_tail()
            return f"exited with code {server.proc.returncode}" + (f": {tail}" if tail else "")
        try:
            if httpcheck.probe(server.port, timeout=1.0, tls=server.tls):
                return None
        except ssl.SSLError as exc:
            server.tls_refused = True
            return f"TLS handshake failed: {exc}"
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    tail = server.log_tail()
    return f"no HTTP answer within {timeout:.0f} s" + (f": {tail}" if tail else "")


def _stop_leader(server: Running) -> None:
    """SIGTERM the leader alone and give it STOP_TIMEOUT to exit."""
    try:
        os.kill(server.pid, signal.SIGTERM)
        server.proc.wait(timeout=STOP_TIMEOUT)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass


def stop(server: Running) -> None:
    """SIGTERM the process group (the leader alone first if leader_first),
    then SIGKILL what is left."""
    if server.leader_first and server.proc.poll() is None:
        _stop_leader(server)
    pgid = server.pid
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            server.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; children of the group may linger a moment.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break
    if server.proc.poll() is None:
        server.proc.wait(timeout=STOP_TIMEOUT)
