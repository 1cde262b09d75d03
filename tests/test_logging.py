"""The error log: its line format (text and JSON), the request named on an
app error, refused requests at debug level."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time

import pytest
from conftest import TESTS, ServerProcess, fastwsgi_env, raw, server_command

PREFIX = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d{4}\] \[(\d+)\] "
                    r"\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ")


def wait_logged(s: ServerProcess, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = s.output()
        if text in out:
            return out
        time.sleep(0.02)
    raise AssertionError(f"{text!r} not logged:\n{s.output()}")


def test_every_line_has_time_pid_and_level(start_server):
    s = start_server("apps:router")
    raw(s, b"GET /raise-before?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    out = wait_logged(s, "RuntimeError")
    first = [line for line in out.splitlines() if not line.startswith((" ", "Traceback"))
             and not re.match(r"\w+Error", line)]
    assert first, out
    for line in first:
        m = PREFIX.match(line)
        assert m, line
        assert int(m.group(1)) == s.proc.pid


def test_an_app_error_names_the_request_and_the_peer(start_server):
    s = start_server("apps:router")
    with socket.create_connection((s.host, s.port)) as c:
        port = c.getsockname()[1]
        c.sendall(b"GET /raise-before?a=b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert c.recv(100).startswith(b"HTTP/1.1 500 ")
    out = wait_logged(s, "[ERROR] error in the WSGI app")
    assert f"answering GET /raise-before?a=b from 127.0.0.1:{port}" in out, out


def test_json_lines(start_server):
    s = start_server("apps:router", "--log-format", "json")
    raw(s, b"GET /raise-before HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    wait_logged(s, "RuntimeError")
    entries = [json.loads(line) for line in s.output().splitlines()]
    assert entries[0]["message"].startswith("fastwsgi ")
    assert entries[0]["level"] == "info" and entries[0]["pid"] == s.proc.pid
    error = next(e for e in entries if e["level"] == "error")
    assert "answering GET /raise-before from 127.0.0.1:" in error["message"]
    assert "RuntimeError: failing before start_response" in error["traceback"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d{4}", error["time"])


def test_refused_requests_are_logged_at_debug_only(start_server):
    quiet = start_server("apps:router")
    loud = start_server("apps:router", "--log-level", "debug")
    for s in (quiet, loud):
        with socket.create_connection((s.host, s.port)) as c:
            port = c.getsockname()[1]
            c.sendall(b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n")
            assert c.recv(100).startswith(b"HTTP/1.1 400 ")
        if s is loud:
            out = wait_logged(s, "refused a request")
            assert f"[DEBUG] refused a request from 127.0.0.1:{port}: 400 Bad Request" in out
    time.sleep(0.2)
    assert "refused" not in quiet.output()


FAILING_APP = '''
def app(environ, start_response):
    raise RuntimeError("the app failed")
'''


def test_a_client_cannot_forge_a_line_of_the_error_log(tmp_path):
    # PATH_INFO is percent-decoded: %0d%0a in the target used to end the
    # app-error line and start one of the client's choosing.
    (tmp_path / "failing.py").write_text(FAILING_APP)
    s = ServerProcess("failing:app", cwd=tmp_path)
    try:
        forged = "[2026-01-01 00:00:00.000 +0000] [1] [CRITICAL] forged"
        target = "/x%0d%0a" + forged.replace(" ", "%20").replace("[", "%5b").replace("]", "%5d")
        raw(s, f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        out = wait_logged(s, "RuntimeError")
        assert "GET /x\\x0d\\x0a[2026-01-01" in out, out
        assert not any(line.startswith(forged) for line in out.splitlines()), out
    finally:
        s.stop()
        s.cleanup()


PRINTING_APP = '''
import sys


def app(environ, start_response):
    print("printed by the app", environ["PATH_INFO"])
    sys.stderr.write("written to stderr by the app\\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


@pytest.mark.parametrize("how", [["--capture-output"], ["--capture-output", "--workers", "2"],
                                 ["-c", "gunicorn.conf.py"]])
def test_capture_output_sends_what_the_app_prints_to_the_error_log(tmp_path, how):
    (tmp_path / "printing.py").write_text(PRINTING_APP)
    (tmp_path / "gunicorn.conf.py").write_text(
        "import os\nhere = os.path.dirname(__file__)\n"
        "capture_output = True\nerrorlog = os.path.join(here, 'error.log')\n")
    log = tmp_path / "error.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The start line goes to the error log file: wait for the port instead.
    proc = subprocess.Popen([*server_command(), "--port", str(port), "--error-log", str(log),
                             *how, "printing:app"], cwd=tmp_path, env=fastwsgi_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"GET /first HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    assert c.recv(4096).startswith(b"HTTP/1.1 200")
                break
            except ConnectionRefusedError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        while time.monotonic() < deadline and "written to stderr" not in log.read_text():
            time.sleep(0.02)
        text = log.read_text()
        assert "printed by the app /first" in text, text
        assert "written to stderr by the app" in text, text
        assert "listening on" in text, text  # the log itself is there too
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


LOGCONFIG = """
import os
here = os.path.dirname(__file__)
logconfig_dict = {
    "version": 1,
    "formatters": {"custom": {"format": "CUSTOM %(levelname)s %(name)s %(message)s"}},
    "handlers": {"file": {"class": "logging.FileHandler", "formatter": "custom",
                          "filename": os.path.join(here, "custom.log")}},
    "loggers": {"gunicorn.error": {"handlers": ["file"], "level": "INFO"}},
}
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_logconfig_dict_with_gunicorns_logger_names_takes_the_error_log(tmp_path, workers):
    (tmp_path / "gunicorn.conf.py").write_text(LOGCONFIG)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([*server_command(), "--port", str(port), "--workers", workers,
                             "-c", str(tmp_path / "gunicorn.conf.py"), "apps:hello"],
                            cwd=TESTS, env=fastwsgi_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    log = tmp_path / "custom.log"
    try:
        deadline = time.monotonic() + 20
        while not (log.exists() and "listening on" in log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert re.search(r"^CUSTOM INFO fastwsgi fastwsgi \S+ listening on ",
                         log.read_text(), re.M), log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert b"listening on" not in out  # only where the configuration said


def test_a_logconfig_dict_that_cannot_be_applied_is_one_line(tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("logconfig_dict = {'version': 1, 'handlers': {'h': {'class': 'no.Such'}}}\n")
    done = subprocess.run([*server_command(), "--port", "0", "-c", str(conf), "apps:hello"],
                          cwd=TESTS, env=fastwsgi_env(), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "logconfig_dict: cannot be applied" in lines[0], done.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_syslog_gets_the_error_log(workers):
    # gunicorn's --log-syslog and --log-syslog-to, received on a UDP socket.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(20)
        port = sink.getsockname()[1]
        s = ServerProcess("apps:router", "--log-syslog", "--log-syslog-to",
                          f"udp://127.0.0.1:{port}", "--log-syslog-prefix", "shop",
                          "--log-syslog-facility", "local3", "--workers", workers)
        try:
            got = b""
            while b"listening on" not in got:
                got = sink.recv(65536)
            # <PRI>: facility local3 (19) * 8 + info (6) = 158.
            assert re.match(rb"<158>shop\[\d+\]: \[INFO\] fastwsgi \S+ listening on ", got), got
            assert "listening on" in s.output()  # and the usual log still
        finally:
            s.stop()
            s.cleanup()


ACCESS_CONFIG = """
import os
here = os.path.dirname(__file__)
logconfig_dict = {
    "version": 1,
    "formatters": {"access": {"format": "ACCESS %(name)s %(message)s"}},
    "handlers": {"access": {"class": "logging.FileHandler", "formatter": "access",
                            "filename": os.path.join(here, "access-via-logging.log")}},
    "loggers": {"gunicorn.access": {"handlers": ["access"], "propagate": False}},
}
access_log_format = '%(h)s "%(r)s" %(s)s %(p)s'
"""


@pytest.mark.parametrize("workers, also_file", [("1", False), ("2", False), ("2", True)])
def test_access_lines_go_where_a_logging_config_routes_them(tmp_path, workers, also_file):
    """A logconfig_dict that gives gunicorn.access a handler of its own: the
    C-built lines reach it through Python logging, one record per response,
    from every worker (and --access-log given as well still gets them)."""
    (tmp_path / "gunicorn.conf.py").write_text(ACCESS_CONFIG)
    plain = tmp_path / "plain-access.log"
    args = ["--access-log", str(plain)] if also_file else []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([*server_command(), "--port", str(port), "--workers", workers,
                             "-c", str(tmp_path / "gunicorn.conf.py"), *args, "apps:router"],
                            cwd=TESTS, env=fastwsgi_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    log = tmp_path / "access-via-logging.log"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                for n in range(20):
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                        c.sendall(f"GET /hello?n={n} HTTP/1.1\r\nHost: t\r\n"
                                  "Connection: close\r\n\r\n".encode())
                        assert c.recv(12) == b"HTTP/1.1 200"
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        deadline = time.monotonic() + 10
        while (not log.exists() or log.read_text().count("\n") < 20) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = log.read_text().splitlines()
        assert len(lines) == 20, lines
        # (Two workers log side by side: their lines may interleave.)
        got = sorted(int(re.fullmatch(r'ACCESS gunicorn\.access 127\.0\.0\.1 "GET /hello\?n=(\d+) '
                                      r'HTTP/1\.1" 200 \d+', line).group(1)) for line in lines)
        assert got == list(range(20)), lines
        if also_file:
            while plain.read_text().count("\n") < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sorted(plain.read_text().splitlines()) == sorted(
                line.split(" ", 2)[2] for line in lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert b"GET /hello" not in out  # only where the configuration said
