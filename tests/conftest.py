"""Fixtures: real server processes and raw-socket helpers.

Servers run as `python -m fastwsgi` subprocesses on port 0; the port is read
from the start line.  Tests import the installed fastwsgi, never the source
tree: this folder is the only one put on the path.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# Under scripts/sanitize the sanitizer runtime is preloaded into this
# process; only fastwsgi server processes get it from here on, not the
# clients (curl) the tests run (see pytest_configure).
SANITIZER_PRELOAD = os.environ.get("LD_PRELOAD", "")


def pytest_configure(config: pytest.Config) -> None:
    # (Here, not in pyproject.toml: the suite also runs from an unpacked
    # sdist's tests/ alone.)
    config.addinivalue_line("markers", "quiet: measures how the server shares time; "
                            "scripts/run-suite runs these alone")
    # pytest-xdist's controller starts the processes that run the tests,
    # which import the instrumented module as this one did: it keeps the
    # preload for them.  A process that runs tests drops it.
    if not getattr(config.option, "numprocesses", None) \
            or os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.pop("LD_PRELOAD", None)


def fastwsgi_env(base: dict | None = None) -> dict:
    """An environment for a process that imports fastwsgi: under
    scripts/sanitize it needs the sanitizer runtime preloaded."""
    env = dict(os.environ if base is None else base)
    if SANITIZER_PRELOAD:
        env["LD_PRELOAD"] = SANITIZER_PRELOAD
    return env
# FASTWSGI_TEST_TLS=1 serves every server of the suite over HTTPS (with
# a certificate made for the run) and connect() speaks TLS: the HTTP
# contract, proven again through the TLS read and write paths.
TEST_TLS = os.environ.get("FASTWSGI_TEST_TLS", "") not in ("", "0")
_tls_files: tuple[str, str] | None = None


def tls_files() -> tuple[str, str]:
    """The run's certificate and key for TEST_TLS (made once)."""
    global _tls_files
    if _tls_files is None:
        d = Path(tempfile.mkdtemp(prefix="fastwsgi-tls-"))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", "key.pem",
                        "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost"],
                       cwd=d, check=True, capture_output=True)
        _tls_files = (str(d / "cert.pem"), str(d / "key.pem"))
    return _tls_files


def tls_wrap(sock: socket.socket) -> socket.socket:
    """A client session over `sock` that trusts any certificate (the
    suite's TLS mode tests HTTP over TLS, not certificate checks)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(sock, server_hostname="localhost")


TEST_THREADS = os.environ.get("FASTWSGI_TEST_THREADS", "")
if TEST_THREADS == "0":
    TEST_THREADS = ""
START_LINE = re.compile(r"fastwsgi \S+ listening on (\S+?)(?:,| \(pid (\d+)[,)])")


def server_command(python: str = sys.executable) -> list[str]:
    """The installed console script.  `python -m fastwsgi` would put the
    working directory first on the path, and from the repository root that
    is the source tree, which has no compiled core."""
    script = Path(python).parent / "fastwsgi"
    if script.exists():
        return [str(script)]
    return [python, "-m", "fastwsgi"]


class ServerProcess:
    """One fastwsgi process serving an app from tests/apps.py (or elsewhere)."""

    def __init__(self, app: str, *args: str, env: dict | None = None,
                 cwd: Path = TESTS, python: str = sys.executable,
                 tracer: list[str] | None = None):
        self.log = tempfile.NamedTemporaryFile(prefix="fastwsgi-log-", delete=False)
        full_env = dict(os.environ)
        if SANITIZER_PRELOAD and tracer:
            # The tracer itself is not instrumented: only the server gets it.
            tracer = [*tracer, "-E", f"LD_PRELOAD={SANITIZER_PRELOAD}"]
        elif SANITIZER_PRELOAD:
            full_env["LD_PRELOAD"] = SANITIZER_PRELOAD
        full_env.update(env or {})
        argv = [*(tracer or []), *server_command(python), *args]
        # FASTWSGI_TEST_THREADS=N runs every server of the suite in
        # threaded mode: the whole contract, proven on app threads too.
        if TEST_THREADS and not any(a.startswith("--threads") for a in args):
            argv += ["--threads", TEST_THREADS]
        if not any(a.startswith(("--port", "--bind", "-b", "-p")) for a in args):
            argv += ["--port", "0"]
        self.tls = TEST_TLS and "--certfile" not in args
        if self.tls:
            cert, key = tls_files()
            argv += ["--certfile", cert, "--keyfile", key]
        argv.append(app)
        self.proc = subprocess.Popen(argv, cwd=cwd, env=full_env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.url = self._wait_ready()
        self.host = "127.0.0.1"
        self.port = int(self.url.rsplit(":", 1)[1]) if self.url.startswith("http") else 0

    def _wait_ready(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            m = START_LINE.search(text)
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{text}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"server did not start:\n{self.output()}")

    def output(self) -> str:
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_output(self, text: str, timeout: float = 10.0) -> str:
        """The output once it holds `text`, or as it is after `timeout`:
        lines written by another thread of the server (a watcher, a log
        handler) may land after the client already has its answer."""
        deadline = time.monotonic() + timeout
        out = self.output()
        while text not in out and time.monotonic() < deadline:
            time.sleep(0.05)
            out = self.output()
        return out

    def connect(self, timeout: float = 5.0) -> socket.socket:
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        return tls_wrap(s) if self.tls else s

    def wrap(self, sock: socket.socket) -> socket.socket:
        """A socket the test connected itself, in the suite's TLS mode
        wrapped in a client session (after its options were set)."""
        return tls_wrap(sock) if self.tls else sock

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def pid_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cleanup(self) -> None:
        self.kill()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


@pytest.fixture
def start_server():
    """Start servers; at teardown each must still be alive (no crash)."""
    servers: list[ServerProcess] = []

    def start(app: str = "apps:router", *args: str, **kw) -> ServerProcess:
        s = ServerProcess(app, *args, **kw)
        servers.append(s)
        return s

    yield start
    crashed = [s for s in servers if s.proc.poll() is not None and
               s.proc.returncode not in (0, 2)]
    for s in servers:
        s.stop()
    try:
        assert not crashed, "server died: " + "\n".join(s.output() for s in crashed)
    finally:
        for s in servers:
            s.cleanup()


@pytest.fixture(scope="module")
def server():
    """A shared router server for a test module."""
    s = ServerProcess("apps:router")
    yield s
    alive = s.alive()
    out = s.output()
    s.stop()
    s.cleanup()
    assert alive, "server died during the module:\n" + out


def recv_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the peer closes (or the timeout passes)."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except socket.timeout:
        pass
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def raw(server: ServerProcess, data: bytes, timeout: float = 5.0,
        shut: bool = False) -> bytes:
    """Send bytes on a fresh connection; return all that comes back until
    the server closes."""
    with server.connect(timeout) as s:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        return recv_all(s, timeout)


def read_response(sock: socket.socket, timeout: float = 5.0, head: bool = False,
                  bounded: bool = False):
    """Read exactly one response from a keep-alive connection.
    Returns (status, lower-cased headers, body, bytes after it); a response
    cut short (a chunked one too) raises ConnectionError.

    `timeout` is for each recv, and a close-delimited body ends at the
    close or once nothing came for that long.  With `bounded` (read_one)
    it bounds the whole read instead, and a close-delimited body that is
    not closed in time raises socket.timeout."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    sock.settimeout(timeout)

    def more() -> None:
        if bounded:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no complete response in time")
            sock.settimeout(left)
        data = sock.recv(1 << 20 if bounded else 65536)
        if not data:
            raise ConnectionError(f"closed inside a response: {bytes(buf[:200])!r}")
        buf.extend(data)

    while b"\r\n\r\n" not in buf:
        more()
    end = buf.index(b"\r\n\r\n")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[:end + 4]
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        key = k.strip().lower()
        headers[key] = headers[key] + ", " + v.strip() if key in headers else v.strip()
    if head or status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", bytes(buf)
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            more()
        return status, headers, bytes(buf[:n]), bytes(buf[n:])
    if headers.get("transfer-encoding") == "chunked":
        body = bytearray()
        while True:
            while b"\r\n" not in buf:
                more()
            line_end = buf.index(b"\r\n")
            size = int(bytes(buf[:line_end]).split(b";")[0], 16)
            del buf[:line_end + 2]
            while len(buf) < size + 2:
                more()
            body += buf[:size]
            del buf[:size + 2]
            if size == 0:
                # no trailers are sent by fastwsgi
                return status, headers, bytes(body), bytes(buf)
    # close-delimited
    try:
        while True:
            more()
    except ConnectionError:
        pass
    except socket.timeout:
        if bounded:
            raise
    return status, headers, bytes(buf), b""


def parse_responses(data: bytes) -> list[tuple[int, dict, bytes]]:
    """Split a byte stream of content-length/chunked responses."""
    out = []
    while data:
        head_bytes, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            n = int(headers["content-length"])
            out.append((status, headers, rest[:n]))
            data = rest[n:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line, 16)
                if size == 0:
                    rest = rest[2:]
                    break
                body += rest[:size]
                rest = rest[size + 2:]
            out.append((status, headers, body))
            data = rest
        else:
            out.append((status, headers, rest))
            data = b""
    return out


def read_one(sock: socket.socket, timeout: float = 5.0, head: bool = False):
    """read_response with the whole read bounded by the timeout."""
    return read_response(sock, timeout, head, bounded=True)


def hello_time(srv, timeout: float = 3.0) -> float:
    start = time.monotonic()
    with srv.connect(timeout=timeout) as s:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status, _, body, _ = read_one(s, timeout=timeout)
    assert (status, body) == (200, b"Hello, World!")
    return time.monotonic() - start


def read_until_close(sock: socket.socket, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Read until the peer closes; also say whether it did within the timeout."""
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return b"".join(chunks), True
        if not data:
            return b"".join(chunks), True
        chunks.append(data)
    return b"".join(chunks), False

def exchange(server, data: bytes, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Send bytes on a fresh connection: (all that came back, closed?)."""
    with server.connect() as s:
        s.sendall(data)
        return read_until_close(s, timeout)
