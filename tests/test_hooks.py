"""Server hooks: the same gunicorn.conf.py under real gunicorn and under
fastwsgi, and the hooks' calls compared; then what fastwsgi adds (errors
named, a failing hook, the app's iterable closed before post_request)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TESTS, fastwsgi_env, server_command

pytest.importorskip("gunicorn", reason="gunicorn is a test dependency")

HOOKS_DIR = TESTS / "hooks"
CONF = HOOKS_DIR / "gunicorn.conf.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


class Hooked:
    """One server (gunicorn or fastwsgi) running CONF; its hooks' lines."""

    def __init__(self, command: list[str], tmp: Path, *extra: str) -> None:
        self.port = free_port()
        self.path = tmp / f"hooks-{self.port}.log"
        self.out = open(tmp / f"out-{self.port}.log", "wb")
        env = fastwsgi_env()
        env.update(HOOK_PORT=str(self.port), HOOK_LOG=str(self.path))
        self.proc = subprocess.Popen([*command, "-c", str(CONF), *extra, "app:app"],
                                     cwd=HOOKS_DIR, env=env, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.wait("a worker started", post_worker_init=1)

    def lines(self) -> list[list[str]]:
        try:
            return [line.split() for line in self.path.read_text().splitlines()]
        except FileNotFoundError:
            return []

    def count(self, name: str) -> int:
        return sum(1 for words in self.lines() if words[1] == name)

    def wait(self, what: str = "", timeout: float = 20, **counts: int) -> None:
        """Until each named hook has been called the given number of times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.count(name) == n for name, n in counts.items()):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"waiting for {what or counts}: {self.lines()}\n{self.output()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.out.close()

    def output(self) -> str:
        self.out.flush()
        return Path(self.out.name).read_text(errors="replace")

    def events(self) -> list[str]:
        """The calls in order, pids left out."""
        return [" ".join(words[1:]) for words in self.lines()]

    def by_process(self) -> tuple[list[str], list[list[str]]]:
        """The master's calls in order, and each worker's, in the order the
        workers first appear: the order between processes is the
        scheduler's, within one it is the server's."""
        master = self.lines()[0][0]
        groups: dict[str, list[str]] = {}
        for words in self.lines():
            groups.setdefault(words[0], []).append(" ".join(words[1:]))
        workers = [calls for pid, calls in groups.items() if pid != master]
        return groups[master], sorted(workers)


GUNICORN = [sys.executable, "-m", "gunicorn"]
FASTWSGI = server_command()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGQUIT], ids=["TERM", "QUIT"])
def test_the_hooks_fire_as_under_gunicorn(tmp_path: Path, stop: int) -> None:
    """Start, three requests (one the app fails), a stop: the same calls, in
    the same order, with the same arguments' shapes; and the same again
    with fastwsgi's loop in gunicorn's workers."""
    runs = []
    for command in (GUNICORN, FASTWSGI, [*GUNICORN, "-k", "fastwsgi.gunicorn.Worker"]):
        srv = Hooked(command, tmp_path)
        try:
            assert get(srv.port, "/a?x=1") == 200
            assert get(srv.port, "/b") == 200
            assert get(srv.port, "/fail") == 500
            srv.wait(post_request=3)
        finally:
            srv.signal(stop)
            assert srv.finish() == 0, srv.output()
        runs.append(srv.events())
    gunicorn, fastwsgi, its_worker = runs
    assert "worker_int" in fastwsgi if stop == signal.SIGQUIT else "worker_int" not in fastwsgi
    assert fastwsgi[:3] == ["nworkers_changed 1 None", "on_starting", "when_ready"]
    assert fastwsgi == gunicorn
    assert its_worker == gunicorn


def test_reload_and_worker_count_signals_fire_the_same_hooks(tmp_path: Path) -> None:
    """SIGHUP, a request, SIGTTIN, SIGTTOU, SIGTERM: the master's calls in
    the same order, and each worker's calls the same."""
    runs = []
    for command in (GUNICORN, FASTWSGI):
        srv = Hooked(command, tmp_path)
        try:
            srv.signal(signal.SIGHUP)
            srv.wait("the reload", post_worker_init=2, child_exit=1)
            assert get(srv.port, "/b") == 200
            srv.signal(signal.SIGTTIN)
            srv.wait("a third worker", post_worker_init=3)
            srv.signal(signal.SIGTTOU)
            srv.wait("one worker fewer", child_exit=2)
        finally:
            srv.signal(signal.SIGTERM)
            assert srv.finish() == 0, srv.output()
        runs.append(srv.by_process())
    (g_master, g_workers), (f_master, f_workers) = runs
    assert f_master == g_master
    assert "on_reload" in f_master and "nworkers_changed 2 1" in f_master
    assert f_workers == g_workers
    assert len(f_workers) == 3


def test_the_config_file_settings_apply(tmp_path: Path) -> None:
    """raw_env reaches the app; proc_name is the title's name."""
    srv = Hooked(FASTWSGI, tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := c.recv(65536):
                data += chunk
        assert data.endswith(b"\r\n\r\n3\r\nyes\r\n0\r\n\r\n")
    finally:
        srv.signal(signal.SIGTERM)
        assert srv.finish() == 0


def test_worker_abort_fires_when_the_loop_is_stuck(tmp_path: Path) -> None:
    """--timeout: the master sends SIGABRT, the worker runs worker_abort
    then worker_exit, and a new worker serves."""
    srv = Hooked(FASTWSGI, tmp_path, "--timeout", "1")
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as c:
            c.sendall(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
            srv.wait("a new worker", 15, post_worker_init=2)
        calls = srv.events()
        assert calls.index("worker_abort") < calls.index("worker_exit") \
            < calls.index("child_exit")
        assert get(srv.port, "/b") == 200
        assert "aborting it (worker_abort)" in srv.output()
    finally:
        srv.signal(signal.SIGTERM)
        assert srv.finish() == 0


def write_conf(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "conf.py"
    conf.write_text(text)
    return conf


def run_check(conf: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FASTWSGI, "-c", str(conf), "--check-config", *extra,
                           "app:app"], cwd=HOOKS_DIR, env=fastwsgi_env(),
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("text", "message"), [
    ("def post_fork(server):\n    pass\n",
     "conf.py:1: post_fork: must be a function of 2 arguments (server, worker)"),
    ("def pre_exec(server):\n    pass\n",
     "conf.py:1: pre_exec: not supported: fastwsgi does not re-execute itself"),
    ("def ssl_context(conf, factory):\n    pass\n",
     "ssl_context: not supported: a Python SSLContext cannot drive"),
])
def test_a_bad_hook_is_one_line_naming_file_and_line(tmp_path: Path, text: str,
                                                     message: str) -> None:
    done = run_check(write_conf(tmp_path, text))
    assert done.returncode == 2
    assert message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_function_of_the_files_own_is_no_hook_and_is_left_alone(tmp_path: Path) -> None:
    done = run_check(write_conf(tmp_path, "workers = 2\ndef helper(a):\n    pass\n"
                                          "def post_forks(server, worker):\n    pass\n"))
    assert done.returncode == 0, done.stderr
    assert "helper" not in done.stderr, done.stderr
    assert "post_forks is not a setting, and is ignored; did you mean post_fork?" \
        in done.stderr, done.stderr


def test_hooks_with_defaults_and_extra_arguments_are_accepted(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "def post_fork(server, worker, extra=None):\n    pass\n"
                                "def on_exit(*args):\n    pass\n")
    done = run_check(conf)
    assert done.returncode == 0, done.stderr


def test_a_failing_post_fork_stops_the_start(tmp_path: Path) -> None:
    """As with gunicorn: a worker whose post_fork fails never serves, and
    the master gives up at start-up instead of forking again and again."""
    conf = write_conf(tmp_path, "bind = '127.0.0.1:0'\n"
                                "def post_fork(server, worker):\n"
                                "    raise RuntimeError('no database')\n")
    done = subprocess.run([*FASTWSGI, "-c", str(conf), "app:app"], cwd=HOOKS_DIR,
                          env=fastwsgi_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "the post_fork hook failed" in done.stderr
    assert "RuntimeError: no database" in done.stderr


def test_request_hooks_see_the_close_and_survive_their_own_failure(tmp_path: Path) -> None:
    """post_request runs after the iterable's close(); a failing
    post_request is logged and the next request is served; a failing
    pre_request gives 500."""
    log = tmp_path / "calls"
    conf = write_conf(tmp_path, f"""
LOG = {str(log)!r}
def _note(text):
    with open(LOG, 'a') as f:
        f.write(text + '\\n')
def pre_request(worker, req):
    _note('pre ' + req.path)
    if req.path == '/pre-fails':
        raise ValueError('pre_request refuses')
def post_request(worker, req, environ, resp):
    _note('post ' + req.path + ' ' + str(resp.status) + ' ' + str(resp.sent))
    if req.path == '/post-fails':
        raise ValueError('post_request fails')
""")
    port = free_port()
    out = open(tmp_path / "out", "wb")
    env = fastwsgi_env()
    env["CLOSE_LOG"] = str(log)
    proc = subprocess.Popen([*FASTWSGI, "-c", str(conf), "-b", f"127.0.0.1:{port}",
                             "app:app"], cwd=HOOKS_DIR, env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "out").read_text()
                time.sleep(0.05)
        assert get(port, "/pre-fails") == 500
        assert get(port, "/post-fails") == 200
        assert get(port, "/after") == 200
        calls = log.read_text().splitlines()
        assert calls == ["pre /pre-fails", "post /pre-fails None 0",
                         "pre /post-fails", "close /post-fails", "post /post-fails 200 OK 1",
                         "pre /after", "close /after", "post /after 200 OK 1"]
        text = (tmp_path / "out").read_text()
        assert "the post_request hook failed" in text
        assert "pre_request refuses" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        out.close()


def test_the_hot_path_has_no_hook_wrapper_without_request_hooks(tmp_path: Path) -> None:
    """Only pre_request/post_request wrap the app: a config with other hooks
    serves the app object itself."""
    from fastwsgi import hooks
    from fastwsgi.config import make_config

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        return []

    cfg = make_config({"on_exit": lambda server: None})
    assert not (cfg.values.get("pre_request") or cfg.values.get("post_request"))
    assert cfg.supervised, "a hook runs the master, as gunicorn always does"
    wrapped = hooks.with_request_hooks(app, lambda w, r: None, None,
                                       hooks.WorkerView(1, os.getpid(), cfg))
    assert wrapped is not app
