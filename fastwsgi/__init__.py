"""fastwsgi: a WSGI server whose event loop and HTTP/1.1 parser are C.

    import fastwsgi
    fastwsgi.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

from typing import Any

try:
    from ._fastwsgi import lib as _lib  # noqa: F401 - the compiled core
except ModuleNotFoundError as exc:  # the source tree shadows the installed package
    raise ImportError(
        "fastwsgi's compiled core is missing: this is probably the source tree "
        "(a folder named fastwsgi in the working directory) shadowing the "
        "installed package; run it from another directory"
    ) from exc

from ._version import __version__
from .config import ConfigError, make_config
from .wsgi import WSGIApp

__all__ = ["ConfigError", "__version__", "run"]


def run(app: WSGIApp, host: str | None = None, port: int | None = None,
        **settings: Any) -> None:
    """Serve `app` until SIGINT or SIGTERM (127.0.0.1:8000 unless told).

    `settings` are the names in README's settings table (``bind``,
    ``workers``, ``threads``, ``keepalive_timeout``, ...).  A bad value
    raises ConfigError naming the setting and what it allows.  With
    workers, the app is already imported here: the workers are forked
    with it, as with ``preload``.
    """
    given = dict(settings)
    if host is not None:
        given["host"] = host
    if port is not None:
        given["port"] = port
    cfg = make_config(given)
    if cfg.supervised:
        from .master import Master

        code = Master(cfg, app=app).run()
        if code:
            raise SystemExit(code)
        return
    from .server import serve

    serve(app, cfg)
