"""The cffi builder: compiles csrc/*.c into the ``fastwsgi._fastwsgi`` module.

Out-of-line API mode: setuptools runs this through ``cffi_modules`` in
setup.py, and the C compiler checks every declaration against the real
headers.  The declarations come from the marked region of csrc/fw.h, so the
C API is written down exactly once.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"


def _cdef() -> str:
    text = (CSRC / "fw.h").read_text()
    match = re.search(r"/\* cdef-begin \*/(.*)/\* cdef-end \*/", text, re.S)
    if match is None:
        raise RuntimeError("csrc/fw.h lacks its cdef-begin/cdef-end markers")
    # The callbacks sit inside a comment so that the C compiler skips them.
    body = match.group(1)
    body = re.sub(r"/\* python-callbacks-begin[^\n]*\n", "", body)
    return body.replace("python-callbacks-end */", "")


def _compile_args() -> tuple[list[str], list[str]]:
    # -pthread: threaded mode's mutex and condition variables (older glibc,
    # which the wheels are built against, keeps them in libpthread).
    cflags = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-fvisibility=hidden", "-pthread"]
    ldflags: list[str] = ["-pthread"]
    # FASTWSGI_SANITIZE=1 builds with AddressSanitizer and UBSan for the
    # test suite; FASTWSGI_DEBUG=1 turns warnings into errors.
    if os.environ.get("FASTWSGI_SANITIZE"):
        sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        cflags = [f for f in cflags if f != "-O2"] + ["-O1", "-g", *sanitize]
        ldflags += sanitize
    if os.environ.get("FASTWSGI_DEBUG"):
        cflags += ["-Werror", "-g"]
    return cflags, ldflags


ffi = FFI()
ffi.cdef(_cdef())
_cflags, _ldflags = _compile_args()
ffi.set_source(
    "fastwsgi._fastwsgi",
    '#include "fw.h"\n',
    sources=[
        str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("*.c"))
    ],
    include_dirs=[str(CSRC.relative_to(ROOT))],
    # A header edited alone must rebuild too: an in-tree build/ keeps the
    # objects, and only these paths and the sources are compared with them.
    depends=[str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("*.h"))],
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
    # dlopen: TLS loads the libssl the interpreter's ssl module uses (older
    # glibc, which the wheels are built against, keeps it in libdl).
    libraries=["dl"],
)
