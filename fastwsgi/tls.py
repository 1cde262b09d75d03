"""TLS: which OpenSSL the C core uses, and the contexts it is given.

The core does not link OpenSSL.  It opens the libssl that this
interpreter's own ``ssl`` module already loaded (found in /proc/self/maps),
so that security updates reach the server the way they reach ``ssl``:
through the system's packages or the Python distribution, never through a
copy inside a wheel.  An interpreter whose ``ssl`` has OpenSSL built in
(no libssl in its maps) falls back to the system's libssl.so.3 or .so.1.1.
"""

from __future__ import annotations

from typing import Any

from ._fastwsgi import ffi, lib

_loaded: str | None = None  # the version string, once loaded

MIN_VERSIONS = {"1.2": 0x0303, "1.3": 0x0304}


class TLSError(ValueError):
    """TLS cannot be set up; the message names the setting at fault."""


def libssl_path() -> str:
    """The path of the libssl this process has mapped since ``import ssl``,
    or "" when none is (OpenSSL built into the interpreter)."""
    import ssl  # noqa: F401  (loads _ssl, and with it libssl)

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").partition("/")[2]
                if path and path.rpartition("/")[2].startswith("libssl.so"):
                    return "/" + path
    except OSError:
        pass
    return ""


def load() -> str:
    """Open OpenSSL for the core (once); its version string."""
    global _loaded
    if _loaded is None:
        err = ffi.new("char[]", 512)
        if lib.fw_tls_load(libssl_path().encode(), err, 512) < 0:
            raise TLSError("certfile: TLS is unavailable: " + ffi.string(err).decode())
        _loaded = ffi.string(lib.fw_tls_version()).decode()
    return _loaded


def context(cfg: Any) -> Any:
    """A new C context from the settings (the caller frees it with
    ``lib.fw_tls_context_free``); TLSError with a one-line reason."""
    load()
    keep = [ffi.new("char[]", str(value).encode()) if value else ffi.NULL
            for value in (cfg.certfile, cfg.keyfile, cfg.ca_certs, cfg.ciphers)]
    c = ffi.new("fw_tls_config *")
    c.certfile, c.keyfile, c.ca_certs, c.ciphers = keep
    c.cert_reqs = cfg.cert_reqs
    c.min_version = MIN_VERSIONS[cfg.tls_min_version]
    c.suppress_ragged_eofs = int(cfg.suppress_ragged_eofs)
    err = ffi.new("char[]", 1024)
    ctx = lib.fw_tls_context(c, err, 1024)
    if ctx == ffi.NULL:
        raise TLSError(ffi.string(err).decode(errors="replace"))
    return ctx


def check(cfg: Any) -> None:
    """Make a context once, so that a bad certificate, key or cipher list
    stops the start with its reason rather than failing each worker."""
    lib.fw_tls_context_free(context(cfg))
