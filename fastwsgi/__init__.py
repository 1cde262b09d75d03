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


def run(app: WSGIApp, host: str = "127.0.0.1", port: int = 8000,
        **settings: Any) -> None:
    """Serve `app` until SIGINT or SIGTERM.

    `settings` are the names in README's settings table (``bind``,
    ``keepalive_timeout``, ``max_body_size``, ...).  A bad value raises
    ConfigError naming the setting and what it allows.
    """
    from .server import serve

    cfg = make_config({"host": host, "port": port, **settings})
    serve(app, cfg)
