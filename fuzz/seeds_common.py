"""What the seed writers of fuzz_conn and fuzz_tls share: the encoding of
an operation and of a whole seed, and writing a corpus directory.

Imported by seeds_conn.py and seeds_tls.py (run from any directory: the
directory of the script comes first on sys.path).
"""

from __future__ import annotations

import shutil
from pathlib import Path


def op(code: int, *args: int | bytes) -> bytes:
    """One operation: its byte, then each operand (a byte, or bytes)."""
    out = bytearray([code])
    for a in args:
        out += a if isinstance(a, bytes) else bytes([a])
    return bytes(out)


def seed(config: int, seed_byte: int, *ops: bytes) -> bytes:
    """A whole input: the configuration byte, the seed byte (fuzz_conn: the
    shape table's hash seed; fuzz_tls: OpenSSL's random bytes as well),
    then the program."""
    return bytes([config, seed_byte]) + b"".join(ops)


def write_corpus(dirname: str, seeds: list[tuple[str, bytes]]) -> None:
    """Replace fuzz/<dirname>/ with one file a seed."""
    out = Path(__file__).resolve().parent / dirname
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    for name, data in seeds:
        (out / name).write_bytes(data)
    print(f"wrote {len(seeds)} seeds to {out}")
