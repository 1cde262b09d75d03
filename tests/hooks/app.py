"""The app the hook tests serve (under gunicorn and under fastwsgi)."""

import os
import time


class Body:
    """A response whose close() is written to CLOSE_LOG when that is set."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __iter__(self):
        yield os.environ.get("HOOK_FROM_CONF", "-").encode()

    def close(self) -> None:
        if os.environ.get("CLOSE_LOG"):
            with open(os.environ["CLOSE_LOG"], "a") as f:
                f.write(f"close {self.path}\n")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/fail":
        raise RuntimeError("the app failed on purpose")
    if path == "/hang":
        time.sleep(60)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body(path)
