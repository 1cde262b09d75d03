"""Every gunicorn setting has an entry saying what it is here, and the
command line and config files do what the entry says; the migration page
is generated from the same entries."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TESTS
from test_config_sources import fastwsgi, one_error, printed

from fastwsgi.cli import OWN, build_parser
from fastwsgi.config import BY_NAME
from fastwsgi.gunicorn_names import BY_NAME as DECLARED
from fastwsgi.gunicorn_names import GUNICORN, migration_page
from fastwsgi.hooks import HOOKS

gunicorn = pytest.importorskip("gunicorn", reason="gunicorn is a test dependency")
gunicorn_config = pytest.importorskip("gunicorn.config")

ROOT = TESTS.parent


PINNED = "27.0.1"  # pyproject.toml's test dependency where it installs
REFUSED_HOOKS = {"pre_exec", "ssl_context", "on_dirty_starting", "dirty_post_fork",
                 "dirty_worker_init", "dirty_worker_exit"}


def test_every_gunicorn_setting_is_declared() -> None:
    """Against gunicorn's own list: a setting a new gunicorn adds fails
    here until it is declared; with the version the page lists, each
    declared one exists there with the same command-line spellings (an
    older gunicorn, the one PyPy 3.9 gets, has fewer)."""
    theirs = {s.name: tuple(s.cli or ()) for s in gunicorn_config.KNOWN_SETTINGS}
    assert sorted(set(theirs) - set(DECLARED)) == []
    if gunicorn.__version__ != PINNED:
        return
    assert sorted(set(DECLARED) - set(theirs)) == []
    for entry in GUNICORN:
        assert entry.options == theirs[entry.name], entry.name


def test_each_entry_names_a_real_setting_or_a_reason() -> None:
    for entry in GUNICORN:
        assert sum(bool(x) for x in (entry.setting, entry.covered, entry.refused)) == 1, entry
        if entry.setting:
            assert entry.setting in BY_NAME, entry


def test_gunicorn_hooks_are_ours_or_refused() -> None:
    ours = {h.name for h in HOOKS}
    for s in gunicorn_config.KNOWN_SETTINGS:
        if s.section.endswith("Hooks"):
            entry = DECLARED[s.name]
            if s.name in ours:
                assert entry.setting == s.name
            else:
                assert entry.refused and s.name in REFUSED_HOOKS, s.name


def test_every_option_of_a_setting_or_covered_entry_is_accepted() -> None:
    known = build_parser()._option_string_actions  # noqa: SLF001 - what argparse knows
    for entry in GUNICORN:
        for option in entry.options:
            if entry.refused:
                assert option not in known, option
            else:
                assert option in known, (entry.name, option)


@pytest.mark.parametrize("entry", [e for e in GUNICORN if e.setting and e.options
                                   and e.name not in OWN], ids=lambda e: e.name)
def test_an_alias_sets_its_setting(entry) -> None:
    """Each option gunicorn spells sets fastwsgi's setting, with a value
    that setting takes (its own default, given explicitly)."""
    setting = BY_NAME[entry.setting]
    value = {"user": "nobody", "group": "nogroup", "umask": "7", "name": "app",
             "chdir": str(TESTS), "pythonpath": "src", "bind": "127.0.0.1:9000",
             "env": "A=1"}.get(setting.name, str(setting.default))
    for option in entry.options:
        given = [option] if setting.flag else [option, value]
        got = printed(fastwsgi(*given, "--print-config"))
        assert got[setting.name][1] == setting.option, (option, got[setting.name])


@pytest.mark.parametrize("entry", [e for e in GUNICORN if e.refused and e.options],
                         ids=lambda e: e.name)
def test_a_refused_option_says_why(entry) -> None:
    for option in entry.options:
        line = one_error(fastwsgi(option, "x", "apps:hello"))
        assert line == f"{option}: not supported: {entry.refused}"


@pytest.mark.parametrize("entry", [e for e in GUNICORN if e.refused], ids=lambda e: e.name)
def test_a_refused_config_name_says_why(tmp_path: Path, entry) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    value = "lambda *a: None" if entry.name in REFUSED_HOOKS else "'x'"
    conf.write_text(f"workers = 1\n{entry.name} = {value}\n")
    line = one_error(fastwsgi("-c", str(conf), "apps:hello"))
    assert line == f"{conf}:2: {entry.name}: not supported: {entry.refused}"


def test_covered_names_are_accepted_and_said(tmp_path: Path) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("worker_tmp_dir = '/dev/shm'\nworkers = 2\n")
    result = fastwsgi("-c", str(conf), "--worker-tmp-dir", "/dev/shm", "-R", "--print-config")
    got = printed(result)
    assert got["workers"][0] == "2"
    assert "worker_tmp_dir: nothing to do: the workers' heartbeats live in shared memory" \
        in result.stderr
    assert "--enable-stdio-inheritance: nothing to do" in result.stderr


def test_p_is_the_port_with_a_number_and_the_pid_file_with_a_path(tmp_path: Path) -> None:
    got = printed(fastwsgi("-p", "9123", "--print-config"))
    assert got["port"][0] == "9123"
    assert got["pid"][0] == "''"
    pid = str(tmp_path / "app.pid")
    got = printed(fastwsgi("-p", pid, "--print-config"))
    assert got["pid"][0] == repr(pid)
    assert got["port"][0] == "8000"


@pytest.mark.parametrize(("word", "allowed"), [("drop", "False"), ("dangerous", "True")])
def test_header_map(word: str, allowed: str) -> None:
    got = printed(fastwsgi("--header-map", word, "--print-config"))
    assert got["allow_underscore_headers"][0] == allowed


def test_header_map_refuse_is_not_offered() -> None:
    assert "--header-map: 'refuse'" in one_error(fastwsgi("--header-map", "refuse",
                                                          "apps:hello"))


def test_wsgi_app_and_pythonpath_from_a_gunicorn_config(tmp_path: Path) -> None:
    """`wsgi_app` stands in for APP, and `pythonpath` finds its module."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "shop.py").write_text("def app(environ, start_response):\n"
                                             "    return []\n")
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("wsgi_app = 'shop:app'\npythonpath = 'src'\n")
    ok = fastwsgi("-c", str(conf), "--check-config", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "shop:app imports" in ok.stdout
    missing = fastwsgi("-c", str(conf), "--pythonpath", str(tmp_path / "nowhere"),
                       "--check-config", cwd=tmp_path)
    assert missing.returncode == 2 and "cannot import 'shop'" in missing.stderr


def test_the_migration_page_is_current() -> None:
    page = (ROOT / "docs" / "from-gunicorn.md").read_text()
    assert page == migration_page(), "run scripts/settings-table --write"
    for entry in GUNICORN:
        assert f"| `{entry.name}` |" in page


def test_the_page_is_linked_from_readme() -> None:
    assert "docs/from-gunicorn.md" in (ROOT / "README.md").read_text()

