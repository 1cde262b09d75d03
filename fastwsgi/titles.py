"""Process titles, so that `ps` tells the master from each worker.

Uses the optional `setproctitle` package (``pip install fastwsgi[titles]``)
when it is installed; without it titles stay as they are."""

from __future__ import annotations

try:
    from setproctitle import (  # type: ignore[import-not-found, unused-ignore]
        setproctitle as _set,
    )
except ImportError:  # optional
    _set = None


def set_title(title: str) -> None:
    if _set is not None:
        _set(title)
