"""Real frameworks served by fastwsgi (Flask, Django, Falcon, Bottle), and an
app wrapped in wsgiref.validate.validator through every response path."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests
from conftest import ServerProcess, parse_responses, raw, recv_all

TESTS = Path(__file__).resolve().parent
APPS_SOURCE = (TESTS / "apps.py").read_bytes()


def served(app_spec: str, **kw):
    s = ServerProcess(app_spec, **kw)
    yield s
    alive = s.alive()
    out = s.output()
    s.stop()
    s.cleanup()
    assert alive, "server died:\n" + out


def url(server, path: str) -> str:
    return f"http://{server.host}:{server.port}{path}"


# ---- Flask ----

@pytest.fixture(scope="module")
def flask_server():
    yield from served("fw_flask_app:app")


def test_flask_json(flask_server):
    r = requests.get(url(flask_server, "/json?a=1&b=two"), timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"message": "hello", "args": {"a": "1", "b": "two"},
                        "path": "/json", "method": "GET"}


def test_flask_form_post(flask_server):
    r = requests.post(url(flask_server, "/form"),
                      data={"name": "Zoë", "n": "3"}, timeout=10)
    assert r.status_code == 200
    assert r.json() == {"form": {"name": "Zoë", "n": "3"}, "upload": None}


def test_flask_multipart_upload(flask_server):
    r = requests.post(url(flask_server, "/form"), data={"k": "v"},
                      files={"upload": ("a.txt", b"file content\n" * 1000)},
                      timeout=10)
    assert r.status_code == 200
    assert r.json() == {"form": {"k": "v"}, "upload": "file content\n" * 1000}


def test_flask_json_body(flask_server):
    payload = {"items": list(range(100)), "text": "é" * 10}
    r = requests.post(url(flask_server, "/json-body"), json=payload, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["received"] == payload
    assert body["length"] == len(json.dumps(payload).encode())


def test_flask_streaming(flask_server):
    with requests.get(url(flask_server, "/stream?n=50"), stream=True,
                      timeout=10) as r:
        assert r.status_code == 200
        assert r.headers.get("Transfer-Encoding") == "chunked"
        lines = list(r.iter_lines())
    assert lines == [f"part {i}".encode() for i in range(50)]


def test_flask_send_file(flask_server):
    r = requests.get(url(flask_server, "/file"), timeout=10)
    assert r.status_code == 200
    assert r.content == APPS_SOURCE
    assert r.headers["Content-Length"] == str(len(APPS_SOURCE))
    assert r.headers["Content-Type"].startswith("text/x-python")


def test_flask_conditional_file(flask_server):
    first = requests.get(url(flask_server, "/file"), timeout=10)
    r = requests.get(url(flask_server, "/file"), timeout=10,
                     headers={"If-None-Match": first.headers["ETag"]})
    assert r.status_code == 304
    assert r.content == b""
    r = requests.get(url(flask_server, "/file"), timeout=10,
                     headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.content == APPS_SOURCE[10:20]


def test_flask_head(flask_server):
    r = requests.head(url(flask_server, "/json"), timeout=10)
    assert r.status_code == 200
    assert r.content == b""
    assert int(r.headers["Content-Length"]) > 0


def test_flask_errors_and_404(flask_server):
    r = requests.get(url(flask_server, "/error"), timeout=10)
    assert r.status_code == 500
    r = requests.get(url(flask_server, "/missing"), timeout=10)
    assert r.status_code == 404
    r = requests.get(url(flask_server, "/unicode/caf%C3%A9"), timeout=10)
    assert r.json() == {"name": "café"}


def test_flask_keepalive_session(flask_server):
    with requests.Session() as session:
        for i in range(20):
            r = session.get(url(flask_server, f"/json?i={i}"), timeout=10)
            assert r.json()["args"] == {"i": str(i)}


def test_flask_curl(flask_server):
    out = subprocess.run(["curl", "-sS", "--fail", url(flask_server, "/stream?n=3")],
                         capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"part 0\npart 1\npart 2\n"


# ---- Django ----

@pytest.fixture(scope="module")
def django_server():
    yield from served("fw_django_app")


def test_django_hello(django_server):
    r = requests.get(url(django_server, "/hello/"), timeout=10)
    assert r.status_code == 200
    assert r.text == "Hello from Django"


def test_django_request_info(django_server):
    r = requests.get(url(django_server, "/info/?x=1&y=%C3%A9"), timeout=10,
                     headers={"X-Test": "yes"})
    assert r.status_code == 200
    assert r.json() == {"method": "GET", "path": "/info/",
                        "query": {"x": "1", "y": "é"},
                        "host": f"127.0.0.1:{django_server.port}",
                        "secure": False, "header": "yes"}


def test_django_append_slash(django_server):
    r = requests.get(url(django_server, "/hello"), timeout=10,
                     allow_redirects=False)
    assert r.status_code == 301
    assert r.headers["Location"] == "/hello/"


def test_django_post_form_csrf_exempt(django_server):
    r = requests.post(url(django_server, "/submit/"),
                      data={"a": "1", "b": "ü"}, timeout=10)
    assert r.status_code == 200
    assert r.json() == {"form": {"a": "1", "b": "ü"}}


def test_django_post_json(django_server):
    r = requests.post(url(django_server, "/submit/"), json={"k": [1, 2]}, timeout=10)
    assert r.json() == {"json": {"k": [1, 2]}}


def test_django_csrf_enforced(django_server):
    r = requests.post(url(django_server, "/protected/"), data={"a": "1"}, timeout=10)
    assert r.status_code == 403


def test_django_streaming_and_file(django_server):
    r = requests.get(url(django_server, "/stream/"), timeout=10)
    assert r.text == "".join(f"row {i}\n" for i in range(5))
    r = requests.get(url(django_server, "/file/"), timeout=10)
    assert r.status_code == 200
    assert r.content == APPS_SOURCE


def test_django_bad_host_is_400(django_server):
    r = requests.get(url(django_server, "/hello/"), timeout=10,
                     headers={"Host": "evil.example"})
    assert r.status_code == 400


# ---- Falcon ----

@pytest.fixture(scope="module")
def falcon_server():
    yield from served("fw_falcon_app:app")


def test_falcon_crud(falcon_server):
    r = requests.post(url(falcon_server, "/items"), json={"id": "a1", "v": 5},
                      timeout=10)
    assert r.status_code == 201
    assert r.json() == {"created": "a1"}
    r = requests.get(url(falcon_server, "/items/a1"), timeout=10)
    assert r.json() == {"id": "a1", "v": 5}
    r = requests.get(url(falcon_server, "/items"), timeout=10)
    assert r.json() == {"items": ["a1"]}
    r = requests.get(url(falcon_server, "/items/none"), timeout=10)
    assert r.status_code == 404


def test_falcon_raw_body(falcon_server):
    data = bytes(range(256)) * 400
    r = requests.put(url(falcon_server, "/raw"), data=data, timeout=10)
    assert r.status_code == 200
    assert r.content == data[::-1]


def test_falcon_method_not_allowed(falcon_server):
    r = requests.delete(url(falcon_server, "/items"), timeout=10)
    assert r.status_code == 405


# ---- Bottle ----

@pytest.fixture(scope="module")
def bottle_server():
    yield from served("fw_bottle_app:app")


def test_bottle_routes(bottle_server):
    r = requests.get(url(bottle_server, "/hello/world"), timeout=10)
    assert r.text == "Hello, world!"
    r = requests.get(url(bottle_server, "/json?q=search"), timeout=10)
    assert r.json() == {"framework": "bottle", "q": "search"}


def test_bottle_form(bottle_server):
    r = requests.post(url(bottle_server, "/form"), data={"x": "1", "y": "ß"},
                      timeout=10)
    assert r.json() == {"fields": {"x": "1", "y": "ß"}}


def test_bottle_static_and_stream(bottle_server):
    r = requests.get(url(bottle_server, "/static"), timeout=10)
    assert r.status_code == 200
    assert r.content == APPS_SOURCE
    r = requests.get(url(bottle_server, "/stream"), timeout=10)
    assert r.text == "chunk 0;chunk 1;chunk 2;chunk 3;"


# ---- wsgiref.validate ----

@pytest.fixture(scope="module")
def validated_server():
    yield from served("fw_validated_app:app", env={"PYTHONWARNINGS": "error"})


def problems(output: str) -> list[str]:
    """Log lines other than the start line and the app's own wsgi.errors text."""
    bad = []
    for line in output.splitlines():
        if "] fastwsgi " in line and " listening on " in line:
            continue
        if line.endswith(("[ERROR] validated app says hi", "[ERROR] two lines")):
            continue
        bad.append(line)
    return bad


VALIDATED = [
    ("GET", "/list", b"", 200, b"one,two,three"),
    ("GET", "/single", b"", 200, b"single"),
    ("GET", "/gen", b"", 200, b"generated"),
    ("GET", "/write", b"", 200, b"written,more,returned"),
    ("GET", "/file", b"", 200, APPS_SOURCE),
    ("GET", "/exc", b"", 500, b"error page"),
    ("GET", "/nocontent", b"", 204, b""),
    ("GET", "/errors", b"", 200, b"ok"),
    ("GET", "/nowhere?x=1", b"", 404, b"not found"),
    ("POST", "/lines", b"a\nb\nc", 200, b"a\n|b\n|c"),
    ("PUT", "/lines", b"", 200, b""),
    ("DELETE", "/list", b"", 200, b"one,two,three"),
    ("OPTIONS", "/list", b"", 200, b"one,two,three"),
]


@pytest.mark.parametrize("method,path,body,status,expected", VALIDATED)
def test_validator_paths(validated_server, method, path, body, status, expected):
    r = requests.request(method, url(validated_server, path), data=body or None,
                         timeout=10)
    assert r.status_code == status, r.content
    assert r.content == expected
    if path == "/exc":
        assert "X-Before" not in r.headers
    time.sleep(0.05)
    assert problems(validated_server.output()) == []


def test_validator_post_read_n_and_readline(validated_server):
    body = b"first line\nsecond line\nthe rest"
    r = requests.post(url(validated_server, "/post"), data=body, timeout=10)
    assert r.status_code == 200
    assert r.json() == ["first line\n", "seco", "nd line\nthe rest", ""]
    time.sleep(0.05)
    assert problems(validated_server.output()) == []


@pytest.mark.parametrize("path", ["/list", "/gen", "/write", "/file", "/single"])
def test_validator_head(validated_server, path):
    with validated_server.connect() as s:
        s.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        s.sendall(b"GET /list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = recv_all(s)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    # the HEAD response carries no body: the next response follows at once
    assert parse_responses(rest) == [(200, parse_responses(rest)[0][1],
                                      b"one,two,three")]
    time.sleep(0.05)
    assert problems(validated_server.output()) == []


def test_validator_pipelined_and_http10(validated_server):
    req = (b"GET /gen HTTP/1.1\r\nHost: x\r\n\r\n"
           b"POST /lines HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nx\ny\n"
           b"GET /write HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = parse_responses(raw(validated_server, req))
    assert [(o[0], o[2]) for o in out] == [(200, b"generated"), (200, b"x\n|y\n"),
                                           (200, b"written,more,returned")]
    data = raw(validated_server, b"GET /gen HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(b"\r\n\r\ngenerated")
    time.sleep(0.05)
    assert problems(validated_server.output()) == []


def test_validator_chunked_request(validated_server):
    def gen():
        yield b"l1\n"
        yield b"l2\n"
    r = requests.post(url(validated_server, "/lines"), data=gen(), timeout=10)
    assert r.content == b"l1\n|l2\n"
    time.sleep(0.05)
    assert problems(validated_server.output()) == []


def test_validator_no_garbage_collected_iterators(validated_server):
    # the validator complains on stderr about an iterable never closed
    for path in ("/list", "/gen", "/file", "/write"):
        requests.get(url(validated_server, path), timeout=10)
    time.sleep(0.1)
    out = validated_server.output()
    assert not re.search(r"garbage collected|Exception ignored|Warning|Traceback", out)


def test_validator_is_armed(start_server):
    # the checks above mean something only if a violation shows: an unknown
    # method makes the validator warn, and the warning is an error here
    s = start_server("fw_validated_app:app", env={"PYTHONWARNINGS": "error"})
    data = raw(s, b"PURGE /list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")
    deadline = time.monotonic() + 5
    while "WSGIWarning" not in s.output() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "WSGIWarning" in s.output()
    assert problems(s.output())
