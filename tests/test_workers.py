"""The master and its workers, with real processes, real signals and real
clients (wrk, raw sockets): replacement, reload under load, graceful stop,
max-requests, the loop timeout, a broken app, the spread of the load."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import TESTS, ServerProcess, fastwsgi_env, server_command

EXITED = re.compile(r"worker (\d+) \(pid (\d+)\) exited after (\d+) requests")


def children(pid: int) -> set[int]:
    """The master's child processes, read from /proc."""
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        found |= {int(p) for p in text.split()}
    return found


def zombies(pid: int) -> list[int]:
    dead = []
    for child in children(pid):
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            dead.append(child)
    return dead


def wait_for(check, timeout: float, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    return check()


def get(server: ServerProcess, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request on its own connection: (status, body)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def wrk(server: ServerProcess, seconds: float, connections: int = 50,
        path: str = "/hello") -> subprocess.Popen:
    assert shutil.which("wrk"), "wrk is needed (scripts/deps installs it)"
    return subprocess.Popen(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}", "--latency",
         f"http://127.0.0.1:{server.port}{path}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wrk_result(proc: subprocess.Popen) -> tuple[int, str]:
    """(requests, output); asserts there was no error of any kind."""
    out, _ = proc.communicate(timeout=120)
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out
    m = re.search(r"(\d+) requests in", out)
    assert m, out
    return int(m.group(1)), out


@pytest.fixture
def master():
    started: list[ServerProcess] = []

    def start(*args: str, app: str = "apps:router", **kw) -> ServerProcess:
        s = ServerProcess(app, *args, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()
        s.cleanup()


def ready_workers(server: ServerProcess, count: int) -> set[int]:
    """Wait until `count` workers run and answer."""
    pids = wait_for(lambda: children(server.proc.pid) if len(
        children(server.proc.pid)) == count else None, 10)
    assert pids and len(pids) == count, server.output()
    get(server, "/hello")
    return pids


def test_workers_share_the_load_and_stop_cleanly(master):
    s = master("--workers", "2")
    pids = ready_workers(s, 2)
    answered: set[int] = set()
    lock = threading.Lock()

    def client() -> None:
        for _ in range(40):
            status, body = get(s, "/pid")
            assert status == 200
            with lock:
                answered.add(int(body))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answered <= pids
    assert s.proc.pid not in answered  # the master never serves
    s.signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0, s.output()
    exits = EXITED.findall(s.output())
    assert {int(pid) for _, pid, _ in exits} == pids
    assert sum(int(n) for _, _, n in exits) >= 320


def test_a_killed_worker_is_replaced_within_a_second(master):
    s = master("--workers", "2")
    before = ready_workers(s, 2)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    after = wait_for(lambda: (lambda c: c if len(c) == 2 and victim not in c else None)(
        children(s.proc.pid)), 1.0)
    assert after, f"not replaced within 1 s: {children(s.proc.pid)}\n{s.output()}"
    assert time.monotonic() - t0 < 1.0
    for _ in range(20):
        assert get(s, "/hello")[0] == 200
    assert not zombies(s.proc.pid)
    assert "killed by SIGKILL" in s.output()


def test_three_reloads_under_load_fail_no_request(master):
    s = master("--workers", "2")
    first = ready_workers(s, 2)
    fds = s.pid_fds()
    load = wrk(s, 10, connections=100)
    for _ in range(3):
        time.sleep(2.5)
        s.signal(signal.SIGHUP)
    requests, out = wrk_result(load)
    assert requests > 1000, out
    now = wait_for(lambda: (lambda c: c if len(c) == 2 and not c & first else None)(
        children(s.proc.pid)), 10)
    assert now, s.output()
    assert s.output().count("SIGHUP: reloading") == 3
    assert len(EXITED.findall(s.output())) == 6  # every old worker retired
    assert s.pid_fds() == fds  # nothing leaked by the master
    assert not zombies(s.proc.pid)


def test_sigterm_under_load_lets_every_request_in_flight_finish(master):
    s = master("--workers", "2", "--threads", "8", "--graceful-timeout", "5")
    ready_workers(s, 2)
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def slow() -> None:
        r = get(s, "/sleep?s=1")
        with lock:
            results.append(r)

    threads = [threading.Thread(target=slow) for _ in range(10)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    for t in threads:
        t.join(10)
    assert s.proc.wait(10) == 0, s.output()
    assert time.monotonic() - t0 < 5
    assert results == [(200, b"slept")] * 10, s.output()


def test_sigterm_serves_what_the_kernel_queued_before_it(master):
    """Inline, a worker runs one call at a time: the other requests wait in
    the socket's queue.  They were sent before the signal, so they are
    served; connections made after it are refused."""
    s = master("--workers", "1", "--master", "--graceful-timeout", "10", "--threads", "0")
    ready_workers(s, 1)
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def slow() -> None:
        r = get(s, "/sleep?s=0.3")
        with lock:
            results.append(r)

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.15)
    s.signal(signal.SIGTERM)
    time.sleep(0.1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((s.host, s.port), timeout=2).close()
    for t in threads:
        t.join(10)
    assert s.proc.wait(10) == 0, s.output()
    assert results == [(200, b"slept")] * 4, s.output()


def test_graceful_timeout_kills_a_worker_stuck_in_its_app(master):
    # Inline: the worker's own loop is inside the call (threaded, the loop
    # would end at the deadline by itself).
    s = master("--workers", "1", "--master", "--graceful-timeout", "1", "--threads", "0")
    ready_workers(s, 1)
    hung = threading.Thread(target=lambda: _ignore(lambda: get(s, "/sleep?s=30", 15)))
    hung.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0, s.output()
    assert time.monotonic() - t0 < 4, s.output()
    assert "still busy when the graceful timeout ran out (in GET /sleep)" in s.output()
    hung.join(15)


def _ignore(call) -> None:
    """For a client whose connection is cut: no response is the point."""
    try:
        call()
    except (OSError, IndexError):
        pass


def test_max_requests_recycles_workers_under_load(master):
    s = master("--workers", "2", "--max-requests", "1000", "--max-requests-jitter", "300")
    first = ready_workers(s, 2)
    requests, out = wrk_result(wrk(s, 4, connections=20))
    assert requests > 4000, out
    text = s.output()
    recycled = EXITED.findall(text)
    assert len(recycled) >= 2, text
    for _, _, served in recycled:
        # The limit and its jitter, then at most one more request on each
        # of the 20 connections (answered with Connection: close) and the
        # rest of the loop's turn.
        assert 1000 <= int(served) <= 1300 + 20 + 256, text
    assert "(max_requests)" in text
    assert not children(s.proc.pid) & first


def test_timeout_kills_a_worker_whose_loop_is_stuck_and_names_the_request(master):
    s = master("--workers", "1", "--master", "--timeout", "2", "--threads", "0")
    (worker,) = ready_workers(s, 1)
    t0 = time.monotonic()
    with pytest.raises((ConnectionError, IndexError, ValueError)):
        get(s, "/sleep?s=10", timeout=8)
    assert time.monotonic() - t0 < 5
    text = s.output()
    assert re.search(rf"worker 1 \(pid {worker}\): its event loop was stuck for 2\.\d s "
                     r"in an app call \(GET /sleep, started 2\.\d s ago\)", text), text
    assert get(s, "/hello")[0] == 200  # the replacement serves
    assert worker not in children(s.proc.pid)


def test_an_app_that_fails_at_import_ends_the_master_with_status_1(tmp_path):
    (tmp_path / "broken.py").write_text('raise RuntimeError("no database")\n')
    t0 = time.monotonic()
    proc = subprocess.run([*server_command(), "--workers", "4", "--port", "0", "broken:app"],
                          cwd=tmp_path, env=fastwsgi_env(), capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 1, proc.stderr
    assert time.monotonic() - t0 < 10
    assert "RuntimeError: no database" in proc.stderr
    assert "could not load the app broken:app" in proc.stderr
    # No fork loop: at most one attempt per worker.
    assert proc.stderr.count("importing 'broken' failed") <= 4


def test_c1000_spreads_over_both_workers(master):
    s = master("--workers", "2")
    ready_workers(s, 2)
    requests, out = wrk_result(wrk(s, 3, connections=1000))
    s.signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0
    served = [int(n) for _, _, n in EXITED.findall(s.output())]
    assert len(served) == 2
    share = min(served) / sum(served)
    # 40-60 % is what a quiet machine shows (README); the bound here only
    # catches a spread that is broken, on a shared CI machine.
    assert share > 0.25, (served, out)


def test_workers_compose_with_threads(master):
    s = master("--workers", "2", "--threads", "8")
    ready_workers(s, 2)
    t0 = time.monotonic()
    results: list[int] = []
    lock = threading.Lock()

    def slow() -> None:
        status, _ = get(s, "/sleep?s=0.5")
        with lock:
            results.append(status)

    threads = [threading.Thread(target=slow) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [200] * 16
    # 16 calls of 0.5 s on 2 x 8 threads: one round, not eight.
    assert time.monotonic() - t0 < 2.0


def test_process_titles_name_the_master_and_each_worker(master):
    pytest.importorskip("setproctitle", reason="the optional titles extra (CPython only)")
    s = master("--workers", "2")
    pids = ready_workers(s, 2)

    def title(pid: int) -> str:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()

    want = ["fastwsgi: worker 1 [apps:router]", "fastwsgi: worker 2 [apps:router]"]
    assert title(s.proc.pid) == "fastwsgi: master [apps:router]"
    # A worker sets its title as it starts; one answered already, the other
    # may still be starting on a busy machine: wait for the state itself.
    titles = wait_for(lambda: sorted(title(p) for p in pids) == want, 10)
    assert titles, sorted(title(p) for p in pids)


def test_a_retiring_worker_answers_what_it_takes_at_its_close(master):
    """A worker at its max_requests takes what the kernel queued for it
    before it closes its listener, and answers it: one connection after
    the other (each lands on the retiring worker or its replacement),
    every request is answered in time."""
    s = master("--workers", "1", "--max-requests", "7", "--threads", "0")
    ready_workers(s, 1)
    for i in range(60):
        status, _ = get(s, "/pid", timeout=5)
        assert status == 200, i
    assert len(EXITED.findall(s.output())) >= 7, s.output()


def test_a_stop_right_after_the_start_reaches_every_worker(tmp_path):
    """SIGTERM as soon as the socket exists: the master, whose handlers are
    in place before it binds, stops cleanly, and passes it on to workers
    that may not have put their own handlers in place yet (they inherit the
    master's); blocked across the fork, it is not lost, and the master does
    not wait out the graceful timeout."""
    for attempt in range(10):
        path = tmp_path / f"s{attempt}.sock"
        proc = subprocess.Popen([*server_command(), "--workers", "2", "-b", f"unix:{path}",
                                  "--graceful-timeout", "20", "apps:hello"], cwd=TESTS,
                                 env=fastwsgi_env(), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not path.exists():
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.002)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0, attempt
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
