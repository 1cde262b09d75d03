"""Settings from the environment and config files, their precedence, their
errors, --print-config and --check-config, with real processes."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import TESTS, ServerProcess, fastwsgi_env, raw, server_command


def fastwsgi(*args: str, env: dict | None = None, cwd: Path = TESTS,
             timeout: float = 30) -> subprocess.CompletedProcess:
    full = fastwsgi_env()
    for name in [n for n in full if n.startswith("FASTWSGI_")]:
        del full[name]  # only what the test sets
    full.update(env or {})
    return subprocess.run([*server_command(), *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def printed(result: subprocess.CompletedProcess) -> dict[str, tuple[str, str]]:
    """--print-config's lines as {name: (value, origin)}."""
    assert result.returncode == 0, result.stderr
    out = {}
    for line in result.stdout.splitlines():
        m = re.fullmatch(r"(\w+) += (.+?) +# (.+)", line)
        assert m, line
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


def one_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fastwsgi: error: "), lines[0]
    return lines[0][len("fastwsgi: error: "):]


def test_environment_sets_a_setting():
    got = printed(fastwsgi("--print-config", env={"FASTWSGI_KEEPALIVE_TIMEOUT": "7"}))
    assert got["keepalive_timeout"] == ("7.0", "environment FASTWSGI_KEEPALIVE_TIMEOUT")
    assert got["workers"] == ("1", "default")


def test_environment_list_and_flag():
    got = printed(fastwsgi("--print-config", env={
        "FASTWSGI_BIND": "127.0.0.1:9001, unix:/tmp/x.sock", "FASTWSGI_PRELOAD": "yes"}))
    assert got["bind"][0] == "['127.0.0.1:9001', 'unix:/tmp/x.sock']"
    assert got["preload"] == ("True", "environment FASTWSGI_PRELOAD")


def test_precedence_command_line_environment_file_default(tmp_path):
    conf = tmp_path / "fastwsgi.toml"
    conf.write_text("workers = 3\nthreads = 2\nbacklog = 77\n")
    got = printed(fastwsgi("-c", str(conf), "--threads", "6", "--print-config",
                           env={"FASTWSGI_THREADS": "4", "FASTWSGI_BACKLOG": "88"}))
    assert got["threads"] == ("6", "--threads")
    assert got["backlog"] == ("88", "environment FASTWSGI_BACKLOG")
    assert got["workers"] == ("3", str(conf))
    assert got["port"] == ("8000", "default")


def test_pyproject_table(tmp_path):
    conf = tmp_path / "pyproject.toml"
    conf.write_text('[project]\nname = "x"\n\n[tool.fastwsgi]\nmax-requests = 500\n'
                    'server_header = "mine"\n')
    got = printed(fastwsgi("--config", str(conf), "--print-config"))
    assert got["max_requests"] == ("500", str(conf))
    assert got["server_header"] == ("'mine'", str(conf))


def test_python_file_as_gunicorn_users_write_it(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("import multiprocessing\n_helper = 3\n"
                    "workers = multiprocessing.cpu_count() * 0 + 2\n"
                    "bind = ['127.0.0.1:9100']\ngraceful_timeout = 12\n")
    got = printed(fastwsgi("-c", str(conf), "--print-config"))
    assert got["workers"] == ("2", f"{conf}:3")
    assert got["bind"] == ("['127.0.0.1:9100']", f"{conf}:4")
    assert got["graceful_timeout"] == ("12.0", f"{conf}:5")


@pytest.mark.parametrize("name, text, words", [
    ("fastwsgi.toml", "workerz = 2\n", ["fastwsgi.toml: workerz: no such setting",
                                        "the settings are host"]),
    ("fastwsgi.toml", "workers = 'many'\n", ["fastwsgi.toml: workers: must be an integer",
                                             "'many'"]),
    ("fastwsgi.toml", "workers = [\n", ["fastwsgi.toml: not valid TOML"]),
    ("conf.py", "workers = 1\nworker_connections = 5\n", ["conf.py:2: worker_connections: "
                                                       "not supported: fastwsgi has no"]),
    ("conf.py", "worker_class = 'gevent'\n", ["conf.py:1: worker_class: 'gevent' has no "
                                             "equivalent here"]),
    ("conf.py", "workers = 0.5\n", ["conf.py:1: workers: must be an integer"]),
    ("conf.py", "def post_fork(server):\n    pass\n",
     ["conf.py:1: post_fork: must be a function of 2 arguments (server, worker)"]),
    ("conf.py", "raise ValueError('nope')\n", ["conf.py: running it failed: ValueError: nope"]),
    ("conf.py", "workers = (\n", ["conf.py:1: "]),
    ("settings.ini", "[x]\n", ["settings.ini: not a config file fastwsgi reads"]),
])
def test_config_file_errors_are_one_line(tmp_path, name, text, words):
    conf = tmp_path / name
    conf.write_text(text)
    line = one_error(fastwsgi("-c", str(conf), "apps:hello"))
    for word in words:
        assert word in line, line


def test_a_config_files_own_names_are_ignored_and_near_misses_named(tmp_path):
    # What real gunicorn.conf.py files hold beside settings: helper
    # variables, env lookups, functions that are not hooks.  gunicorn takes
    # the names it knows; so does fastwsgi, and a misspelt setting is said.
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        "import multiprocessing, os\n"
        "here = os.path.dirname(__file__)\n"
        "cores = multiprocessing.cpu_count()\n"
        "base = os.environ.get('APP_BASE', '/srv/app')\n"
        "def scaled(n):\n    return max(1, n)\n"
        "workers = scaled(cores * 0 + 2)\n"
        "worker = 3\n"
        "acesslog = '-'\n"
        "timeout = None\n")
    done = fastwsgi("-c", str(conf), "--print-config")
    got = printed(done)
    assert got["workers"] == ("2", f"{conf}:7")
    assert got["timeout"][1] == "default"
    assert f"{conf}:8: worker is not a setting, and is ignored; did you mean workers?" \
        in done.stderr, done.stderr
    assert f"{conf}:9: acesslog is not a setting, and is ignored; did you mean accesslog?" \
        in done.stderr, done.stderr
    for own in ("here", "cores", "base", "scaled"):
        assert f" {own} " not in done.stderr, done.stderr
    check = fastwsgi("-c", str(conf), "--check-config", "apps:hello")
    assert check.returncode == 0, check.stderr
    assert "did you mean workers?" in check.stderr


def test_unreadable_config_file(tmp_path):
    line = one_error(fastwsgi("-c", str(tmp_path / "missing.toml"), "apps:hello"))
    assert line.startswith(f"{tmp_path / 'missing.toml'}: cannot be read"), line


def test_bad_environment_value_names_the_variable():
    line = one_error(fastwsgi("apps:hello", env={"FASTWSGI_WORKERS": "lots"}))
    assert line.startswith("FASTWSGI_WORKERS (environment): must be an integer"), line


def test_other_fastwsgi_variables_are_left_alone():
    # Build switches share the prefix; they are not settings to refuse.
    got = printed(fastwsgi("--print-config", env={"FASTWSGI_DEBUG": "1"}))
    assert "debug" not in got


@pytest.mark.parametrize("args, words", [
    (["-x", "4", "apps:hello"], ["-x: no such option", "--help"]),
    (["--enable-backlog-metric", "apps:hello"], ["--enable-backlog-metric: not supported: ",
                                                 "--metrics-bind"]),
    (["--worker-connections", "10", "apps:hello"], ["--worker-connections: not supported: "
                                                    "fastwsgi has no per-worker"]),
    (["--certfile", "x.pem", "apps:hello"], ["certfile: 'x.pem': no such file"]),
    (["-k", "gevent", "apps:hello"], ["-k/--worker-class: 'gevent' has no equivalent"]),
    (["apps:hello", "extra"], ["unexpected argument 'extra'"]),
])
def test_unknown_options_are_named(args, words):
    line = one_error(fastwsgi(*args))
    for word in words:
        assert word in line, line


def test_gunicorn_short_workers_option_is_ours():
    got = printed(fastwsgi("-w", "3", "--print-config"))
    assert got["workers"] == ("3", "--workers")


def test_check_config_imports_the_app():
    ok = fastwsgi("--check-config", "--threads", "2", "apps:hello")
    assert ok.returncode == 0, ok.stderr
    assert "apps:hello imports" in ok.stdout
    assert "listening" not in ok.stdout + ok.stderr
    line = one_error(fastwsgi("--check-config", "no_such_module:app"))
    assert "cannot import 'no_such_module'" in line
    line = one_error(fastwsgi("--check-config", "--threads", "-1", "apps:hello"))
    assert line.startswith("--threads: must be"), line


def test_a_server_runs_with_the_file_settings(tmp_path):
    conf = tmp_path / "fastwsgi.toml"
    conf.write_text('server_header = "from-the-file"\n')
    s = ServerProcess("apps:hello", "-c", str(conf))
    try:
        answer = raw(s, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"\r\nServer: from-the-file\r\n" in answer, answer
    finally:
        s.stop()
        s.cleanup()


def test_sighup_reads_the_file_again(tmp_path):
    conf = tmp_path / "fastwsgi.toml"
    conf.write_text("workers = 2\n")
    s = ServerProcess("apps:hello", "-c", str(conf))
    try:
        def children() -> set[str]:
            return set(Path(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children")
                       .read_text().split())

        deadline = time.monotonic() + 10
        while len(children()) != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        first = children()
        assert len(first) == 2, s.output()
        conf.write_text("workers = 3\n")
        s.signal(signal.SIGHUP)
        # A reload starts new workers beside the old ones, then retires
        # those: done when three are left, none of them an old one.
        deadline = time.monotonic() + 10
        while not (len(children()) == 3 and not children() & first) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        second = children()
        assert len(second) == 3 and not second & first, s.output()
        conf.write_text("workers = 'three'\n")
        s.signal(signal.SIGHUP)
        assert "workers: must be an integer" in s.wait_output("workers: must be")
        assert children() == second and s.alive()  # the running settings are kept
    finally:
        s.stop()
        s.cleanup()


def test_a_gunicorn_config_file_reads_with_gunicorns_names(tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("import multiprocessing\n"
                    "bind = '127.0.0.1:9200'\n"
                    "workers = 2\n"
                    "worker_class = 'gthread'\n"
                    "threads = 4\n"
                    "keepalive = 7\n"
                    "loglevel = 'warning'\n"
                    f"accesslog = '{tmp_path}/access.log'\n"
                    "errorlog = '-'\n"
                    f"pidfile = '{tmp_path}/app.pid'\n"
                    "proc_name = 'shop'\n"
                    "raw_env = ['A=1', 'B=two']\n"
                    "preload_app = True\n")
    got = printed(fastwsgi("-c", str(conf), "--print-config"))
    assert got["keepalive_timeout"] == ("7.0", f"{conf}:6")
    assert got["log_level"] == ("'warning'", f"{conf}:7")
    assert got["access_log"][0] == repr(f"{tmp_path}/access.log")
    assert got["pid"][0] == repr(f"{tmp_path}/app.pid")
    assert got["name"] == ("'shop'", f"{conf}:11")
    assert got["env"][0] == "['A=1', 'B=two']"
    assert got["preload"] == ("True", f"{conf}:13")
    assert got["threads"] == ("4", f"{conf}:5")


def test_gunicorn_option_spellings(tmp_path):
    got = printed(fastwsgi("--keep-alive", "9", "-t", "40", "--access-logfile", "-",
                           "--access-logformat", "%(h)s %(s)s", "--error-logfile", "-",
                           "--limit-request-field_size", "4096", "-k", "gthread",
                           "--print-config"))
    assert got["keepalive_timeout"] == ("9.0", "--keepalive-timeout")
    assert got["timeout"] == ("40.0", "--timeout")
    assert got["access_log"] == ("'-'", "--access-log")
    assert got["access_log_format"] == ("'%(h)s %(s)s'", "--access-log-format")
    assert got["limit_request_field_size"] == ("4096", "--limit-request-field-size")


def test_fastwsgi_cmd_args_and_not_gunicorns():
    got = printed(fastwsgi("--print-config", env={"FASTWSGI_CMD_ARGS": "--workers 3 -t 9",
                                                  "GUNICORN_CMD_ARGS": "--workers 5"}))
    assert got["workers"] == ("3", "--workers")
    assert got["timeout"] == ("9.0", "--timeout")
    # The command line wins over FASTWSGI_CMD_ARGS.
    got = printed(fastwsgi("-w", "2", "--print-config",
                           env={"FASTWSGI_CMD_ARGS": "--workers 3"}))
    assert got["workers"] == ("2", "--workers")


def test_pid_chdir_env_and_error_log(tmp_path):
    app_dir = tmp_path / "site"
    app_dir.mkdir()
    (app_dir / "envapp.py").write_text(
        "import os\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [os.environ.get('GREETING', '-').encode()]\n")
    pid = tmp_path / "app.pid"
    log = tmp_path / "error.log"
    proc = subprocess.Popen([*server_command(), "--chdir", str(app_dir), "--env", "GREETING=hi",
                             "--pid", str(pid), "--error-logfile", str(log), "--port", "0",
                             "envapp:app"], cwd=TESTS, env=fastwsgi_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        m = None
        while m is None and time.monotonic() < deadline:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)",
                          log.read_text() if log.exists() else "")
            time.sleep(0.02)
        assert m, "no start line in the error log"
        assert pid.read_text().strip() == str(proc.pid)
        with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=5) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := c.recv(65536):
                answer += chunk
        assert answer.endswith(b"\r\n\r\nhi"), answer
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert not pid.exists()  # removed at exit
    assert proc.stdout.read() == b""  # nothing went to the terminal


def test_gthread_without_threads_runs_one_thread_as_gunicorn(tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("worker_class = 'gthread'\nworkers = 2\n")
    assert printed(fastwsgi("-c", str(conf), "--print-config"))["threads"] == ("1", f"{conf}:1")
    conf.write_text("worker_class = 'gthread'\nthreads = 8\n")
    assert printed(fastwsgi("-c", str(conf), "--print-config"))["threads"][0] == "8"
    assert printed(fastwsgi("-k", "gthread", "--print-config"))["threads"] == ("1", "-k gthread")
    assert printed(fastwsgi("-k", "gthread", "--threads", "3",
                            "--print-config"))["threads"][0] == "3"
