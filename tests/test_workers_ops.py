"""Operating the master/worker model from outside, as an operator would:
inherited sockets (systemd, --fd), --umask, --preload, --reload, the
signals (SIGTTIN/SIGTTOU, SIGUSR1, SIGHUP, SIGQUIT), bad --workers values,
and no descriptor or zombie left behind by reloads and dead workers.

Every test runs real server processes and sends real signals; nothing is
mocked.  The processes run in a session of their own, and each test stops
its servers in a finally block (SIGTERM, then SIGKILL to the whole group).
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import TESTS, fastwsgi_env, read_one, server_command

SOCKET_ACTIVATE = "/usr/bin/systemd-socket-activate"
# The start line, with or without a master:
#   fastwsgi 1.0 listening on http://127.0.0.1:8000 (pid 12)
#   fastwsgi 1.0 listening on http://127.0.0.1:8000 (systemd) (pid 12, the master of 2 workers)
START = re.compile(r"fastwsgi (\S+) listening on (.+?) \(pid (\d+)"
                   r"(?:, the master of (\d+) workers?)?[ )]")
SERVING = re.compile(r"worker (\d+) \(pid (\d+)\) is serving")
T = TypeVar("T")


@dataclass
class Started:
    urls: str        # everything between "listening on" and "(pid"
    pid: int
    workers: int     # 0: one process, no master

    @property
    def port(self) -> int:
        m = re.search(r"http://[^ ,]+:(\d+)", self.urls)
        assert m, f"no TCP address in {self.urls!r}"
        return int(m.group(1))


class Proc:
    """A server (or whatever execs one) in a session of its own; its
    stdout and stderr go to one log file."""

    def __init__(self, argv: Sequence[str], *, cwd: Path = TESTS,
                 env: dict[str, str] | None = None, pass_fds: Sequence[int] = (),
                 umask: int = -1, watch: Sequence[Path] = ()) -> None:
        self.argv = list(argv)
        self.watch = list(watch)  # more files the server logs into
        self.log = tempfile.NamedTemporaryFile(prefix="fastwsgi-ops-", delete=False)
        full_env = fastwsgi_env()
        full_env.update(env or {})
        self.proc = subprocess.Popen(self.argv, cwd=cwd, env=full_env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, pass_fds=tuple(pass_fds),
                                     umask=umask)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        with open(self.log.name, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        for path in self.watch:
            try:
                text += f"\n--- {path.name} ---\n" + path.read_text("utf-8", "replace")
            except OSError:
                pass
        return text

    def started(self, timeout: float = 15.0) -> Started:
        def found() -> re.Match[str] | None:
            m = START.search(self.output())
            if m is None and self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n"
                                     + self.output())
            return m

        m = wait_until(found, timeout, "the start line", self)
        return Started(m.group(2), int(m.group(3)), int(m.group(4) or 0))

    def serving(self, count: int, timeout: float = 15.0) -> list[int]:
        """With --log-level debug: wait until `count` workers said they
        serve; their pids, in that order."""
        def pids() -> list[int] | None:
            found = [int(m.group(2)) for m in SERVING.finditer(self.output())]
            return found if len(found) >= count else None

        return wait_until(pids, timeout, f"{count} workers serving", self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole group (workers included)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of the group
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(5)
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def wait_until(probe: Callable[[], T | None], timeout: float, what: str,
               proc: Proc | None = None) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            out = "" if proc is None else "\nserver output:\n" + proc.output()
            raise AssertionError(f"no {what} within {timeout:g}s{out}")
        time.sleep(0.05)


def fastwsgi(*args: str) -> list[str]:
    return [*server_command(sys.executable), *args]


def run_fastwsgi(*args: str, cwd: Path = TESTS, pass_fds: Sequence[int] = (),
                 timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """A command that is expected to end by itself (an error)."""
    return subprocess.run(fastwsgi(*args), cwd=cwd, env=fastwsgi_env(), capture_output=True,
                          text=True, timeout=timeout, pass_fds=tuple(pass_fds),
                          stdin=subprocess.DEVNULL)


def request(sock: socket.socket, path: str, timeout: float) -> tuple[int, bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    status, _, body, _ = read_one(sock, timeout=timeout)
    return status, body


def get(port: int, path: str = "/hello", timeout: float = 5.0) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        return request(s, path, timeout)


def get_unix(path: str, target: str = "/hello", timeout: float = 5.0) -> tuple[int, bytes]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        return request(s, target, timeout)


HELLO = (200, b"Hello, World!")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their state letter (R, S,
    Z...), read from /proc/*/stat."""
    found: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                data = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: cut after the last ')'.
        fields = data[data.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            found[int(name)] = fields[0]
    return found


def open_fds(pid: int) -> dict[int, str]:
    out: dict[int, str] = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            pass
    return out


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    return lines[0]


# -- 1. systemd socket activation --

@pytest.mark.skipif(not os.path.exists(SOCKET_ACTIVATE), reason=f"no {SOCKET_ACTIVATE}")
@pytest.mark.parametrize("workers", [2, 1], ids=["workers-2", "one-process"])
def test_systemd_socket_activation(workers: int) -> None:
    port = free_port()
    extra = ["--workers", str(workers)] if workers > 1 else []
    # It passes the launched process only the variables named with -E:
    # under scripts/sanitize the server needs the sanitizer runtime too.
    passed = [arg for name in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")
              if fastwsgi_env().get(name) for arg in ("-E", name)]
    p = Proc([SOCKET_ACTIVATE, "-l", f"127.0.0.1:{port}", *passed,
              *fastwsgi(*extra, "apps:router")])
    try:
        wait_until(lambda: f"Listening on 127.0.0.1:{port}" in p.output(), 10,
                   "systemd-socket-activate listening", p)
        # It execs the server on the first connection, which waits in the
        # socket's queue until the server serves it.
        assert get(port, timeout=15) == HELLO, p.output()
        st = p.started()
        assert st.urls == f"http://127.0.0.1:{port} (systemd)", p.output()
        assert st.pid == p.pid  # exec'd in place: LISTEN_PID matched
        if workers > 1:
            assert st.workers == 2, p.output()
            workers_now = wait_until(lambda: len(children(p.pid)) == 2 and children(p.pid),
                                     10, "two workers", p)
            answered = {int(get(port, "/pid")[1]) for _ in range(6)}
            assert answered <= set(workers_now), (answered, workers_now)
        else:
            assert st.workers == 0, p.output()
            assert get(port, "/pid") == (200, str(p.pid).encode())
        assert get(port) == HELLO
        assert p.alive(), p.output()
    finally:
        p.cleanup()


# -- 2. --fd --

@pytest.mark.parametrize("workers", [2, 1], ids=["workers-2", "one-process"])
def test_fd_inherited_listening_socket(workers: int) -> None:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    port = lsock.getsockname()[1]
    fd = lsock.fileno()
    extra = ["--workers", str(workers)] if workers > 1 else []
    try:
        p = Proc(fastwsgi("--fd", str(fd), *extra, "apps:router"), pass_fds=[fd])
    finally:
        lsock.close()  # the server holds its own copy now
    try:
        st = p.started()
        assert st.urls == f"http://127.0.0.1:{port} (--fd)", p.output()
        assert st.workers == (workers if workers > 1 else 0), p.output()
        for _ in range(4):
            assert get(port) == HELLO, p.output()
        assert p.alive(), p.output()
    finally:
        p.cleanup()


@pytest.mark.parametrize("workers", [2, 1], ids=["workers-2", "one-process"])
@pytest.mark.parametrize("kind", ["pipe", "closed"])
def test_fd_that_is_not_a_listening_socket(kind: str, workers: int) -> None:
    extra = ["--workers", str(workers)] if workers > 1 else []
    r, w = os.pipe()
    try:
        if kind == "pipe":
            fd, pass_fds = r, [r]
        else:
            fd, pass_fds = 250, []  # not open in the child
        result = run_fastwsgi("--fd", str(fd), *extra, "apps:router", pass_fds=pass_fds)
    finally:
        os.close(r)
        os.close(w)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    line = one_line(result.stderr)
    assert line.startswith("fastwsgi: error: "), line
    assert f"descriptor {fd}" in line and "--fd" in line, line
    assert "listening on" not in result.stdout + result.stderr


# -- 3. --umask --

@pytest.mark.parametrize(("args", "process_umask", "mode"), [
    (["--umask", "077"], 0o022, 0o700),
    (["--umask", "077", "--workers", "2"], 0o022, 0o700),
    (["--umask", "0"], 0o077, 0o777),
    ([], 0o027, 0o750),
    (["--workers", "2"], 0o002, 0o775),
], ids=["umask-077", "umask-077-workers-2", "umask-0-over-077", "process-027",
        "process-002-workers-2"])
def test_unix_socket_mode(args: list[str], process_umask: int, mode: int) -> None:
    directory = tempfile.mkdtemp(prefix="fw-ops-", dir="/tmp")  # short: sun_path
    path = os.path.join(directory, "s.sock")
    p = Proc(fastwsgi("--bind", f"unix:{path}", *args, "apps:router"), umask=process_umask)
    try:
        st = p.started()
        assert st.urls == f"unix:{path}", p.output()
        got = stat.S_IMODE(os.stat(path).st_mode)
        assert got == mode, f"socket mode {got:o}, expected {mode:o}\n{p.output()}"
        assert get_unix(path) == HELLO
    finally:
        p.cleanup()
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(directory)


# -- 4. --preload --

IMPORT_RECORDER = """\
import os

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "imports.txt"), "a") as f:
    f.write(f"{os.getpid()}\\n")


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""


def _imports(tmp_path: Path) -> list[int]:
    try:
        return [int(x) for x in (tmp_path / "imports.txt").read_text().split()]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "no-preload"])
def test_preload_imports_once_in_the_master(tmp_path: Path, preload: bool) -> None:
    (tmp_path / "fw_workers_imports.py").write_text(IMPORT_RECORDER)
    extra = ["--preload"] if preload else []
    p = Proc(fastwsgi("--workers", "2", "--port", "0", "--log-level", "debug", *extra,
                      "fw_workers_imports:app"), cwd=tmp_path)
    try:
        st = p.started()
        assert st.pid == p.pid and st.workers == 2
        serving = p.serving(2)
        workers = set(children(p.pid))
        assert set(serving) <= workers, (serving, workers)
        answered = {int(get(st.port, "/")[1]) for _ in range(4)}
        assert answered <= workers, (answered, workers)
        time.sleep(0.3)  # any late import would show by now
        imports = _imports(tmp_path)
        if preload:
            assert imports == [p.pid], (imports, p.pid, p.output())
        else:
            assert len(imports) == 2 and set(imports) == set(serving), (imports, serving)
            assert p.pid not in imports
    finally:
        p.cleanup()


# -- 5. --reload --

RELOAD_APP = """\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"{body}"]
{padding}"""


@pytest.mark.parametrize("watcher", ["polling", "watchfiles"])
def test_reload_picks_up_a_changed_file(tmp_path: Path, watcher: str) -> None:
    env: dict[str, str] = {}
    if watcher == "watchfiles":
        if importlib.util.find_spec("watchfiles") is None:
            pytest.skip("watchfiles is not installed (the optional reload extra; CPython only)")
    else:
        # Whether or not watchfiles is installed, this makes its import fail
        # in the server, so the 1 s polling of mtimes is what reloads.
        shim = tmp_path / "shim"
        shim.mkdir()
        (shim / "watchfiles.py").write_text('raise ImportError("hidden by the test")\n')
        env["PYTHONPATH"] = str(shim)
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    module = app_dir / "fw_workers_reload_app.py"
    module.write_text(RELOAD_APP.format(body="v1", padding=""))
    p = Proc(fastwsgi("--reload", "--port", "0", "fw_workers_reload_app:app"),
             cwd=app_dir, env=env)
    try:
        st = p.started()
        assert st.workers == 1, p.output()
        port = st.port
        wait_until(lambda: get(port) == (200, b"v1"), 10, "v1", p)
        time.sleep(0.2)  # let the watcher take its first look
        # A different size too: a .pyc written within the same second would
        # otherwise pass as up to date (CPython checks mtime in seconds and size).
        module.write_text(RELOAD_APP.format(body="v2", padding="# edited\n"))
        wait_until(lambda: get(port) == (200, b"v2"), 8, "v2 after editing the file", p)
        assert "a file of the app changed: reloading" in p.output()
        assert p.alive()
        assert st.pid == p.pid
    finally:
        p.cleanup()


EXTRA_APP = """\
import pathlib
PAGE = (pathlib.Path(__file__).parent / "templates" / "deep" / "page.html").read_bytes()
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [PAGE]
"""


def test_reload_extra_files_takes_globs_expanded_at_each_check(tmp_path: Path) -> None:
    # gunicorn's reload_extra_files: a template is no Python file, and the
    # app keeps what it read at import until its workers are restarted.
    app_dir = tmp_path / "app"
    (app_dir / "templates" / "deep").mkdir(parents=True)
    (app_dir / "fw_extra_reload_app.py").write_text(EXTRA_APP)
    (app_dir / "gunicorn.conf.py").write_text(
        "import os\nhere = os.path.dirname(__file__)\nreload = True\n"
        "reload_extra_files = [os.path.join(here, 'templates', '**', '*.html')]\n")
    page = app_dir / "templates" / "deep" / "page.html"
    page.write_text("v1")
    p = Proc(fastwsgi("-c", str(app_dir / "gunicorn.conf.py"), "--port", "0",
                      "fw_extra_reload_app:app"), cwd=app_dir)
    try:
        port = p.started().port
        wait_until(lambda: get(port) == (200, b"v1"), 10, "v1", p)
        time.sleep(1.2)
        page.write_text("v2, longer")  # the answer changes only if reloaded
        wait_until(lambda: get(port) == (200, b"v2, longer"), 8, "v2 after the template", p)
        assert p.output().count("a file of the app changed: reloading") == 1
        # A file the pattern names that did not exist at the start.
        (app_dir / "templates" / "new").mkdir()
        (app_dir / "templates" / "new" / "added.html").write_text("new")
        wait_until(lambda: p.output().count("a file of the app changed: reloading") == 2,
                   8, "a reload for a new file", p)
    finally:
        p.cleanup()


def test_reload_with_preload_is_refused() -> None:
    result = run_fastwsgi("--reload", "--preload", "--port", "0", "apps:router")
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    line = one_line(result.stderr)
    assert line.startswith("fastwsgi: error: "), line
    assert "--reload" in line and "preload" in line, line


# -- 6. SIGTTIN / SIGTTOU --

class Load:
    """Requests one after another on fresh connections, in a thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                got = get(self.port, timeout=5)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded
                self.errors.append(repr(exc))
                continue
            if got == HELLO:
                self.ok += 1
            else:
                self.errors.append(repr(got))
            time.sleep(0.005)

    def finish(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_ttin_ttou_change_the_number_of_workers() -> None:
    p = Proc(fastwsgi("--workers", "2", "--port", "0", "--log-level", "debug",
                      "apps:router"))
    load: Load | None = None
    try:
        st = p.started()
        first = set(p.serving(2))
        assert set(children(p.pid)) == first
        load = Load(st.port)
        p.proc.send_signal(signal.SIGTTIN)
        three = wait_until(lambda: len(children(p.pid)) == 3 and set(children(p.pid)),
                           10, "a third worker", p)
        assert first < three
        p.serving(3)
        time.sleep(0.3)
        p.proc.send_signal(signal.SIGTTOU)
        two = wait_until(lambda: len(children(p.pid)) == 2 and set(children(p.pid)),
                         10, "back to two workers", p)
        assert two == first, "SIGTTOU retires the newest worker"
        time.sleep(0.3)
        load.finish()
        out = p.output()
        assert "SIGTTIN: 3 workers" in out and "SIGTTOU: 2 workers" in out, out
        assert load.errors == [], f"{load.errors[:5]}\n{out}"
        assert load.ok > 10, load.ok
        assert p.alive()
    finally:
        if load is not None:
            load.finish()
        p.cleanup()


# -- 7. SIGUSR1 --

@pytest.mark.parametrize("workers", [2, 1], ids=["master", "one-process"])
def test_sigusr1_does_not_kill(workers: int) -> None:
    extra = ["--workers", str(workers), "--log-level", "debug"] if workers > 1 else []
    p = Proc(fastwsgi("--port", "0", *extra, "apps:router"))
    try:
        st = p.started()
        before = set(p.serving(workers)) if workers > 1 else set()
        for _ in range(2):
            p.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.3)
        assert p.alive(), f"status {p.proc.returncode}\n{p.output()}"
        assert get(st.port) == HELLO
        if workers > 1:
            assert set(children(p.pid)) == before, "a worker died of SIGUSR1\n" + p.output()
            assert "died" not in p.output(), p.output()
    finally:
        p.cleanup()


SLOW_IMPORT_APP = """\
import time

time.sleep(1.0)  # a large app's imports


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"slow"]
"""


def test_sigusr1_while_workers_import_the_app(tmp_path: Path) -> None:
    """logrotate may send SIGUSR1 at any moment, also while a worker is
    still importing the app (at start, after SIGHUP): it must not die of it."""
    (tmp_path / "fw_workers_slow_import.py").write_text(SLOW_IMPORT_APP)
    p = Proc(fastwsgi("--workers", "2", "--port", "0", "--log-level", "debug",
                      "fw_workers_slow_import:app"), cwd=tmp_path)
    try:
        st = p.started()
        wait_until(lambda: len(children(p.pid)) == 2, 5, "two workers forked", p)
        time.sleep(0.3)  # they are inside the import now
        p.proc.send_signal(signal.SIGUSR1)
        serving = p.serving(2)
        out = p.output()
        assert "killed by SIGUSR1" not in out and " died " not in out, \
            f"a worker died of SIGUSR1:\n{out}"
        numbers = sorted(m.group(1) for m in SERVING.finditer(out))
        assert numbers == ["1", "2"], f"the first two workers should serve\n{out}"
        assert set(serving) == set(children(p.pid))
        assert get(st.port) == (200, b"slow")
    finally:
        p.cleanup()


LOGGING_APP = """\
import logging
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
logging.basicConfig(filename=os.path.join(HERE, "app.log"), level=logging.INFO,
                    format="%(process)d %(message)s")
log = logging.getLogger("fw_workers_logging")


def app(environ, start_response):
    log.info("request %s", environ["PATH_INFO"])
    if environ["PATH_INFO"].endswith("-slow"):
        time.sleep(0.4)  # holds its worker: a request meanwhile goes to another
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "master-preload"])
def test_sigusr1_reopens_a_rotated_log_file(tmp_path: Path, workers: int) -> None:
    (tmp_path / "fw_workers_logging.py").write_text(LOGGING_APP)
    log, rotated = tmp_path / "app.log", tmp_path / "app.log.1"
    extra = ["--workers", str(workers), "--preload", "--log-level", "debug"] \
        if workers > 1 else []
    # The app configured the root logger: fastwsgi's own lines go there too.
    p = Proc(fastwsgi("--port", "0", *extra, "fw_workers_logging:app"), cwd=tmp_path,
             watch=[log, rotated])
    try:
        st = p.started()
        pids = set(p.serving(workers)) if workers > 1 else {p.pid}
        assert get(st.port, "/before")[0] == 200
        wait_until(lambda: "request /before" in log.read_text(), 5, "/before logged", p)
        os.rename(log, rotated)
        p.proc.send_signal(signal.SIGUSR1)
        wait_until(log.exists, 5, "app.log reopened", p)
        if workers > 1:
            time.sleep(1.0)  # the master forwards the signal to its workers
        # Until every process has answered a request logged after the signal:
        # a slow request holds one worker while a second one goes to another.
        seen: set[int] = set()
        paths: list[str] = []
        for i in range(8):
            slow: list[tuple[int, bytes]] = []
            holder = threading.Thread(
                target=lambda i=i, slow=slow: slow.append(get(st.port, f"/after-{i}-slow")))
            holder.start()
            time.sleep(0.1)
            fast = get(st.port, f"/after-{i}-fast")
            holder.join(5)
            paths += [f"/after-{i}-slow", f"/after-{i}-fast"]
            for status, body in [*slow, fast]:
                assert status == 200
                seen.add(int(body))
            if seen >= pids:
                break
        assert seen >= pids, (seen, pids)
        new, old = log.read_text(), rotated.read_text()
        assert "request /before" in old
        assert "request /after-" not in old, \
            f"logged into the renamed file after SIGUSR1:\n{old}"
        for path in paths:
            assert f"request {path}\n" in new, f"{path} missing:\n{new}"
        assert p.alive(), p.output()
    finally:
        p.cleanup()


# -- 8. One process: SIGHUP and friends are ignored; SIGQUIT is immediate --

def test_one_process_ignores_reload_signals() -> None:
    p = Proc(fastwsgi("--port", "0", "apps:router"))
    try:
        st = p.started()
        assert st.workers == 0
        for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2):
            p.proc.send_signal(sig)
            wait_until(lambda sig=sig: f"[WARNING] {sig.name}: one process without a "
                                       "master" in p.output(), 5, f"the {sig.name} warning", p)
            assert p.alive(), f"{sig.name}: status {p.proc.returncode}\n{p.output()}"
            assert get(st.port) == HELLO
        assert get(st.port, "/pid") == (200, str(p.pid).encode())
    finally:
        p.cleanup()


@pytest.mark.parametrize("args", [[], ["--threads", "2"], ["--workers", "2"]],
                         ids=["one-process", "one-process-threads", "master"])
def test_sigquit_stops_at_once_with_a_request_in_flight(args: list[str]) -> None:
    p = Proc(fastwsgi("--port", "0", *args, "apps:router"))
    try:
        st = p.started()
        assert get(st.port) == HELLO  # serving (in master mode: a worker is)
        with socket.create_connection(("127.0.0.1", st.port), timeout=5) as s:
            s.sendall(b"GET /sleep?s=10 HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.5)  # the app is asleep now
            start = time.monotonic()
            p.proc.send_signal(signal.SIGQUIT)
            try:
                code = p.proc.wait(4)
            except subprocess.TimeoutExpired:
                out = p.output()
                os.killpg(p.pid, signal.SIGKILL)
                pytest.fail(f"still running 4 s after SIGQUIT, with a 10 s request "
                            f"in flight\n{out}")
            took = time.monotonic() - start
        assert code == 0, f"status {code}\n{p.output()}"
        assert took < 2.5, f"took {took:.1f}s\n{p.output()}"
        assert "SIGQUIT: stopping now" in p.output()
    finally:
        p.cleanup()


# -- 9. --workers values --

@pytest.mark.parametrize("value", ["x", "-1", "1025", "1.5", ""])
def test_bad_workers_value(value: str) -> None:
    result = run_fastwsgi("--workers", value, "--port", "0", "apps:router")
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    line = one_line(result.stderr)
    assert line.startswith("fastwsgi: error: --workers"), line
    assert "from 1 to 1024" in line and "auto" in line, line
    assert "listening on" not in result.stdout


@pytest.mark.parametrize("value", ["0", "auto"])
def test_workers_zero_is_one_per_cpu(value: str) -> None:
    # The CPUs this process may use, read from the kernel (PyPy's os
    # module has no sched_getaffinity).
    allowed = next(line for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("Cpus_allowed_list:")).split(":", 1)[1]
    cpus = sum(int(b or a) - int(a) + 1
               for a, _, b in (part.partition("-") for part in allowed.strip().split(",")))
    p = Proc(fastwsgi("--workers", value, "--port", "0", "--log-level", "debug",
                      "apps:router"))
    try:
        st = p.started()
        if cpus == 1:
            # One worker is the one-process mode: no master.
            assert st.workers == 0, p.output()
        else:
            assert st.workers == cpus, p.output()
            p.serving(cpus)
            assert len(children(p.pid)) == cpus
        assert get(st.port) == HELLO
    finally:
        p.cleanup()


# -- 10. Nothing left behind --

def test_hup_reload_leaks_no_descriptor() -> None:
    p = Proc(fastwsgi("--workers", "2", "--port", "0", "--log-level", "debug",
                      "apps:router"))
    try:
        st = p.started()
        current = set(p.serving(2))
        assert get(st.port) == HELLO
        time.sleep(0.2)
        before = open_fds(p.pid)
        for round_ in range(1, 3):
            old = current
            p.proc.send_signal(signal.SIGHUP)
            wait_until(lambda old=old: (len(children(p.pid)) == 2
                                        and not set(children(p.pid)) & old),
                       15, f"the workers replaced (SIGHUP {round_})", p)
            current = set(children(p.pid))
            p.serving(2 * (round_ + 1))
            out = p.output()
            for pid in old:
                assert re.search(rf"worker \d+ \(pid {pid}\) exited after \d+ requests\n",
                                 out), f"no exit line for {pid}\n{out}"
            assert get(st.port) == HELLO
            time.sleep(0.2)
            after = open_fds(p.pid)
            assert sorted(after) == sorted(before), \
                f"SIGHUP {round_}: before {before}\nafter {after}"
        states = children(p.pid)
        assert "Z" not in states.values(), states
    finally:
        p.cleanup()


def test_killed_worker_is_reaped_and_replaced() -> None:
    p = Proc(fastwsgi("--workers", "2", "--port", "0", "--log-level", "debug",
                      "apps:router"))
    try:
        st = p.started()
        first = set(p.serving(2))
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        now = wait_until(lambda: (len(children(p.pid)) == 2 and victim not in children(p.pid)
                                  and children(p.pid)), 10, "a replacement worker", p)
        assert set(now) & first == first - {victim}
        p.serving(3)
        time.sleep(0.3)
        states = children(p.pid)
        assert "Z" not in states.values(), states
        assert victim not in states
        out = p.output()
        assert re.search(rf"worker \d+ \(pid {victim}\) died after \d+ requests "
                         r"\(killed by SIGKILL\); starting another", out), out
        assert get(st.port) == HELLO
        assert p.alive()
    finally:
        p.cleanup()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_daemon_detaches_and_the_pid_file_names_the_server(tmp_path: Path, workers: str) -> None:
    # gunicorn -D: the command returns at once, the server lives on in the
    # background, found by its pid file.
    pid_file = tmp_path / "app.pid"
    log = tmp_path / "error.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run([*server_command(), "-D", "--workers", workers, "--port", str(port),
                           "--pid", str(pid_file), "--error-log", str(log), "apps:router"],
                          cwd=TESTS, env=fastwsgi_env(), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    pid = 0
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip().isdigit(),
                   20, "the pid file", None)
        pid = int(pid_file.read_text())
        def answered() -> bool:
            try:
                return get(port)[0] == 200
            except OSError:
                return False

        wait_until(answered, 20, "an answer", None)
        # Detached: in a session of its own, not the test's.
        assert os.getsid(pid) != os.getsid(0)
        assert "listening on" in log.read_text()
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not pid_file.exists(), 30, "the pid file removed", None)


PASTE_APP = """\
def make_app(global_conf, greeting="?"):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [greeting.encode()]
    return app
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_paste_loads_the_app_a_pastedeploy_file_describes(tmp_path: Path, workers: str) -> None:
    # Pyramid deployments start with gunicorn --paste production.ini.
    (tmp_path / "fw_paste_app.py").write_text(PASTE_APP)
    (tmp_path / "production.ini").write_text(
        "[app:main]\nuse = call:fw_paste_app:make_app\ngreeting = hello from paste\n\n"
        "[app:admin]\nuse = call:fw_paste_app:make_app\ngreeting = the admin app\n")
    for spec, body in (("production.ini", b"hello from paste"),
                       ("production.ini#admin", b"the admin app")):
        p = Proc(fastwsgi("--paste", spec, "--workers", workers, "--port", "0"),
                 cwd=tmp_path)
        try:
            port = p.started().port
            assert get(port) == (200, body), p.output()
        finally:
            p.cleanup()
