"""The memory the master shares with its workers: one fw_beat slot each.

Each worker's C loop writes its slot (when it last woke, whether it sleeps
in epoll_wait, the inline app call in progress, requests so far); the
master reads every slot on each tick without a syscall.  The mapping is
made before the first fork, so every worker sees the same pages.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Any

from ._fastwsgi import ffi, lib

SLOT_SIZE = ffi.sizeof("fw_beat")
STARTING: int = lib.FW_BEAT_STARTING
SERVING: int = lib.FW_BEAT_SERVING
STOPPING: int = lib.FW_BEAT_STOPPING


@dataclass(frozen=True)
class Beat:
    """One reading of a slot."""

    state: int
    turn_ms: int
    waiting: bool
    call_ms: int
    round: int
    request: str
    requests: int

    @property
    def serving(self) -> bool:
        return self.state == SERVING


class Beats:
    """`count` slots in a shared anonymous mapping."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._map = mmap.mmap(-1, SLOT_SIZE * count)  # MAP_SHARED
        self._slots = ffi.cast("fw_beat *", ffi.from_buffer(self._map))
        self._free = list(range(count - 1, -1, -1))

    def take(self) -> int | None:
        """A cleared slot's number, or None when all are in use."""
        if not self._free:
            return None
        index = self._free.pop()
        ffi.memmove(self._slots + index, b"\0" * SLOT_SIZE, SLOT_SIZE)
        return index

    def give_back(self, index: int) -> None:
        # The other workers read every slot (how the connections are
        # shared): a dead worker's must not look serving.
        self._slots[index].state = STARTING
        self._slots[index].accepting = 0
        self._free.append(index)

    def pointer(self, index: int) -> Any:
        return self._slots + index

    def all(self) -> tuple[Any, int]:
        """Every slot, for a worker to see how loaded the others are."""
        return self._slots, self.count

    def read(self, index: int) -> Beat:
        s = self._slots[index]
        request = ffi.string(s.request, len(s.request) - 1)
        return Beat(s.state, s.turn_ms, bool(s.waiting), s.call_ms, s.round,
                    request.decode("latin-1", "replace"), s.requests)


def clock_ms() -> int:
    """The clock the loops write their times on."""
    return int(lib.fw_clock_ms())
