"""Start a server that has no command line of its own, through its Python API.

Run inside the server's virtualenv as
    python launch.py SERVER HOST PORT module:attribute
It is copied next to apps.py in the run directory, so that only that directory
is on sys.path (not the orchestrator's package). Standard library only, and
Python 3.9 compatible: it also runs under PyPy.
"""

from __future__ import annotations

import importlib
import platform
import sys
from typing import Any, Callable


def load_app(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def run_bjoern(app: Any, host: str, port: int) -> None:
    import bjoern

    bjoern.run(app, host, port)


def run_meinheld(app: Any, host: str, port: int) -> None:
    from meinheld import server

    server.listen((host, port))
    server.run(app)


def run_socketify(app: Any, host: str, port: int) -> None:
    from socketify import WSGI, AppListenOptions

    # socketify hands uSockets a host string whose buffer it does not keep
    # alive; PyPy's GC frees it early and listening fails at random. Without
    # a host (a bare port: all interfaces) there is no such buffer. Load still goes to
    # 127.0.0.1 only.
    if platform.python_implementation() == "PyPy":
        WSGI(app).listen(port, lambda config: None).run()
    else:
        WSGI(app).listen(AppListenOptions(port=port, host=host), lambda config: None).run()


def run_fastwsgi_009(app: Any, host: str, port: int) -> None:
    # The unrelated PyPI package of the same import name, in its own venv.
    import fastwsgi

    fastwsgi.run(app, host=host, port=port)  # type: ignore[attr-defined,unused-ignore]


RUNNERS: dict[str, Callable[[Any, str, int], None]] = {
    "bjoern": run_bjoern,
    "meinheld": run_meinheld,
    "socketify": run_socketify,
    "fastwsgi-0.0.9": run_fastwsgi_009,
}


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in RUNNERS:
        names = ",".join(RUNNERS)
        sys.stderr.write(f"usage: launch.py {{{names}}} HOST PORT module:attr\n")
        return 2
    server, host, port, ref = argv
    RUNNERS[server](load_app(ref), host, int(port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
