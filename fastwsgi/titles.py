"""Process titles, so that `ps` tells the master from each worker.

Uses the optional `setproctitle` package (``pip install fastwsgi[titles]``)
when it is installed; without it titles stay as they are."""

from __future__ import annotations

from collections.abc import Callable


def _finder() -> Callable[[str], None] | None:
    try:
        from setproctitle import (  # type: ignore[import-not-found, unused-ignore]
            setproctitle,
        )
    except ImportError:  # optional
        return None
    return setproctitle  # type: ignore[no-any-return, unused-ignore]


_set = _finder()


def set_title(title: str) -> None:
    if _set is not None:
        _set(title)
