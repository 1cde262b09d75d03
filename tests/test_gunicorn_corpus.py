"""Config files of the kinds real projects ship with gunicorn (a container
default, structured logging, a TLS balancer in front, development reloads,
a VM deployment, monitoring hooks), with the idioms people use: helper
variables, imports, env lookups with defaults, constants, functions that
are no hook, None values.  Each must be accepted by real gunicorn and by
fastwsgi alike; what each setting does is tested where it is implemented
(test_logging, test_proxies, test_workers_ops, test_hooks)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TESTS, fastwsgi_env, server_command

CORPUS = sorted((TESTS / "gunicorn_configs").glob("*.py"))


def gunicorn_command() -> list[str]:
    script = Path(sys.executable).parent / "gunicorn"
    if script.exists():
        return [str(script)]
    found = shutil.which("gunicorn")
    assert found, "gunicorn is a test dependency"
    return [found]


def gunicorn_version() -> tuple[int, ...]:
    out = subprocess.run([*gunicorn_command(), "--version"], capture_output=True, text=True,
                         timeout=60).stdout
    return tuple(int(part) for part in out.split()[-1].strip(")").split(".")[:2])


@pytest.mark.parametrize("conf", CORPUS, ids=lambda p: p.stem)
def test_gunicorn_and_fastwsgi_both_accept_it(conf: Path) -> None:
    # The files use what gunicorn 26.1 and later read (networks in
    # forwarded_allow_ips, globs in reload_extra_files); the older gunicorn
    # that installs on PyPy 3.9 refuses those, and fastwsgi alone is checked.
    if gunicorn_version() >= (26, 1):
        gun = subprocess.run([*gunicorn_command(), "--check-config", "-c", str(conf),
                              "apps:hello"], cwd=TESTS, env=fastwsgi_env(),
                             capture_output=True, text=True, timeout=60)
        assert gun.returncode == 0, gun.stdout + gun.stderr
    ours = subprocess.run([*server_command(), "-c", str(conf), "--check-config", "apps:hello"],
                          cwd=TESTS, env=fastwsgi_env(), capture_output=True, text=True,
                          timeout=60)
    assert ours.returncode == 0, ours.stderr
    # Helper names are the file's own: nothing is said of them.
    assert "is not a setting" not in ours.stderr, ours.stderr


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) >= 7, CORPUS
