"""The command line (`python -m fastwsgi`, the `fastwsgi` script) and
fastwsgi.run() from a script."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import requests
from conftest import START_LINE, fastwsgi_env, parse_responses, recv_all

import fastwsgi
from fastwsgi.config import SETTINGS

TESTS = Path(__file__).resolve().parent
# Every log line starts with "[time] [pid] [LEVEL] ".
PREFIX = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d{4}\] \[(\d+)\] \[INFO\] "
LINE = re.compile(r"^" + PREFIX + r"fastwsgi (\S+) listening on (.+) \(pid (\d+)\)$", re.M)


def env_with(path: Path = TESTS) -> dict:
    env = fastwsgi_env()
    env["PYTHONPATH"] = str(path)
    env.pop("PYTHONWARNINGS", None)
    return env


def run_cli(*args: str, cwd: Path = TESTS, timeout: float = 20):
    return subprocess.run([sys.executable, "-m", "fastwsgi", *args], cwd=cwd,
                          env=env_with(cwd), capture_output=True, text=True,
                          timeout=timeout)


class Proc:
    """A process whose output (stdout and stderr together) goes to a file."""

    def __init__(self, argv: list[str], cwd: Path = TESTS):
        self.log = tempfile.NamedTemporaryFile(prefix="fastwsgi-cli-", delete=False)
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env_with(cwd),
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, pattern: re.Pattern | str, timeout: float = 20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if isinstance(pattern, str):
                pattern = re.compile(pattern, re.M)
            m = pattern.search(self.output())
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no {pattern!r} in:\n{self.output()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.unlink(self.log.name)


@pytest.fixture
def procs():
    started: list[Proc] = []

    def start(argv: list[str], cwd: Path = TESTS) -> Proc:
        p = Proc(argv, cwd)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


def http_get(host: str, port: int, path: str = "/") -> requests.Response:
    return requests.get(f"http://{host}:{port}{path}", timeout=10)


def unix_get(path: str, target: str = "/") -> tuple[int, dict, bytes]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n"
                  "Connection: close\r\n\r\n".encode())
        out = parse_responses(recv_all(s))
    assert len(out) == 1
    return out[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def assert_one_line_error(result, *words: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("fastwsgi: error: "), line
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in line, (word, line)
    return line


# ---- --help, --version ----

def test_help():
    r = run_cli("--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: fastwsgi ")
    for s in SETTINGS:
        assert s.option in r.stdout or not s.cli, s.option
    assert "module:app" in r.stdout
    assert r.stderr == ""


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"fastwsgi {fastwsgi.__version__}"
    assert fastwsgi.__version__ == importlib.metadata.version("fastwsgi")
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", fastwsgi.__version__)


def test_console_script(procs):
    # The script installed beside the interpreter under test, not whatever
    # PATH holds: the suite runs from a virtualenv that is not activated.
    exe = shutil.which("fastwsgi", path=os.path.dirname(sys.executable))
    assert exe, f"no fastwsgi script next to {sys.executable}"
    r = subprocess.run([exe, "--version"], capture_output=True, text=True,
                       timeout=20, env=fastwsgi_env())
    assert r.returncode == 0
    assert r.stdout.strip() == f"fastwsgi {fastwsgi.__version__}"
    p = procs([exe, "--port", "0", "apps:router"])
    m = p.wait_for(LINE)
    port = int(m.group(3).rsplit(":", 1)[1])
    assert http_get("127.0.0.1", port, "/hello").content == b"Hello, World!"
    assert p.stop() == 0


# ---- the start line, --host, --port, --bind ----

def test_start_line_format(procs):
    p = procs([sys.executable, "-m", "fastwsgi", "--port", "0", "apps:router"])
    m = p.wait_for(LINE)
    line = m.group(0)
    assert re.fullmatch(PREFIX + r"fastwsgi \S+ listening on http://127\.0\.0\.1:\d+ "
                        r"\(pid \d+\)", line), line
    assert int(m.group(1)) == p.proc.pid  # the pid every line carries
    assert m.group(2) == fastwsgi.__version__
    assert int(m.group(4)) == p.proc.pid
    # the conftest pattern reads it too
    assert START_LINE.search(p.output())
    port = int(m.group(3).rsplit(":", 1)[1])
    assert port > 0
    assert http_get("127.0.0.1", port, "/hello").status_code == 200
    assert p.stop() == 0
    assert "fastwsgi stopped" in p.output()


def test_host_and_port(procs):
    port = free_port()
    p = procs([sys.executable, "-m", "fastwsgi", "--host", "127.0.0.1",
               "--port", str(port), "apps:router"])
    m = p.wait_for(LINE)
    assert m.group(3) == f"http://127.0.0.1:{port}"
    env = http_get("127.0.0.1", port, "/echo").json()
    assert env["SERVER_PORT"] == str(port)
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert p.stop() == 0


def test_short_port_option(procs):
    p = procs([sys.executable, "-m", "fastwsgi", "-p", "0", "apps:router"])
    m = p.wait_for(LINE)
    port = int(m.group(3).rsplit(":", 1)[1])
    assert http_get("127.0.0.1", port, "/hello").status_code == 200


def test_bind_repeated(procs, tmp_path):
    sock_path = str(tmp_path / "fw.sock")
    args = ["--bind", "127.0.0.1:0", "-b", "127.0.0.1:0", "--bind", f"unix:{sock_path}"]
    if ipv6_loopback():
        args += ["--bind", "[::1]:0"]
    p = procs([sys.executable, "-m", "fastwsgi", *args, "apps:router"])
    m = p.wait_for(LINE)
    urls = m.group(3).split(", ")
    assert len(urls) == len(args) // 2, urls
    assert urls[2] == f"unix:{sock_path}"
    ports = []
    for u in (urls[0], urls[1]):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", u), u
        port = int(u.rsplit(":", 1)[1])
        env = http_get("127.0.0.1", port, "/echo").json()
        assert env["SERVER_PORT"] == str(port)
        ports.append(port)
    assert ports[0] != ports[1]
    status, _, body = unix_get(sock_path, "/hello")
    assert status == 200 and body == b"Hello, World!"
    if ipv6_loopback():
        assert re.fullmatch(r"http://\[::1\]:\d+", urls[3]), urls[3]
        port6 = int(urls[3].rsplit(":", 1)[1])
        env = http_get("[::1]", port6, "/echo").json()
        assert env["REMOTE_ADDR"] == "::1"
        assert env["SERVER_PORT"] == str(port6)
    assert p.stop() == 0
    assert not os.path.exists(sock_path)


def test_ipv6_host(procs):
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    p = procs([sys.executable, "-m", "fastwsgi", "--host", "::1", "--port", "0",
               "apps:router"])
    m = p.wait_for(LINE)
    assert re.fullmatch(r"http://\[::1\]:\d+", m.group(3))
    port = int(m.group(3).rsplit(":", 1)[1])
    assert http_get("[::1]", port, "/hello").content == b"Hello, World!"


# ---- finding the app ----

@pytest.fixture
def modules(tmp_path):
    """A folder of small app modules, on the path of the server."""
    hello = textwrap.dedent("""
        def hello(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [WHO]
    """)
    (tmp_path / "only_app.py").write_text(
        hello.replace("WHO", 'b"app"') + "app = hello\n")
    (tmp_path / "both.py").write_text(
        hello.replace("WHO", 'b"application"') + "application = hello\n"
        "def app(environ, start_response):\n    raise RuntimeError('not me')\n")
    (tmp_path / "neither.py").write_text(hello.replace("WHO", 'b"x"'))
    (tmp_path / "raises.py").write_text("raise RuntimeError('broken at import')\n")
    (tmp_path / "syntax.py").write_text("def broken(:\n")
    (tmp_path / "needs_missing.py").write_text("import no_such_dependency_xyz\n")
    (tmp_path / "exits.py").write_text("raise SystemExit(5)\n")
    (tmp_path / "bad_factory.py").write_text(
        "def make():\n    raise ValueError('factory failed')\n")
    (tmp_path / "exit_factory.py").write_text(textwrap.dedent("""
        import sys
        def status():
            sys.exit(3)
        def message():
            raise SystemExit("bad")
        def bare():
            sys.exit()
        def two_lines():
            raise RuntimeError("first line\\nsecond line")
    """))
    return tmp_path


def serve_and_get(procs, spec: str, cwd: Path = TESTS) -> bytes:
    p = procs([sys.executable, "-m", "fastwsgi", "--port", "0", spec], cwd=cwd)
    m = p.wait_for(LINE)
    port = int(m.group(3).rsplit(":", 1)[1])
    body = http_get("127.0.0.1", port, "/hello").content
    assert p.stop() == 0
    return body


def test_module_colon_app(procs):
    assert serve_and_get(procs, "apps:router") == b"Hello, World!"


def test_module_colon_factory(procs):
    assert serve_and_get(procs, "apps:factory()") == b"Hello, World!"


def test_module_alone_uses_application(procs, modules):
    assert serve_and_get(procs, "apps") == b"Hello, World!"
    assert serve_and_get(procs, "both", cwd=modules) == b"application"


def test_module_alone_falls_back_to_app(procs, modules):
    assert serve_and_get(procs, "only_app", cwd=modules) == b"app"


def test_module_found_in_working_directory(procs, modules):
    # the working directory is searched even when it is not on PYTHONPATH
    env = fastwsgi_env()
    env.pop("PYTHONPATH", None)
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "fastwsgi", "--port", "0",
                             "only_app"], cwd=modules, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline and proc.poll() is None:
            log.seek(0)
            text = log.read().decode()
            if LINE.search(text):
                break
            time.sleep(0.02)
        m = LINE.search(text)
        assert m, text
        port = int(m.group(3).rsplit(":", 1)[1])
        assert http_get("127.0.0.1", port).content == b"app"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        log.close()


# ---- errors: one line on stderr, exit status 2 ----

@pytest.mark.parametrize("args,words", [
    (["--bogus", "apps:router"], ["--bogus"]),
    (["--spool-dir", "/nonexistent-fastwsgi-dir", "apps:router"],
     ["--spool-dir", "not a directory"]),
    (["--max-body-size", "10X", "apps:router"], ["--max-body-size", "K, M or G suffix"]),
    (["--port", "70000", "apps:router"], ["--port", "70000", "0 to 65535"]),
    (["--port", "abc", "apps:router"], ["--port", "abc"]),
    (["--port", "-1", "apps:router"], ["--port"]),
    (["--keepalive-timeout", "-1", "apps:router"], ["--keepalive-timeout", "-1"]),
    (["--keepalive-timeout", "soon", "apps:router"], ["--keepalive-timeout"]),
    (["--log-level", "loud", "apps:router"], ["--log-level", "loud", "warning"]),
    (["--limit-request-fields", "0", "apps:router"],
     ["--limit-request-fields", "1 to 256"]),
    (["--max-body-size", "lots", "apps:router"], ["--max-body-size"]),
    (["--bind", "nohostport", "apps:router"], ["--bind", "nohostport"]),
    (["--server-header", "two words", "apps:router"], ["--server-header"]),
    (["--backlog", "0", "apps:router"], ["--backlog"]),
    ([], ["APP"]),
    ([":app"], ["APP"]),
])
def test_bad_options(args, words):
    assert_one_line_error(run_cli(*args), *words)


def test_app_module_missing():
    line = assert_one_line_error(run_cli("no_such_module_here:app"),
                                 "no_such_module_here")
    assert "cannot import" in line


def test_app_module_raises_on_import(modules):
    assert_one_line_error(run_cli("raises:app", cwd=modules), "raises",
                          "RuntimeError", "broken at import")


def test_app_module_syntax_error(modules):
    assert_one_line_error(run_cli("syntax:app", cwd=modules), "syntax",
                          "SyntaxError")


def test_app_module_missing_dependency(modules):
    assert_one_line_error(run_cli("needs_missing:app", cwd=modules),
                          "needs_missing", "no_such_dependency_xyz")


def test_app_module_exits_on_import(modules):
    assert_one_line_error(run_cli("exits:app", cwd=modules), "exits", "SystemExit")


def test_app_attribute_missing():
    assert_one_line_error(run_cli("apps:nothere"), "nothere")


def test_app_module_without_default_names(modules):
    assert_one_line_error(run_cli("neither", cwd=modules), "application", "app")


def test_app_not_callable():
    assert_one_line_error(run_cli("apps:not_callable"), "not_callable",
                          "not callable")


def test_app_factory_raises(modules):
    assert_one_line_error(run_cli("bad_factory:make()", cwd=modules),
                          "factory", "factory failed")


@pytest.mark.parametrize("spec,words", [
    ("exit_factory:status()", ["SystemExit", "3"]),
    ("exit_factory:message()", ["SystemExit", "bad"]),
    ("exit_factory:bare()", ["SystemExit"]),
    ("exit_factory:two_lines()", ["RuntimeError", "first line", "second line"]),
])
def test_app_factory_exits_or_raises(modules, spec, words):
    # A factory's SystemExit is a failure of the app like any other: one
    # line naming the factory and exit status 2, not the factory's status.
    assert_one_line_error(run_cli(spec, cwd=modules, timeout=10), spec,
                          "factory", *words)


def test_port_in_use():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        r = run_cli("--port", str(port), "apps:router")
    assert_one_line_error(r, f"127.0.0.1:{port}", "in use")


def test_second_bind_in_use_releases_first():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        first = free_port()
        r = run_cli("--bind", f"127.0.0.1:{first}", "--bind", f"127.0.0.1:{port}",
                    "apps:router")
    assert_one_line_error(r, f"127.0.0.1:{port}")
    with socket.socket() as again:  # the first address is free again
        again.bind(("127.0.0.1", first))


def test_unix_socket_directory_missing(tmp_path):
    path = tmp_path / "nodir" / "x.sock"
    assert_one_line_error(run_cli("--bind", f"unix:{path}", "apps:router"),
                          str(path))


def test_same_address_twice(tmp_path):
    port = free_port()
    sock = tmp_path / "twice.sock"
    (tmp_path / "link").symlink_to(tmp_path)
    for first, second in [
        (f"127.0.0.1:{port}", f"127.0.0.1:{port}"),
        (f"unix:{sock}", f"unix:{sock}"),
        (f"unix:{sock}", f"unix:{tmp_path}/./twice.sock"),
        (f"unix:{sock}", f"unix:{tmp_path}/link/twice.sock"),
        (f"LOCALHOST:{port}", f"localhost:{port}"),
        (f"[::1]:{port}", f"[0:0::1]:{port}"),
    ]:
        r = run_cli("--bind", first, "-b", second, "apps:router", timeout=10)
        assert_one_line_error(r, "--bind", "twice", second)
        assert not sock.exists()


def test_unix_socket_of_a_live_server_is_kept(procs, tmp_path):
    path = str(tmp_path / "live.sock")
    a = procs([sys.executable, "-m", "fastwsgi", "--bind", f"unix:{path}",
               "apps:router"])
    wait_unix(path, a)
    r = run_cli("--bind", f"unix:{path}", "apps:router", timeout=10)
    assert_one_line_error(r, f"unix:{path}", "in use")
    assert a.proc.poll() is None, a.output()
    status, _, body = unix_get(path, "/hello")
    assert status == 200 and body == b"Hello, World!"
    assert a.stop() == 0


def test_run_unix_socket_in_use_raises(tmp_path):
    path = str(tmp_path / "held.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as holder:
        holder.bind(path)
        holder.listen(1)
        r = run_script(f"""
            import fastwsgi
            from apps import hello
            try:
                fastwsgi.run(hello, bind=["unix:{path}"])
            except OSError as exc:
                print("OSError:", exc)
        """, timeout=10)
        assert r.returncode == 0, r.stderr
        line = r.stdout.strip()
        assert line.startswith("OSError: "), line
        assert f"unix:{path}" in line and "in use" in line, line
        assert os.path.exists(path)


def test_stale_unix_socket_is_reused(procs, tmp_path):
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as crashed:
        crashed.bind(path)  # closed without unlinking, as after a crash
    assert os.path.exists(path)
    p = procs([sys.executable, "-m", "fastwsgi", "--bind", f"unix:{path}",
               "apps:router"])
    wait_unix(path, p)
    status, _, body = unix_get(path, "/hello")
    assert status == 200 and body == b"Hello, World!"
    assert p.stop() == 0
    assert not os.path.exists(path)


def test_unix_path_that_is_not_a_socket_is_kept(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("keep me")
    r = run_cli("--bind", f"unix:{path}", "apps:router", timeout=10)
    assert_one_line_error(r, f"unix:{path}", "not a socket")
    assert path.read_text() == "keep me"


# ---- --log-level ----

def wait_unix(path: str, proc: Proc, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            try:
                unix_get(path, "/hello")
                return
            except OSError:
                pass
        assert proc.proc.poll() is None, proc.output()
        time.sleep(0.02)
    raise AssertionError("the server did not come up:\n" + proc.output())


def test_log_level_warning_hides_info(procs, tmp_path):
    path = str(tmp_path / "quiet.sock")
    p = procs([sys.executable, "-m", "fastwsgi", "--log-level", "warning",
               "--bind", f"unix:{path}", "apps:router"])
    wait_unix(path, p)
    status, _, _ = unix_get(path, "/raise-before")
    assert status == 500
    assert p.stop() == 0
    out = p.output()
    assert "listening on" not in out
    assert "fastwsgi stopped" not in out
    # errors are still logged
    assert "RuntimeError: failing before start_response" in out


def test_log_level_error_keeps_app_errors(procs, tmp_path):
    path = str(tmp_path / "err.sock")
    p = procs([sys.executable, "-m", "fastwsgi", "--log-level", "ERROR",
               "--bind", f"unix:{path}", "apps:router"])
    wait_unix(path, p)
    unix_get(path, "/errors")
    assert p.stop() == 0
    out = p.output()
    assert "message to wsgi.errors" in out
    assert "listening on" not in out


def test_log_level_debug_shows_start_line(procs):
    p = procs([sys.executable, "-m", "fastwsgi", "--log-level", "debug",
               "--port", "0", "apps:router"])
    p.wait_for(LINE)
    assert p.stop() == 0


# ---- fastwsgi.run() ----

def run_script(code: str, timeout: float = 20):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=TESTS,
                          env=env_with(), capture_output=True, text=True,
                          timeout=timeout)


def test_run_from_script(procs, tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(textwrap.dedent("""
        import fastwsgi
        from apps import router
        fastwsgi.run(router, "127.0.0.1", 0, keepalive_timeout=2,
                     server_header="scripted", max_body_size="1K")
        print("run() returned", flush=True)
    """))
    p = procs([sys.executable, str(script)])
    m = p.wait_for(LINE)
    assert int(m.group(4)) == p.proc.pid
    port = int(m.group(3).rsplit(":", 1)[1])
    r = http_get("127.0.0.1", port, "/hello")
    assert r.content == b"Hello, World!"
    assert r.headers["Server"] == "scripted"
    r = requests.post(f"http://127.0.0.1:{port}/body", data=b"x" * 2000, timeout=10)
    assert r.status_code == 413
    assert p.stop() == 0
    out = p.output()
    assert "fastwsgi stopped" in out
    assert "run() returned" in out


def test_run_bad_setting_raises_config_error():
    r = run_script("""
        import fastwsgi
        from apps import hello
        try:
            fastwsgi.run(hello, "127.0.0.1", 0, keepalive_timeout=-5)
        except fastwsgi.ConfigError as exc:
            assert isinstance(exc, ValueError)
            print("ConfigError:", exc)
        else:
            print("no error")
    """)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith("ConfigError: keepalive_timeout")
    assert "-5" in line
    assert "0.01 to 3600" in line


@pytest.mark.parametrize("call,words", [
    ("port=70000", ["port", "0 to 65535", "70000"]),
    ("log_level='loud'", ["log_level", "debug, info, warning, error, critical"]),
    ("bind=['nowhere']", ["bind", "HOST:PORT"]),
    ("bind=['127.0.0.1:8000', '127.0.0.1:8000']", ["bind", "twice", "127.0.0.1:8000"]),
    ("allow_underscore_headers='maybe'", ["allow_underscore_headers",
                                          "true or false"]),
    ("limit_request_fields=0", ["limit_request_fields", "1 to 256"]),
    ("bogus_setting=1", ["bogus_setting", "no such setting", "keepalive_timeout"]),
])
def test_run_config_errors(call, words):
    r = run_script(f"""
        import fastwsgi
        from apps import hello
        try:
            fastwsgi.run(hello, {call})
        except fastwsgi.ConfigError as exc:
            print("ConfigError:", exc)
        else:
            print("no error")
    """)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith("ConfigError: "), line
    for word in words:
        assert word in line, (word, line)


def test_run_unknown_keyword_lists_settings():
    r = run_script("""
        import fastwsgi, json
        from apps import hello
        try:
            fastwsgi.run(hello, "127.0.0.1", 0, keepalive=3)
        except fastwsgi.ConfigError as exc:
            print(json.dumps(str(exc)))
    """)
    text = json.loads(r.stdout)
    assert text.startswith("keepalive: ")
    for s in SETTINGS:
        assert s.name in text


def test_importing_from_the_source_tree_says_what_is_wrong(tmp_path):
    """From the repository root, `fastwsgi` is the source folder, which has
    no compiled core: the error says so instead of a bare module name.  (A
    copy of the package's Python files stands for the source tree, so the
    test runs wherever the suite does.)"""
    package = tmp_path / "fastwsgi"
    package.mkdir()
    for source in Path(fastwsgi.__file__).parent.glob("*.py"):
        shutil.copy(source, package / source.name)
    env = fastwsgi_env()
    env.pop("PYTHONPATH", None)
    r = subprocess.run([sys.executable, "-c", "import fastwsgi"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=20, env=env)
    assert r.returncode != 0
    assert "compiled core is missing" in r.stderr, r.stderr[-500:]


def test_a_flag_setting_has_a_no_form(procs):
    """allow_underscore_headers is "true or false": --X and --no-X."""
    for flag in ("--allow-underscore-headers", "--no-allow-underscore-headers"):
        p = procs([sys.executable, "-m", "fastwsgi", "--port", "0", flag, "apps:router"])
        assert p.wait_for(LINE)
        assert p.stop() == 0


def test_an_app_that_is_none_is_named_as_such(tmp_path):
    (tmp_path / "noneapp.py").write_text("app = None\n")
    r = run_cli("noneapp", cwd=tmp_path)
    assert r.returncode == 2
    assert "noneapp.app is None" in r.stderr, r.stderr
