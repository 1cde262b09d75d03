"""How request header fields reach the environ: underscores, repeats,
case and the CGI names."""

from __future__ import annotations

import json

import pytest
from conftest import read_response


def echo(server, fields: bytes, path: bytes = b"/echo",
         version: bytes = b"HTTP/1.1") -> dict:
    host = b"Host: t\r\n" if version == b"HTTP/1.1" and b"Host:" not in fields else b""
    with server.connect() as s:
        s.sendall(b"GET %s %s\r\n%s%s\r\n" % (path, version, host, fields))
        status, _, body, _ = read_response(s)
    assert status == 200
    return json.loads(body)


def http_keys(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith("HTTP_")}


# ---------------------------------------------------------------- underscores


def test_underscore_field_is_dropped(server):
    env = echo(server, b"X-Auth_User: admin\r\n")
    assert "HTTP_X_AUTH_USER" not in env


def test_underscore_field_cannot_pose_next_to_the_real_one(server):
    env = echo(server, b"X-Auth_User: evil\r\nX-Auth-User: good\r\n")
    assert env["HTTP_X_AUTH_USER"] == "good"
    env = echo(server, b"X-Auth-User: good\r\nX-Auth_User: evil\r\n")
    assert env["HTTP_X_AUTH_USER"] == "good"


@pytest.mark.parametrize("name", [b"Content_Length", b"Content_Type",
                                  b"Transfer_Encoding", b"Host_", b"_"])
def test_underscore_lookalikes_of_special_fields_are_dropped(server, name):
    env = echo(server, name + b": 99\r\n")
    assert "99" not in env.values()
    assert env.get("CONTENT_LENGTH", "") == ""
    assert env.get("CONTENT_TYPE", "") == ""


def test_underscore_fields_kept_when_allowed(start_server):
    srv = start_server("apps:router", "--allow-underscore-headers")
    env = echo(srv, b"X_Custom: v\r\n")
    assert env["HTTP_X_CUSTOM"] == "v"
    env = echo(srv, b"X-Auth_User: one\r\nX-Auth-User: two\r\n")
    assert env["HTTP_X_AUTH_USER"] == "one, two"


# ---------------------------------------------------------------- repeats


def test_repeated_fields_are_joined(server):
    env = echo(server, b"X-Multi: a\r\nX-Multi: b\r\nX-Multi: c\r\n")
    assert env["HTTP_X_MULTI"] == "a, b, c"


def test_repeated_fields_apart_and_in_other_case(server):
    env = echo(server, b"X-Multi: a\r\nX-Other: 1\r\nx-multi: b\r\n"
                       b"Accept: text/html\r\nX-MULTI: c\r\nAccept: */*\r\n")
    assert env["HTTP_X_MULTI"] == "a, b, c"
    assert env["HTTP_ACCEPT"] == "text/html, */*"
    assert env["HTTP_X_OTHER"] == "1"


def test_repeated_fields_keep_inner_values(server):
    env = echo(server, b"X-L: a, b\r\nX-L: c\r\nX-E:\r\nX-E: z\r\n")
    assert env["HTTP_X_L"] == "a, b, c"
    assert env["HTTP_X_E"] == ", z"


def test_many_distinct_fields_are_not_joined(server):
    # enough names that any shortcut in finding repeats meets collisions
    fields = b"".join(b"X-Field-%d: value-%d\r\n" % (i, i) for i in range(90))
    env = echo(server, fields)
    for i in range(90):
        assert env[f"HTTP_X_FIELD_{i}"] == f"value-{i}"


def test_fields_differing_only_in_dash_and_case(server):
    env = echo(server, b"X-A-B: 1\r\nx-a-b: 2\r\n")
    assert env["HTTP_X_A_B"] == "1, 2"


# ---------------------------------------------------------------- the rest


def test_cgi_names_and_values(server):
    env = echo(server, b"User-Agent: probe/1\r\nX-Spaced:   v  w  \r\n"
                       b"X-Latin: caf\xe9\r\nContent-Type: text/x\r\n",
               path=b"/echo?q=%20x&y")
    assert env["HTTP_HOST"] == "t"
    assert env["HTTP_USER_AGENT"] == "probe/1"
    assert env["HTTP_X_SPACED"] == "v  w"
    assert env["HTTP_X_LATIN"] == "caf\xe9"
    assert env["CONTENT_TYPE"] == "text/x"
    assert "HTTP_CONTENT_TYPE" not in env
    assert env["QUERY_STRING"] == "q=%20x&y"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/echo"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_path_info_is_decoded_and_raw_uri_kept(server):
    env = echo(server, b"", path=b"/%65cho?a=%41")
    assert env["PATH_INFO"] == "/echo"
    assert env["REQUEST_URI"] == "/%65cho?a=%41"
    assert env["QUERY_STRING"] == "a=%41"


def test_http10_environ(server):
    env = echo(server, b"Connection: keep-alive\r\n", version=b"HTTP/1.0")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert "HTTP_HOST" not in env
    assert http_keys(env) == {"HTTP_CONNECTION": "keep-alive"}
