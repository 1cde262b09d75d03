"""The command line: ``fastwsgi [options] module:app``.

Its options are derived from the settings table in config.py.  Every error a
user can make (a bad option, an app that cannot be imported) ends in one
line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ._version import __version__
from .config import SETTINGS, Config, ConfigError, make_config
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
    parser.add_argument("app", metavar="APP", help="the WSGI application")
    parser.add_argument("--version", action="version",
                        version=f"fastwsgi {__version__}")
    for s in SETTINGS:
        names = [s.option] + ([s.short] if s.short else [])
        help_text = f"{s.help} Default: {s.default_text or s.default}."
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


def load_app(spec: str) -> WSGIApp:
    """Import "module:attr", "module:factory()" or "module"."""
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


def _config(args: argparse.Namespace) -> Config:
    given = {s.name: getattr(args, s.name) for s in SETTINGS
             if getattr(args, s.name) is not None}
    return make_config(given)


def _option_error(exc: ConfigError) -> str:
    name = str(exc).split(":", 1)[0]
    return "--" + name.replace("_", "-") + str(exc)[len(name):]


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = _config(args)
    except ConfigError as exc:
        fail(_option_error(exc))
    if cfg.supervised:
        _supervise(parser, args, cfg, argv)
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


def _supervise(parser: argparse.ArgumentParser, args: argparse.Namespace, cfg: Config,
               argv: Sequence[str] | None) -> NoReturn:
    """Run the master; each worker imports the app itself unless --preload."""
    from .master import Master

    def reconfigure() -> Config:
        # SIGHUP: the command line again, and the environment as it is now.
        try:
            return _config(parser.parse_args(argv))
        except SystemExit:
            raise ConfigError("the command line no longer parses") from None
        except ConfigError as exc:
            raise ConfigError(_option_error(exc)) from None

    app = load_app(args.app) if cfg.preload else None
    master = Master(cfg, app=app, load=lambda: load_app(args.app), spec=args.app,
                    reconfigure=reconfigure)
    try:
        code = master.run()
    except OSError as exc:
        fail(str(exc.strerror or exc))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)
