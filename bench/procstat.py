"""CPU time and memory of a server's whole process tree, read from /proc.

Servers such as granian, gunicorn and nginx run the work in child processes,
so every figure sums the root process and all its descendants.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces or ')': the fields start after the
    # last ')'. Field 3 of stat(5) (state) is then index 0.
    return raw[raw.rindex(")") + 2:].split()


def _children_map() -> dict[int, list[int]]:
    """parent pid -> child pids, from one scan of /proc."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _subtree(root: int, children: dict[int, list[int]]) -> list[int]:
    result: list[int] = []
    stack = [root]
    while stack and len(result) < 10000:  # bounded even if /proc looks odd
        pid = stack.pop()
        if (PROC / str(pid)).exists():
            result.append(pid)
            stack.extend(children.get(pid, []))
    return result


def tree_pids(root: int) -> list[int]:
    """root and all its live descendants (one scan of /proc)."""
    return _subtree(root, _children_map())


def _own_cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def cpu_seconds(root: int) -> float:
    """utime + stime of the tree (all threads), in seconds."""
    return sum(_own_cpu_seconds(pid) for pid in tree_pids(root))


ROOT_KEY = "root"


def cpu_by_child(root: int) -> dict[str, float]:
    """The tree's CPU seconds split by where they were spent: ROOT_KEY for
    the root process itself, and for each direct child (by pid, as a string
    so that the dict survives JSON unchanged) that child's whole subtree.
    A multi-process server's workers are the root's children, so this is
    the per-worker figure; the values add up to cpu_seconds(root)."""
    children = _children_map()
    split = {ROOT_KEY: _own_cpu_seconds(root)}  # 0.0 once the root is gone
    for child in children.get(root, []):
        split[str(child)] = sum(_own_cpu_seconds(pid) for pid in _subtree(child, children))
    return split


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_kib(root: int) -> int:
    """Current resident memory of the tree (VmRSS summed)."""
    return sum(_status_kib(pid, "VmRSS") for pid in tree_pids(root))


def peak_rss_kib(root: int) -> int:
    """Peak resident memory (VmHWM summed over the tree's live processes)."""
    return sum(_status_kib(pid, "VmHWM") for pid in tree_pids(root))
