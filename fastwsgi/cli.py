"""The command line: ``fastwsgi [options] module:app``.

Its options are derived from the settings table in config.py.  Every error a
user can make (a bad option, an app that cannot be imported) ends in one
line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from . import privileges
from ._version import __version__
from .config import BY_NAME, SETTINGS, Config, ConfigError, Setting, make_config
from .gunicorn_names import BY_OPTION, GUNICORN, WORKER_CLASSES
from .sources import Given, from_environment, from_file
from .wsgi import WSGIApp


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: str) -> NoReturn:
    print(f"fastwsgi: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def describe(exc: BaseException) -> str:
    """An exception as one line: its type, then its message if it has one."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fastwsgi",
        description="Serve a WSGI application.",
        epilog="APP is module:attribute, module:factory() or a module "
               "(then module:application, else module:app).",
    )
    parser.add_argument("app", metavar="APP", nargs="?", help="the WSGI application")
    parser.add_argument("--version", action="version",
                        version=f"fastwsgi {__version__}")
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="Read settings from FILE: TOML (fastwsgi.toml, or the "
                             "[tool.fastwsgi] table of a pyproject.toml) or a Python "
                             "file of module-level names.")
    parser.add_argument("-k", "--worker-class", metavar="CLASS",
                        help="gunicorn's worker class, for command lines written for it: "
                             "sync (fastwsgi's inline mode) or gthread (threaded: 1 thread unless "
                             "--threads gives more); any other is refused.")
    parser.add_argument("--print-config", action="store_true",
                        help="Print every setting's value and where it came from, "
                             "then exit.")
    parser.add_argument("--check-config", action="store_true",
                        help="Check the settings and import the app, then exit "
                             "(status 0 when both are fine).")
    parser.add_argument("-p", dest="port_or_pid", metavar="PORT|FILE",
                        help="A number: --port; anything else: --pid (gunicorn's -p).")
    parser.add_argument("--header-map", metavar="drop|dangerous",
                        help="gunicorn's spelling: drop is the default, dangerous is "
                             "--allow-underscore-headers.")
    parser.add_argument("--no-sendfile", action="store_true",
                        help="gunicorn's spelling of --sendfile off.")
    for entry in GUNICORN:
        if entry.covered and entry.options and entry.name not in OWN:
            dest, text = f"covered_{entry.name}", f"Accepted: {entry.covered}."
            if entry.flag:
                parser.add_argument(*entry.options, dest=dest, action="store_true",
                                    default=None, help=text)
            else:
                # The value is ignored; without a metavar, --help would
                # show the internal destination's name.
                parser.add_argument(*entry.options, dest=dest, metavar="VALUE",
                                    default=None, help=text)
    for s in SETTINGS:
        if not s.cli:
            continue
        names = [s.option, *aliases(s)] + ([s.short] if s.short else [])
        # argparse reads %(name)s in help texts as its own fields.
        help_text = f"{s.help} Default: {s.default_text or s.default}.".replace("%", "%%")
        if s.flag:
            # --name turns it on, --no-name off: the value the settings
            # table documents, without a word to type.
            parser.add_argument(*names, dest=s.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        elif s.repeat:
            parser.add_argument(*names, dest=s.name, action="append",
                                metavar=s.metavar, default=None, help=help_text)
        else:
            parser.add_argument(*names, dest=s.name, metavar=s.metavar,
                                default=None, help=help_text)
    return parser


PASTE_PREFIX = "paste:"


def _paste_app(spec: str) -> WSGIApp:
    """--paste FILE[#NAME]: the app a PasteDeploy file describes."""
    path, _, name = spec[len(PASTE_PREFIX):].partition("#")
    try:
        from paste.deploy import loadapp  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        fail("--paste: PasteDeploy is not installed (pip install fastwsgi[paste])")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        app: WSGIApp = loadapp("config:" + os.path.abspath(path), name=name or None)
    except BaseException as exc:  # noqa: B036 - any failure at load is one line
        fail(f"--paste {path}: loading the app failed: {describe(exc)}")
    return app


def load_app(spec: str) -> WSGIApp:
    """Import "module:attr", "module:factory()" or "module"; or the app of
    a PasteDeploy file, "paste:FILE[#NAME]"."""
    if spec.startswith(PASTE_PREFIX):
        return _paste_app(spec)
    module_name, _, attr = spec.partition(":")
    if not module_name:
        fail(f"APP: expected module:app, got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if getattr(exc, "name", None) == module_name:
            fail(f"cannot import {module_name!r}: {exc}")
        fail(f"importing {module_name!r} failed: {describe(exc)}")
    except BaseException as exc:  # noqa: B036 - any failure at import is one line
        fail(f"importing {module_name!r} failed: {describe(exc)}")
    call = attr.endswith("()")
    names = [attr[:-2] if call else attr] if attr else ["application", "app"]
    missing = object()
    for name in names:
        obj: Any = getattr(module, name, missing)
        if obj is missing:
            continue
        if obj is None:
            fail(f"{spec}: {module_name}.{name} is None, not a WSGI application")
        if call:
            try:
                obj = obj()
            except BaseException as exc:  # noqa: B036 - SystemExit too, as at import
                fail(f"{spec}: the factory raised {describe(exc)}")
        if not callable(obj):
            fail(f"{spec}: {module_name}.{name} is not callable")
        return obj  # type: ignore[no-any-return]
    fail(f"{spec}: module {module_name!r} has no attribute "
         + " or ".join(repr(n) for n in names))


# gunicorn's options the parser spells itself, not as aliases: -c, -k,
# --check-config and --print-config are fastwsgi's too; -p depends on its
# value; --header-map takes a word fastwsgi's switch does not, and
# --no-sendfile is a switch for what fastwsgi's --sendfile says in a word.
OWN = frozenset({"config", "worker_class", "check_config", "print_config", "pidfile",
                 "header_map", "sendfile"})


def aliases(s: Setting) -> list[str]:
    """gunicorn's spellings of a setting's option, when they differ."""
    return [o for entry in GUNICORN if entry.setting == s.name and entry.name not in OWN
            for o in entry.options if o not in (s.option, s.short)]


def _unknown_option(extra: Sequence[str]) -> NoReturn:
    for token in extra:
        if token.startswith("-"):
            option = token.split("=", 1)[0]
            entry = BY_OPTION.get(option)
            if entry is not None and entry.refused:
                fail(f"{option}: not supported: {entry.refused}")
            fail(f"{option}: no such option (fastwsgi --help lists them)")
    fail(f"unexpected argument {extra[0]!r} (give one APP)")


def _gunicorn_spellings(args: argparse.Namespace) -> None:
    """-p, --header-map, --no-sendfile and the options that change nothing here."""
    if args.port_or_pid is not None:
        if args.port_or_pid.isdigit():
            args.port = args.port if args.port is not None else args.port_or_pid
        elif args.pid is None:
            args.pid = args.port_or_pid
    if args.header_map is not None:
        if args.header_map not in ("drop", "dangerous"):
            fail(f"--header-map: {args.header_map!r}: fastwsgi drops header names with an "
                 "underscore (drop), or keeps them (dangerous)")
        if args.allow_underscore_headers is None:
            args.allow_underscore_headers = args.header_map == "dangerous"
    if args.no_sendfile and args.sendfile is None:
        args.sendfile = "off"
    for entry in GUNICORN:
        if getattr(args, f"covered_{entry.name}", None) is not None:
            print(f"fastwsgi: {entry.options[-1]}: nothing to do: {entry.covered}",
                  file=sys.stderr)


def _gather(args: argparse.Namespace) -> tuple[Config, dict[str, str]]:
    """Every source, in order of precedence: command line > environment >
    config file > default.  Returns the config and where each setting
    came from.  A bad value is one line naming its source."""
    merged: dict[str, Given] = {}
    if args.config:
        try:
            merged.update(from_file(args.config))
        except ConfigError as exc:
            fail(str(exc))
    merged.update(from_environment(os.environ))
    for s in SETTINGS:
        value = getattr(args, s.name, None)
        if value is not None:
            merged[s.name] = Given(value, s.option)
    if args.worker_class == "gthread" and "threads" not in merged:
        # gunicorn's gthread runs one thread unless told more.
        merged["threads"] = Given(1, "-k gthread")
    values: dict[str, Any] = {}
    for name, given in merged.items():
        try:
            values[name] = BY_NAME[name].convert(given.value)
        except ConfigError as exc:
            fail(_source_error(exc, given.origin))
    try:
        cfg = make_config(values)
    except ConfigError as exc:
        fail(_option_error(exc))
    return cfg, {name: given.origin for name, given in merged.items()}


def _source_error(exc: ConfigError, origin: str) -> str:
    """"name: must be ..." said of where the value came from."""
    name, _, rest = str(exc).partition(":")
    if origin.startswith("-"):
        return f"{origin}:{rest}"
    if origin.startswith("environment "):
        return f"{origin[len('environment '):]} (environment):{rest}"
    return f"{origin}: {name}:{rest}"


def _option_error(exc: ConfigError) -> str:
    name = str(exc).split(":", 1)[0]
    return "--" + name.replace("_", "-") + str(exc)[len(name):]


def print_config(cfg: Config, origins: Mapping[str, str]) -> None:
    width = max(len(s.name) for s in SETTINGS)
    for s in SETTINGS:
        value = cfg.values[s.name]
        shown = list(value) if isinstance(value, tuple) else value
        print(f"{s.name:<{width}} = {shown!r:<24} # {origins.get(s.name, 'default')}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    # Extra options from the environment, before the command line's (which
    # win); gunicorn's GUNICORN_CMD_ARGS is not read.
    given = shlex.split(os.environ.get("FASTWSGI_CMD_ARGS", "")) + given
    args, extra = parser.parse_known_args(given)
    if extra:
        _unknown_option(extra)
    _gunicorn_spellings(args)
    if args.worker_class is not None and args.worker_class not in WORKER_CLASSES:
        fail(f"-k/--worker-class: {args.worker_class!r} has no equivalent here; fastwsgi "
             "runs its own event loop (sync: the default inline mode; gthread: "
             "--threads N)")
    cfg, origins = _gather(args)
    if args.print_config:
        print_config(cfg, origins)
        sys.exit(0)
    args.app = args.app or cfg.wsgi_app or None
    if cfg.paste:
        args.app = PASTE_PREFIX + cfg.paste
    if args.app is None:
        fail("the following arguments are required: APP")
    try:
        privileges.check(cfg)
    except ConfigError as exc:
        fail(_option_error(exc))
    # What the app's import may depend on: its directory, its environment,
    # its module path.
    if cfg.chdir:
        os.chdir(cfg.chdir)
    for pair in cfg.env:
        key, _, value = pair.partition("=")
        os.environ[key] = value
    for folder in reversed(cfg.pythonpath.split(",") if cfg.pythonpath else []):
        sys.path.insert(0, os.path.abspath(folder.strip()))
    if args.check_config:
        load_app(args.app)
        print(f"fastwsgi: the settings are valid and {args.app} imports")
        sys.exit(0)
    if cfg.daemon:
        _daemonize()
    if cfg.supervised:
        _supervise(args, cfg)
    app = load_app(args.app)
    from .server import serve

    try:
        serve(app, cfg, restore_signals=False)
    except OSError as exc:
        fail(str(exc.strerror or exc))
    # Stopped cleanly: further signals must not turn exit status 0 into a
    # death by signal while the interpreter shuts down.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(0)


def _daemonize() -> None:
    """-D: gunicorn's detaching.  Forked twice (the first child leads a
    session of its own, the second can never take a terminal again), so the
    command returns at once; the pid file written afterwards names the
    process that serves.  Its standard streams go to /dev/null."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def _supervise(args: argparse.Namespace, cfg: Config) -> NoReturn:
    """Run the master; each worker imports the app itself unless --preload."""
    from .master import Master

    def reconfigure() -> Config:
        # SIGHUP: the config file and the environment read again.
        try:
            return _gather(args)[0]
        except SystemExit:
            raise ConfigError("the settings are no longer valid (see above)") from None

    master = Master(cfg, load=lambda: load_app(args.app), spec=args.app,
                    reconfigure=reconfigure)
    try:
        code = master.run()
    except OSError as exc:
        fail(str(exc.strerror or exc))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)
