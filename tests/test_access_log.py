"""The access log, with a real server and real clients: each format's exact
line, escaping, refused requests, streamed and HEAD responses, rotation
with SIGUSR1, many concurrent clients each getting their own line."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import ServerProcess, fastwsgi_env, server_command

TIME = r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}"


def request(s: ServerProcess, raw_head: bytes) -> tuple[bytes, int]:
    """Send a request on its own connection; (response, local port)."""
    with socket.create_connection((s.host, s.port), timeout=5) as c:
        port = c.getsockname()[1]
        c.sendall(raw_head)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    return data, port


def lines(path: Path, count: int, timeout: float = 5.0) -> list[str]:
    """Wait for `count` lines (the writer thread flushes within a turn)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        got = text.splitlines()
        if len(got) >= count:
            return got
        time.sleep(0.02)
    raise AssertionError(f"{count} lines expected, got:\n{path.read_text()}")


@pytest.fixture
def logged(tmp_path):
    servers = []

    def start(*args: str, app: str = "apps:router") -> tuple[ServerProcess, Path]:
        path = tmp_path / "access.log"
        s = ServerProcess(app, "--access-log", str(path), *args)
        servers.append(s)
        return s, path

    yield start
    for s in servers:
        s.stop()
        s.cleanup()


def test_combined_line(logged):
    s, path = logged()
    _, port = request(s, b"GET /hello?a=1 HTTP/1.1\r\nHost: t\r\nReferer: http://r/\r\n"
                         b"User-Agent: agent/1\r\nConnection: close\r\n\r\n")
    (line,) = lines(path, 1)
    m = re.fullmatch(rf'127\.0\.0\.1 - - \[{TIME}\] "GET /hello\?a=1 HTTP/1\.1" 200 13 '
                     r'"http://r/" "agent/1" (\d+)', line)
    assert m, line
    assert 0 < int(m.group(1)) < 5_000_000  # microseconds


def test_quotes_and_control_bytes_cannot_forge_a_line(logged):
    s, path = logged()
    # (Control bytes other than a tab are refused by the parser already.)
    request(s, b'GET /hello HTTP/1.1\r\nHost: t\r\nUser-Agent: a" 500 "\tx\\\r\n'
               b"Connection: close\r\n\r\n")
    (line,) = lines(path, 1)
    assert line.endswith(r'"a\" 500 \"\x09x\\"' + line[line.rindex(" "):]), line


def test_head_streamed_and_refused_requests(logged):
    s, path = logged()
    request(s, b"HEAD /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    lines(path, 1)
    request(s, b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    lines(path, 2)
    request(s, b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n")
    got = lines(path, 3)
    assert '"HEAD /hello HTTP/1.1" 200 - ' in got[0], got
    m = re.search(r'"GET /stream HTTP/1\.1" 200 (\d+) ', got[1])
    assert m and int(m.group(1)) > 0, got
    assert re.search(r'\] "-" 400 \d+ "-" "-" \d+$', got[2]), got


def test_keep_alive_and_pipelined_requests_each_get_a_line(logged):
    s, path = logged()
    with socket.create_connection((s.host, s.port), timeout=5) as c:
        c.sendall(b"GET /hello?n=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /hello?n=2 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /hello?n=3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        while c.recv(65536):
            pass
    got = lines(path, 3)
    assert [re.search(r"n=(\d)", line).group(1) for line in got] == ["1", "2", "3"]


def test_json_lines(logged):
    s, path = logged("--access-log-format", "json")
    request(s, b"POST /echo?x=%22 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
               b"User-Agent: \xe9t\xe9\r\nConnection: close\r\n\r\nabc")
    (line,) = lines(path, 1)
    entry = json.loads(line)
    assert entry["method"] == "POST" and entry["path"] == "/echo"
    assert entry["query"] == "x=%22" and entry["protocol"] == "HTTP/1.1"
    assert entry["status"] == 200 and entry["bytes"] > 0
    assert entry["user_agent"] == "\u00e9t\u00e9"  # the latin-1 reading of the bytes
    assert entry["remote_addr"] == "127.0.0.1" and entry["pid"] == s.proc.pid
    assert entry["request"] == "POST /echo?x=%22 HTTP/1.1"
    assert re.fullmatch(TIME, entry["time"])
    assert isinstance(entry["duration_us"], int)


def test_long_fields_are_cut_and_a_json_line_still_parses(logged):
    """Fields that escape to six bytes each, far past the line's 8 KiB: each
    is cut, the line keeps its closing quote and brace, and the fields after
    the long ones are still there."""
    s, path = logged("--access-log-format", "json")
    junk = b"\xff" * 2000
    request(s, b"GET /hello HTTP/1.1\r\nHost: t\r\nReferer: " + junk
               + b"\r\nUser-Agent: " + junk + b"\r\nConnection: close\r\n\r\n")
    (line,) = lines(path, 1)
    assert len(line) < 8192, len(line)
    entry = json.loads(line)
    assert entry["status"] == 200 and entry["pid"] == s.proc.pid
    for name in ("referer", "user_agent"):
        assert 10 <= len(entry[name]) < 2000, (name, len(entry[name]))
        assert set(entry[name]) == {"\u00ff"}, name


def test_eight_long_headers_each_keep_a_share_of_the_line(logged):
    names = [f"x-h{i}" for i in range(8)]
    fmt = "|".join(f"%({{{n}}}i)s" for n in names) + "|%(s)s|END"
    s, path = logged("--access-log-format", fmt)
    head = b"GET /hello HTTP/1.1\r\nHost: t\r\n" + b"".join(
        f"{n}: x".encode() + b"\t\x9b\xff" * 600 + b"\r\n" for n in names
    ) + b"Connection: close\r\n\r\n"
    request(s, head)
    (line,) = lines(path, 1)
    assert line.endswith("|200|END"), line[-100:]
    fields = line.split("|")[:8]
    assert all(len(f) >= 60 for f in fields), [len(f) for f in fields]
    # A tab, the C1 control 0x9b and 0xff, each escaped, each escape whole.
    assert fields[-1].startswith("x\\x09\\x9b\\xff"), fields[-1][:40]
    assert all(re.fullmatch(r"x(\\x09\\x9b\\xff)*(\\x09(\\x9b)?)?", f) for f in fields), fields


def test_bytes_above_ascii_are_escaped_in_text_lines(logged):
    s, path = logged()
    request(s, b"GET /hello HTTP/1.1\r\nHost: t\r\nUser-Agent: caf\xc3\xa9 \x9b2J\r\n"
               b"Connection: close\r\n\r\n")
    (line,) = lines(path, 1)
    assert '"caf\\xc3\\xa9 \\x9b2J"' in line, line
    assert not any(ord(ch) > 0x7e for ch in line), line


def test_gunicorn_atoms(logged):
    fmt = '%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|%({x-trace}i)s|%(p)s|%(T)s|%(L)s|%%'
    s, path = logged("--access-log-format", fmt)
    request(s, b"GET /status?code=204 HTTP/1.1\r\nHost: t\r\nX-Trace: abc\r\n"
               b"Connection: close\r\n\r\n")
    (line,) = lines(path, 1)
    m = re.fullmatch(rf"GET\|/status\|code=204\|HTTP/1\.1\|204\|0\|-\|abc\|{s.proc.pid}\|0\|"
                     r"0\.\d{6}\|%", line)
    assert m, line


@pytest.mark.parametrize("args, words", [
    (["--access-log-format", "%(h)s %(z)s"], ["%(z)s is not an atom", "{name}i"]),
    (["--access-log-format", "%({x}e)s"], ["is not an atom"]),
    (["--access-log", "/no/such/dir/a.log"], ["its directory does not exist"]),
])
def test_bad_settings_are_one_line(args, words):
    r = subprocess.run([*server_command(), *args, "apps:hello"], env=fastwsgi_env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for word in words:
        assert word in r.stderr, r.stderr


def test_rotation_with_sigusr1(logged, tmp_path):
    s, path = logged()
    request(s, b"GET /hello?before HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    lines(path, 1)
    rotated = tmp_path / "access.log.1"
    os.rename(path, rotated)
    s.signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    request(s, b"GET /hello?after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    (line,) = lines(path, 1)
    assert "?after" in line
    assert "?before" in rotated.read_text() and "?after" not in rotated.read_text()
    assert s.alive()


@pytest.mark.parametrize("threads", ["0", "4"])
def test_each_client_gets_its_own_line_under_many_clients(logged, threads):
    """Lines are built from what each connection sent: 40 clients with
    keep-alive send 25 requests each, all different; every request shows up
    once, with its own target next to its own client's User-Agent."""
    s, path = logged("--threads", threads)
    sent: set[tuple[str, str]] = set()
    lock = threading.Lock()

    def client(i: int) -> None:
        with socket.create_connection((s.host, s.port), timeout=10) as c:
            for j in range(25):
                target = f"/hello?c={i}&r={j}"
                c.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nUser-Agent: c{i}\r\n\r\n"
                          .encode())
                data = b""
                while not data.endswith(b"Hello, World!"):
                    data += c.recv(65536)
                with lock:
                    sent.add((target, f"c{i}"))

    workers = [threading.Thread(target=client, args=(i,)) for i in range(40)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    s.stop()
    seen = set()
    for line in path.read_text().splitlines():
        m = re.fullmatch(rf'127\.0\.0\.1 - - \[{TIME}\] "GET (\S+) HTTP/1\.1" 200 13 "-" '
                         r'"(c\d+)" \d+', line)
        assert m, line
        seen.add((m.group(1), m.group(2)))
    assert seen == sent
    assert len(path.read_text().splitlines()) == 1000
