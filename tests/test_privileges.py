"""--user, --group, --initgroups, --forbid-root: real processes, started as
root, binding a privileged port."""

from __future__ import annotations

import grp
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import fastwsgi_env, server_command
from test_config_sources import fastwsgi, one_error

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

APP = '''
import os
IMPORTED_AS = os.getuid()
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    groups = ",".join(str(g) for g in sorted(os.getgroups()))
    return [f"{os.getuid()} {os.getgid()} {groups} {IMPORTED_AS}".encode()]
'''


@pytest.fixture
def app_dir() -> Iterator[Path]:
    """A folder any user can read (pytest's own are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="fastwsgi-user-"))
    folder.chmod(0o755)
    (folder / "whoami.py").write_text(APP)
    (folder / "whoami.py").chmod(0o644)
    yield folder
    shutil.rmtree(folder)  # with the __pycache__ an import as root may leave


def privileged_port() -> int:
    # In random order: other processes of the suite pick ports here too.
    for port in random.sample(range(900, 1024), 124):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024")


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # effective
    raise AssertionError(pid)


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    return body.decode()


class Started:
    def __init__(self, folder: Path, *args: str) -> None:
        # A port found free may be taken by another test before the server
        # binds it: then another port.
        for _ in range(5):
            if self._start(folder, args):
                return
        raise AssertionError(self.output())

    def _start(self, folder: Path, args: tuple[str, ...]) -> bool:
        self.port = privileged_port()
        self.out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([*server_command(), "-b", f"127.0.0.1:{self.port}",
                                      *args, "whoami:app"], cwd=folder, env=fastwsgi_env(),
                                     stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.first = ask(self.port)
                if self.proc.poll() is None:  # (not another test's server)
                    return True
            except OSError:
                pass
            if self.proc.poll() is not None and "Address already in use" in self.output():
                return False
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(self.output())
            time.sleep(0.05)

    def output(self) -> str:
        self.out.seek(0)
        return self.out.read().decode(errors="replace")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0


@root_only
def test_the_app_runs_as_the_user_and_the_master_keeps_root(app_dir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    srv = Started(app_dir, "--user", "nobody")
    try:
        uid, gid, groups, imported_as = srv.first.split()
        assert int(uid) == nobody.pw_uid and int(imported_as) == nobody.pw_uid
        assert int(gid) == nobody.pw_gid
        assert groups == str(nobody.pw_gid), "no supplementary groups of root's kept"
        assert srv.port < 1024
        assert uid_of(srv.proc.pid) == 0
        assert [uid_of(pid) for pid in children(srv.proc.pid)] == [nobody.pw_uid]
    finally:
        srv.stop()


@root_only
def test_group_and_initgroups(app_dir: Path) -> None:
    group = grp.getgrnam("nogroup")
    srv = Started(app_dir, "--user", "nobody", "--group", "nogroup", "--initgroups")
    try:
        uid, gid, groups, _ = srv.first.split()
        assert int(gid) == group.gr_gid
        wanted = sorted(os.getgrouplist("nobody", group.gr_gid))
        assert groups == ",".join(str(g) for g in wanted)
    finally:
        srv.stop()


@root_only
def test_preload_switches_the_master_before_the_app_is_imported(app_dir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    srv = Started(app_dir, "--user", "nobody", "--preload", "--workers", "2")
    try:
        assert int(srv.first.split()[3]) == nobody.pw_uid
        assert uid_of(srv.proc.pid) == nobody.pw_uid
    finally:
        srv.stop()


@root_only
def test_a_unix_socket_belongs_to_the_user(app_dir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    path = app_dir / "app.sock"
    proc = subprocess.Popen([*server_command(), "-b", f"unix:{path}", "--user", "nobody",
                             "whoami:app"], cwd=app_dir, env=fastwsgi_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not path.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        assert path.stat().st_uid == nobody.pw_uid
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not path.exists(), "the master (root) removed it"


@root_only
def test_forbid_root_refuses_an_app_that_would_run_as_root(app_dir: Path) -> None:
    line = one_error(fastwsgi("--forbid-root", "--check-config", "whoami:app", cwd=app_dir))
    assert line == "--forbid-root: the app would run as root; give --user"
    ok = fastwsgi("--forbid-root", "--user", "nobody", "--check-config", "whoami:app",
                  cwd=app_dir)
    assert ok.returncode == 0, ok.stderr


def test_an_unknown_user_or_group_is_one_line() -> None:
    line = one_error(fastwsgi("--user", "no-such-user-here", "apps:hello"))
    assert line == "--user: 'no-such-user-here': no such user on this machine"
    line = one_error(fastwsgi("-g", "no-such-group-here", "apps:hello"))
    assert line == "--group: 'no-such-group-here': no such group on this machine"


@root_only
@pytest.mark.parametrize("setting", ["access_log", "error_log"])
def test_a_link_planted_as_a_log_is_refused_not_chowned(app_dir: Path, setting: str) -> None:
    # The app's user can write to its log folder; a link there to a file of
    # root's must not make that file the user's (gunicorn chowns through it).
    secret = app_dir / "secret"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    logs = app_dir / "logs"
    logs.mkdir()
    shutil.chown(logs, "nobody")
    link = logs / f"{setting}.log"
    link.symlink_to(secret)
    line = one_error(fastwsgi("--user", "nobody", "--workers", "2", "--port", "0",
                              "--" + setting.replace("_", "-"), str(link), "whoami:app",
                              cwd=app_dir))
    assert line == (f"{setting}: {link} is a symbolic link; with --user "
                    "give the file's own path")
    assert secret.stat().st_uid == 0 and secret.read_text() == "root's\n"


@root_only
def test_the_access_log_is_the_users_and_the_pid_file_replaces_a_link(app_dir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    secret = app_dir / "secret"
    secret.write_text("root's\n")
    (app_dir / "app.pid").symlink_to(secret)
    log = app_dir / "access.log"
    srv = Started(app_dir, "--user", "nobody", "--workers", "2", "--access-log", str(log),
                  "--pid", str(app_dir / "app.pid"))
    try:
        assert log.stat().st_uid == nobody.pw_uid
        # The link was replaced by the file, never written through.
        pid_file = app_dir / "app.pid"
        assert not pid_file.is_symlink()
        assert pid_file.read_text() == f"{srv.proc.pid}\n"
        assert secret.read_text() == "root's\n"
    finally:
        srv.stop()


@root_only
def test_workers_as_the_user_reopen_both_logs_after_a_rotation(app_dir: Path) -> None:
    """SIGUSR1 after logrotate moved the files away: the master (root)
    creates new ones that the workers (nobody) can open, and each worker
    writes its lines to the new files, the error log and the access log."""
    nobody = pwd.getpwnam("nobody")
    logs = app_dir / "logs"
    logs.mkdir()
    shutil.chown(logs, "nobody")
    error, access = logs / "error.log", logs / "access.log"
    srv = Started(app_dir, "--user", "nobody", "--workers", "2", "--log-level", "debug",
                  "--error-log", str(error), "--access-log", str(access),
                  "--access-log-format", "%(p)s %(s)s")
    try:
        assert error.stat().st_uid == nobody.pw_uid
        workers = {str(pid) for pid in children(srv.proc.pid)}
        assert len(workers) == 2
        error.rename(logs / "error.log.1")
        access.rename(logs / "access.log.1")
        os.kill(srv.proc.pid, signal.SIGUSR1)

        def seen(path: Path) -> set[str]:
            """The workers that wrote a line: "... [PID] [DEBUG] ..." in the
            error log, "PID 200" in the access log."""
            text = path.read_text() if path.exists() else ""
            return {pid for pid in workers
                    if f"] [{pid}] [" in text or f"\n{pid} " in "\n" + text}

        # Until each worker has written to each new file (a worker reopens
        # when its signal comes, after the master's own reopen).
        deadline = time.monotonic() + 20
        while (seen(error) != workers or seen(access) != workers) \
                and time.monotonic() < deadline:
            ask(srv.port)
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as c:
                c.sendall(b"GET /a b HTTP/1.1\r\n\r\n")   # refused: a debug line
                while c.recv(65536):
                    pass
        text = error.read_text() + (logs / "error.log.1").read_text()
        assert "cannot reopen" not in text, text
        assert seen(error) == workers and seen(access) == workers, text
        assert error.stat().st_uid == nobody.pw_uid and access.stat().st_uid == nobody.pw_uid
    finally:
        srv.stop()
