"""PEP 3333 as the application sees it: the environ, wsgi.input, wsgi.errors,
wsgi.file_wrapper, start_response and write(), the response iterable and
its close(), and what the server does when an app breaks the contract."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import tempfile
import time

import pytest
import requests
from conftest import TEST_THREADS, ServerProcess, parse_responses, raw, read_response, recv_all

FILE_SIZE = 3 * 1024 * 1024 + 123


@pytest.fixture(scope="module")
def data_file():
    fd, name = tempfile.mkstemp(prefix="fastwsgi-file-")
    content = os.urandom(FILE_SIZE)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    yield name, content
    os.unlink(name)


@pytest.fixture(scope="module")
def srv(data_file):
    """The router app, with a file for /file to send."""
    s = ServerProcess("apps:router", env={"FASTWSGI_TEST_FILE": data_file[0]})
    yield s
    alive = s.alive()
    out = s.output()
    s.stop()
    s.cleanup()
    assert alive, "server died during the module:\n" + out


def get(server, path, **kw):
    return requests.get(f"http://{server.host}:{server.port}{path}", timeout=10, **kw)


def post(server, path, data, **kw):
    return requests.post(f"http://{server.host}:{server.port}{path}", data=data,
                         timeout=10, **kw)


def environ_of(server, request: bytes) -> dict:
    out = parse_responses(raw(server, request))
    assert len(out) == 1 and out[0][0] == 200, out
    return json.loads(out[0][2])


def stats(server) -> dict:
    return get(server, "/stats").json()


def stats_after_close(server, before: dict) -> dict:
    """The counters once the iterable of the request just answered was
    closed: on an app thread, close() runs after the answer went out, and
    the client's next request can come first."""
    return wait_for(lambda: (lambda st: st if st["closed"] > before["closed"] else None)(
        stats(server))) or stats(server)


def wait_for(predicate, timeout: float = 5.0, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def wait_log(server, text: str, timeout: float = 5.0) -> str:
    wait_for(lambda: text in server.output(), timeout)
    return server.output()


def assert_serving(server):
    r = get(server, "/hello")
    assert r.status_code == 200 and r.content == b"Hello, World!"


def new_log(server, mark: int) -> str:
    """What the server logged after `mark` characters."""
    return server.output()[mark:]


# ---- the environ ----

def test_environ_required_keys_and_types(srv):
    with srv.connect() as s:
        client_port = s.getsockname()[1]
        s.sendall(b"GET /environ?x=1 HTTP/1.1\r\nHost: example.test\r\n"
                  b"Connection: close\r\n\r\n")
        out = parse_responses(recv_all(s))
    env = json.loads(out[0][2])  # a non-str key would have made this a 500
    assert out[0][0] == 200
    methods = {"input methods": env.pop("input methods"),
               "errors methods": env.pop("errors methods")}
    for key in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
                "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR",
                "REMOTE_PORT", "HTTP_HOST", "wsgi.url_scheme"):
        assert env[key][0] == "str", (key, env[key])
    # every CGI-style key (no dot) holds a native str
    for key, (type_name, _) in env.items():
        if "." not in key:
            assert type_name == "str", (key, type_name)
    assert env["REQUEST_METHOD"][1] == "GET"
    assert env["SCRIPT_NAME"][1] == ""
    assert env["PATH_INFO"][1] == "/environ"
    assert env["QUERY_STRING"][1] == "x=1"
    assert env["SERVER_NAME"][1] == "127.0.0.1"
    assert env["SERVER_PORT"][1] == str(srv.port)
    assert env["SERVER_PROTOCOL"][1] == "HTTP/1.1"
    assert env["REMOTE_ADDR"][1] == "127.0.0.1"
    assert env["REMOTE_PORT"][1] == str(client_port)
    assert env["HTTP_HOST"][1] == "example.test"
    assert env["wsgi.version"] == ["tuple", [1, 0]]
    assert env["wsgi.url_scheme"][1] == "http"
    assert env["wsgi.input_terminated"] == ["bool", True]
    assert env["wsgi.multithread"] == ["bool", bool(TEST_THREADS)]
    assert env["wsgi.multiprocess"] == ["bool", False]
    assert env["wsgi.run_once"] == ["bool", False]
    assert methods["input methods"] == ["read", "readline", "readlines", "__iter__"]
    assert methods["errors methods"] == ["write", "writelines", "flush"]
    assert "wsgi.file_wrapper" in env
    # no body: no CONTENT_LENGTH with a value other than empty or 0
    assert env.get("CONTENT_LENGTH", ["str", ""])[1] in ("", "0")


def test_environ_http10_protocol(srv):
    env = environ_of(srv, b"GET /environ HTTP/1.0\r\n\r\n")
    assert env["SERVER_PROTOCOL"][1] == "HTTP/1.0"
    assert env["QUERY_STRING"] == ["str", ""]


def test_path_info_is_percent_decoded_latin1(srv):
    env = environ_of(srv, b"GET /environ/caf%C3%A9/a%20b HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n")
    # UTF-8 bytes on the wire, one str character per byte
    assert env["PATH_INFO"][1] == "/environ/caf\u00c3\u00a9/a b"
    assert env["PATH_INFO"][1].encode("latin-1").decode("utf-8") == "/environ/café/a b"


def test_raw_non_ascii_path_bytes(srv):
    # raw bytes above 0x7F are not allowed in a request target: a strict
    # server refuses them; one that takes them passes them on as latin-1
    out = parse_responses(raw(srv, b"GET /environ/\xc3\xa9t\xe9 HTTP/1.1\r\n"
                                   b"Host: x\r\nConnection: close\r\n\r\n"))
    assert len(out) == 1
    status, _, body = out[0]
    assert status in (200, 400)
    if status == 200:
        assert json.loads(body)["PATH_INFO"][1] == "/environ/\u00c3\u00a9t\u00e9"


def test_query_string_is_raw(srv):
    env = environ_of(srv, b"GET /environ?a=%20b&c=%C3%A9+d&e HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n")
    assert env["QUERY_STRING"][1] == "a=%20b&c=%C3%A9+d&e"
    assert env["PATH_INFO"][1] == "/environ"


def test_content_type_and_length_have_no_http_prefix(srv):
    env = environ_of(srv, b"POST /environ HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: text/x-test\r\nContent-Length: 5\r\n"
                          b"Connection: close\r\n\r\nhello")
    assert env["CONTENT_TYPE"] == ["str", "text/x-test"]
    assert env["CONTENT_LENGTH"] == ["str", "5"]
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env
    assert env["REQUEST_METHOD"][1] == "POST"


def test_repeated_headers_joined(srv):
    env = environ_of(srv, b"GET /environ HTTP/1.1\r\nHost: x\r\nX-Multi: one\r\n"
                          b"X-Other: z\r\nx-multi: two\r\nX-MULTI: three\r\n"
                          b"Connection: close\r\n\r\n")
    assert env["HTTP_X_MULTI"] == ["str", "one, two, three"]
    assert env["HTTP_X_OTHER"] == ["str", "z"]


def test_header_values_are_latin1_strings(srv):
    env = environ_of(srv, b"GET /environ HTTP/1.1\r\nHost: x\r\n"
                          b"X-Bytes: caf\xc3\xa9\r\nConnection: close\r\n\r\n")
    assert env["HTTP_X_BYTES"] == ["str", "caf\u00c3\u00a9"]


def test_unix_socket_server_name_and_port_not_empty(start_server, tmp_path):
    # PEP 3333: "SERVER_NAME and SERVER_PORT can never be empty strings"
    path = str(tmp_path / "env.sock")
    s = start_server("apps:router", "--bind", f"unix:{path}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect(path)
        c.sendall(b"GET /environ HTTP/1.1\r\nHost: localhost\r\n"
                  b"Connection: close\r\n\r\n")
        out = parse_responses(recv_all(c))
    assert s.alive()
    env = json.loads(out[0][2])
    assert env["SERVER_NAME"][0] == "str" and env["SERVER_NAME"][1] != ""
    assert env["SERVER_PORT"][0] == "str" and env["SERVER_PORT"][1] != ""


def test_chunked_request_body_is_terminated(srv):
    body = b"5\r\nhello\r\n7\r\n chunks\r\n0\r\n\r\n"
    out = parse_responses(raw(srv, b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                                   b"Transfer-Encoding: chunked\r\n"
                                   b"Connection: close\r\n\r\n" + body))
    env = json.loads(out[0][2])
    assert env["body_len"] == 12 and env["body_head"] == "hello chunks"
    assert env["wsgi.input_terminated"] is True
    # the length is either left out or is the real length of the body
    assert env.get("CONTENT_LENGTH", "12") == "12"


# ---- wsgi.input ----

INPUT = b"line one\nabcdefgh\nx\ny\n"
INPUT_EXPECTED = {"first": "line one\n", "limited": "abc", "chunk": "defg",
                  "rest": ["h\n", "x\n", "y\n"], "after": "", "after_n": ""}


def test_input_methods(srv):
    r = post(srv, "/input-methods", INPUT)
    assert r.status_code == 200
    assert r.json() == INPUT_EXPECTED


def test_input_methods_spooled_body(start_server):
    # a body larger than the spool threshold is read from a file
    s = start_server("apps:router", "--spool-threshold", "8")
    r = post(s, "/input-methods", INPUT)
    assert r.json() == INPUT_EXPECTED
    big = os.urandom(300_000)
    r = post(s, "/body", big)
    assert r.content == big


def test_input_iteration(srv):
    r = post(srv, "/iter-input", b"a\nb\nc\nlast without newline")
    assert r.text == "4"
    r = post(srv, "/iter-input", b"")
    assert r.text == "0"


def test_input_read_all_large(srv):
    big = os.urandom(2 * 1024 * 1024 + 7)  # larger than the default spool threshold
    r = post(srv, "/body", big)
    assert r.status_code == 200
    assert r.content == big


def test_input_does_not_read_past_body(srv):
    first = (b"POST /input-methods HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
             % len(INPUT)) + INPUT
    second = b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
    third = b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = parse_responses(raw(srv, first + second + third))
    assert [o[0] for o in out] == [200, 200, 200]
    assert json.loads(out[0][2]) == INPUT_EXPECTED
    assert out[1][2] == b"xyz"
    assert out[2][2] == b"Hello, World!"


def test_input_empty_on_get(srv):
    r = get(srv, "/echo")
    assert r.json()["body_len"] == 0


# ---- wsgi.errors ----

def test_wsgi_errors_goes_to_log(srv):
    r = get(srv, "/errors")
    assert r.status_code == 200 and r.content == b"logged"
    assert "message to wsgi.errors" in wait_log(srv, "message to wsgi.errors")


# ---- wsgi.file_wrapper ----

def test_file_wrapper_sends_whole_file(srv, data_file):
    r = get(srv, "/file")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(FILE_SIZE)
    assert r.content == data_file[1]


def test_file_wrapper_with_offset(srv, data_file):
    r = get(srv, "/file?offset=1000")
    assert r.headers["Content-Length"] == str(FILE_SIZE - 1000)
    assert r.content == data_file[1][1000:]


def test_file_wrapper_shorter_content_length(srv, data_file):
    with srv.connect() as s:
        s.sendall(b"GET /file?cl=50 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body, rest = read_response(s)
        assert status == 200
        assert headers["content-length"] == "50"
        assert body == data_file[1][:50]
        assert rest == b""
        # exactly 50 bytes: the next response on the connection follows them
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        tail = recv_all(s)
    assert tail.startswith(b"HTTP/1.1 200 ")
    assert tail.endswith(b"\r\n\r\nHello, World!")


def test_file_wrapper_offset_and_length(srv, data_file):
    out = parse_responses(raw(srv, b"GET /file?offset=10&cl=20 HTTP/1.1\r\nHost: x\r\n"
                                   b"Connection: close\r\n\r\n"))
    assert len(out) == 1
    assert out[0][1]["content-length"] == "20"
    assert out[0][2] == data_file[1][10:30]


def test_file_wrapper_head(srv):
    with srv.connect() as s:
        s.sendall(b"HEAD /file HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body, rest = read_response(s, head=True)
        assert status == 200
        assert headers["content-length"] == str(FILE_SIZE)
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        tail = rest + recv_all(s)
    # no body bytes between the HEAD response and the next one
    assert tail.startswith(b"HTTP/1.1 200 ")
    assert tail.endswith(b"Hello, World!")


def test_file_wrapper_falls_back_to_iteration(srv):
    r = get(srv, "/filelike")
    assert r.status_code == 200
    assert r.content == b"from a file-like object" * 1000


def test_file_wrapper_closes_files(srv):
    # Connection: close, so that only the server's own descriptors count
    # (a client's idle keep-alive sockets would linger until its GC runs).
    close = {"Connection": "close"}
    for _ in range(3):
        get(srv, "/file?cl=10", headers=close)
    before = srv.pid_fds()
    for _ in range(30):
        assert get(srv, "/file?offset=5&cl=100", headers=close).status_code == 200
    # closed connections may take a moment to be reaped on a busy machine
    deadline = time.monotonic() + 3
    while srv.pid_fds() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.pid_fds() <= before


# ---- start_response, write() ----

def test_exc_info_replaces_unsent_headers(srv):
    r = get(srv, "/exc-info")
    assert r.status_code == 503
    assert r.headers["X-Second"] == "2"
    assert "X-First" not in r.headers
    assert r.content == b"replaced"
    assert_serving(srv)


def test_exc_info_after_head_sent_reraises(srv):
    mark = len(srv.output())
    data = raw(srv, b"GET /exc-info-late HTTP/1.1\r\nHost: x\r\n\r\n")
    # the head and the written data went out; then the connection is closed
    # without the chunked body's last chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"sent already" in data
    assert not data.endswith(b"0\r\n\r\n")
    assert b"unreachable" not in data
    log = wait_log(srv, "ValueError: too late")
    assert "ValueError: too late" in log[mark:]
    assert_serving(srv)


def test_write_callable(srv):
    r = get(srv, "/write")
    assert r.status_code == 200
    assert r.content == b"written-then-returned"


def test_write_big(srv):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    conn.request("GET", "/write-big?n=64")
    r = conn.getresponse()
    assert r.status == 200
    body = r.read()
    assert len(body) == 64 * 65536
    assert body == b"w" * (64 * 65536)
    # the connection is reusable after a body written with write()
    conn.request("GET", "/hello")
    assert conn.getresponse().read() == b"Hello, World!"
    conn.close()


def test_write_big_slow_reader(srv):
    # write() waits for the client; a client that reads late still gets it all
    with srv.connect(timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.sendall(b"GET /write-big?n=32 HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        time.sleep(0.5)
        data = recv_all(s, timeout=10)
    out = parse_responses(data)
    assert out[0][0] == 200
    assert out[0][2] == b"w" * (32 * 65536)


# ---- status and header validation ----

BAD_RESPONSES = [
    "/bad-header?kind=crlf",
    "/bad-header?kind=lf",
    "/bad-header?kind=nonlatin",
    "/bad-header?kind=nul",
    "/bad-header-name",
    "/bad-status",
    "/bad-status?s=20+OK",
    "/bad-status?s=200OK",
    "/bad-status?s=600+Nope",
    "/bad-status?s=2x0+OK",
    "/bad-status?s=100+Continue",
    "/header-tuple3",
    "/header-tuples",
]


@pytest.mark.parametrize("path", BAD_RESPONSES)
def test_invalid_status_or_headers_give_500(srv, path):
    mark = len(srv.output())
    data = raw(srv, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert data.startswith(b"HTTP/1.1 500 "), data
    head = data.partition(b"\r\n\r\n")[0].lower()
    assert b"injected" not in head
    assert b"x-bad" not in head
    assert b"bad name" not in head
    assert b"\r\nx-a:" not in head
    assert b"\r\nbad" not in data.lower()
    out = parse_responses(data)
    assert len(out) == 1 and out[0][0] == 500
    wait_for(lambda: "[ERROR]" in new_log(srv, mark))
    assert "[ERROR]" in new_log(srv, mark)
    assert_serving(srv)


def test_status_without_reason_is_well_formed(srv):
    # "200" breaks PEP 3333 (a reason phrase is required); either refuse it or
    # send a status line that keeps its space: "HTTP/1.1 200 \r\n"
    data = raw(srv, b"GET /bad-status?s=200 HTTP/1.1\r\nHost: x\r\n"
                    b"Connection: close\r\n\r\n")
    line = data.split(b"\r\n", 1)[0]
    assert line in (b"HTTP/1.1 500 Internal Server Error", b"HTTP/1.1 200 "), line


def test_valid_unusual_statuses(srv):
    r = get(srv, "/status?code=299")
    assert r.status_code == 299 and r.content == b"body-for-299"
    r = get(srv, "/status?code=599")
    assert r.status_code == 599


# ---- the iterable's close() ----

def test_close_called_once_on_success(srv):
    before = stats(srv)
    r = get(srv, "/stream?n=4&size=3")
    assert r.content == b"000111222333"
    after = stats_after_close(srv, before)
    assert after["created"] == before["created"] + 1
    assert after["closed"] == before["closed"] + 1


def test_close_called_once_on_error_in_iteration(srv):
    before = stats(srv)
    mark = len(srv.output())
    data = raw(srv, b"GET /raise-in-iter?at=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    # the head went out with the first chunk: the connection is cut short
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"first" in data and b"second" not in data
    assert not data.endswith(b"0\r\n\r\n")
    after = stats_after_close(srv, before)
    assert after["closed"] == before["closed"] + 1
    assert after["created"] == before["created"] + 1
    assert "RuntimeError: failing inside iteration" in wait_log(
        srv, "failing inside iteration")[mark:]
    assert_serving(srv)


def test_error_at_first_item_gives_500(srv):
    before = stats(srv)
    r = get(srv, "/raise-in-iter?at=0")
    assert r.status_code == 500
    after = stats_after_close(srv, before)
    assert after["closed"] == before["closed"] + 1
    assert_serving(srv)


def test_error_in_close_is_logged_and_response_complete(srv):
    before = stats(srv)
    mark = len(srv.output())
    out = parse_responses(raw(srv, b"GET /raise-in-close HTTP/1.1\r\nHost: x\r\n"
                                   b"Connection: close\r\n\r\n"))
    assert out == [(200, out[0][1], b"fine")]
    after = stats_after_close(srv, before)
    assert after["closed"] == before["closed"] + 1
    assert after["close_errors"] == before["close_errors"] + 1
    assert "failing inside close()" in wait_log(srv, "failing inside close()")[mark:]
    assert_serving(srv)


def test_close_called_once_when_client_leaves(srv):
    before = stats(srv)
    with srv.connect() as s:
        s.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        got = 0
        while got < 300_000:
            chunk = s.recv(65536)
            assert chunk
            got += len(chunk)
    closed = wait_for(lambda: stats(srv)["closed"] == before["closed"] + 1)
    assert closed, stats(srv)
    time.sleep(0.3)
    after = stats_after_close(srv, before)
    assert after["closed"] == before["closed"] + 1
    assert after["created"] == before["created"] + 1
    assert_serving(srv)


def test_close_called_once_on_generator_and_list(srv):
    before = stats(srv)
    r = get(srv, "/generator")
    assert r.content == b"gen-erated"
    r = get(srv, "/stream-cl")
    assert r.content == b"0123456789"
    after = stats_after_close(srv, before)
    assert after["closed"] == before["closed"] + 1  # /stream-cl is Tracked


def test_close_called_at_shutdown_with_response_in_flight(start_server):
    s = start_server("fw_close_app:app", "--graceful-timeout", "0.3")
    c = s.connect()
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.recv(65536)
    s.signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0
    c.close()
    out = s.output()
    assert out.count("close() called") == 1, out
    assert "fastwsgi stopped" in out


# ---- app errors ----

def test_exception_before_start_gives_500_and_logs(srv):
    mark = len(srv.output())
    r = get(srv, "/raise-before")
    assert r.status_code == 500
    assert len(r.content) < 100
    assert b"Traceback" not in r.content and b"failing" not in r.content
    log = wait_log(srv, "failing before start_response")[mark:]
    assert "Traceback (most recent call last)" in log
    assert "RuntimeError: failing before start_response" in log
    assert_serving(srv)


def test_exception_after_start_before_body_gives_500(srv):
    mark = len(srv.output())
    r = get(srv, "/raise-after-start")
    assert r.status_code == 500
    assert b"failing" not in r.content
    assert "failing after start_response" in wait_log(
        srv, "failing after start_response")[mark:]
    assert_serving(srv)


CONTRACT_ERRORS = [
    ("/return-str", "str"),
    ("/return-none", "NoneType"),
    ("/return-int", "int"),
    ("/twice", "start_response"),
    ("/no-start", "start_response"),
]


@pytest.mark.parametrize("path,word", CONTRACT_ERRORS)
def test_contract_errors_give_500_and_log(srv, path, word):
    mark = len(srv.output())
    r = get(srv, path)
    assert r.status_code == 500
    assert b"never started" not in r.content and b"no" != r.content
    wait_for(lambda: "[ERROR]" in new_log(srv, mark))
    log = new_log(srv, mark)
    assert "[ERROR]" in log
    assert word in log
    assert_serving(srv)


def test_str_after_bytes_closes_connection(srv):
    before = stats(srv)
    mark = len(srv.output())
    data = raw(srv, b"GET /str-late HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"bytes first" in data
    assert b"then str" not in data
    assert not data.endswith(b"0\r\n\r\n")
    wait_for(lambda: "[ERROR]" in new_log(srv, mark))
    assert "str" in new_log(srv, mark)
    assert stats_after_close(srv, before)["closed"] == before["closed"] + 1
    assert_serving(srv)


def test_system_exit_does_not_stop_server(srv):
    mark = len(srv.output())
    r = get(srv, "/exit")
    assert r.status_code == 500
    assert "SystemExit" in wait_log(srv, "SystemExit")[mark:]
    time.sleep(0.1)
    assert srv.alive()
    assert_serving(srv)
