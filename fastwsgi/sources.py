"""Where settings come from, besides the command line: the environment
(``FASTWSGI_<NAME>``) and a config file (TOML, ``[tool.fastwsgi]`` of a
pyproject.toml, or a Python file of module-level names).

Each source gives raw values with where each came from; config.py checks
them.  Precedence (cli.py applies it): command line > environment > config
file > default.
"""

from __future__ import annotations

import ast
import difflib
import os
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import BY_NAME, SETTINGS, ConfigError
from .gunicorn_names import BY_NAME as GUNICORN
from .gunicorn_names import translate
from .hooks import BY_NAME as HOOKS


def _translate(name: str, value: Any, where: str) -> tuple[str, Any] | None:
    """A gunicorn name and value as fastwsgi's (None: nothing to set; what
    fastwsgi already does is said on stderr)."""
    try:
        got = translate(name, value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    entry = GUNICORN.get(name)
    if got is None and entry is not None and entry.covered:
        print(f"fastwsgi: {where}: {name}: nothing to do: {entry.covered}", file=sys.stderr)
    return got


@dataclass(frozen=True)
class Given:
    """A raw value and where it was given."""

    value: Any
    origin: str


def from_environment(environ: Mapping[str, str]) -> dict[str, Given]:
    """FASTWSGI_<NAME> for every setting.  A list setting (bind, fd) takes
    its items separated by commas.  Other FASTWSGI_ variables are not ours
    to judge (build switches use the prefix too) and are left alone."""
    found: dict[str, Given] = {}
    for setting in SETTINGS:
        if setting.name in HOOKS:
            continue  # functions: only a Python config file gives them
        name = setting.env
        if name not in environ:
            continue
        text = environ[name]
        value: Any = text
        if setting.repeat:
            value = [item.strip() for item in text.split(",") if item.strip()]
        found[setting.name] = Given(value, f"environment {name}")
    return found


def from_file(path: str) -> dict[str, Given]:
    """The settings of a config file; ConfigError (naming the file, and the
    key and line where it can) for anything wrong with it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    base = os.path.basename(path)
    if base.endswith(".py"):
        return _python_file(path, data)
    if base.endswith(".toml"):
        return _toml_file(path, data, pyproject=base == "pyproject.toml")
    raise ConfigError(f"{path}: not a config file fastwsgi reads (a .toml file, a "
                      "pyproject.toml, or a .py file)")


def _toml_file(path: str, data: bytes, pyproject: bool) -> dict[str, Given]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - the dependency installed for older Pythons
        import tomli as tomllib
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if pyproject:
        table = table.get("tool", {}).get("fastwsgi", {})
        where = "[tool.fastwsgi] "
    else:
        where = ""
    found: dict[str, Given] = {}
    for key, value in table.items():
        got = _translate(key.replace("-", "_"), value, f"{path}: {where}".rstrip())
        if got is None:
            continue
        name, value = got
        if name not in BY_NAME:
            raise ConfigError(f"{path}: {where}{key}: " + unknown(name))
        if isinstance(value, dict):
            raise ConfigError(f"{path}: {where}{key}: a table, not a value")
        found[name] = Given(value, f"{path}")
    return found


def _python_file(path: str, data: bytes) -> dict[str, Given]:
    """Run the file as a module; its public module-level names that are
    settings (fastwsgi's or gunicorn's) and server hooks are read.  Any
    other name is the file's own (``here = os.path.dirname(__file__)``,
    ``cores = multiprocessing.cpu_count()``, a helper function) and is
    ignored, as gunicorn does; one that looks like a misspelt setting is
    said on stderr, naming the setting it resembles."""
    try:
        tree = ast.parse(data, path)
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: {exc.msg}") from None
    lines = _assignment_lines(tree)
    module = types.ModuleType("fastwsgi_config")
    module.__file__ = path
    try:
        exec(compile(tree, path, "exec"), module.__dict__)  # noqa: S102 - the operator's own file
    except BaseException as exc:  # noqa: B036 - any failure is one line
        raise ConfigError(f"{path}: running it failed: {type(exc).__name__}: {exc}") from None
    found: dict[str, Given] = {}
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, (types.ModuleType, type)):
            continue
        if value is None:
            continue  # gunicorn's spelling of "the default" (accesslog = None)
        if name.isupper():
            # A constant of the file's own (LOG_DIR = ...): no setting is
            # spelled in capitals, and a typo of one is still caught.
            continue
        line = lines.get(name)
        at = f"{path}:{line}" if line else path
        if name not in BY_NAME and name not in GUNICORN:
            _note_own_name(name, at)
            continue
        got = _translate(name, value, at)
        if got is None:
            continue
        name, value = got
        if callable(value) and name not in HOOKS:
            raise ConfigError(f"{at}: {name}: a function, and no server hook has this "
                              "name; the hooks are " + ", ".join(HOOKS))
        if name not in BY_NAME:
            raise ConfigError(f"{at}: {name}: " + unknown(name))
        found[name] = Given(value, at)
    if vars(module).get("worker_class") == "gthread" and "threads" not in found:
        # gunicorn's gthread runs one thread unless told more.
        line = lines.get("worker_class")
        found["threads"] = Given(1, f"{path}:{line}" if line else path)
    return found


def _note_own_name(name: str, at: str) -> None:
    """A name of the config file's own: nothing to do, unless it looks like
    a misspelt setting or hook (``worker = 2``, ``acesslog``), which would
    otherwise be ignored without a word."""
    known = {*BY_NAME, *GUNICORN, *HOOKS}
    near = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    if near:
        print(f"fastwsgi: {at}: {name} is not a setting, and is ignored; did you mean "
              f"{near[0]}?", file=sys.stderr)


def _assignment_lines(tree: ast.Module) -> dict[str, int]:
    lines: dict[str, int] = {}
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines.setdefault(node.name, node.lineno)
        for target in targets:
            if isinstance(target, ast.Name):
                lines.setdefault(target.id, target.lineno)
    return lines


def unknown(name: str) -> str:
    """The message for a name that is no setting: the list of settings."""
    return "no such setting; the settings are " + ", ".join(
        s.name for s in SETTINGS if s.name not in HOOKS) + "; the server hooks are " \
        + ", ".join(HOOKS)
