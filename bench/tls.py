"""HTTPS for the tls-* scenarios: one throw-away certificate per run, made
by the `openssl` command in the run directory and given to every server, and
the client side the validator uses (it trusts exactly that certificate)."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

KEY_TYPE = "ECDSA P-256"
CERT_NAME = "tls-cert.pem"
KEY_NAME = "tls-key.pem"  # PKCS#8, unencrypted (granian reads no other format)
# The address every server listens on, and the usual name for it.
SUBJECT_ALT_NAME = "IP:127.0.0.1,DNS:localhost"
OPENSSL_TIMEOUT = 30.0


# For results.md and results.json.
DESCRIPTION = (f"self-signed {KEY_TYPE} certificate for 127.0.0.1 and localhost, made by "
               "`openssl req` at run time; wrk offers each new connection the TLS "
               "session of the one before it (session resumption, where the server "
               "accepts it: the note column says); the tls-idle client offers none: "
               "every connection it holds had a full handshake")


class TlsSetupError(Exception):
    """The certificate could not be made; the reason is the message."""


@dataclass
class Certificate:
    cert: Path
    key: Path
    _client: ssl.SSLContext | None = field(default=None, repr=False)

    def client_context(self) -> ssl.SSLContext:
        """A client context that verifies the server's chain against this
        certificate alone and 127.0.0.1 against its subjectAltName (so a
        server answering with some other certificate fails validation)."""
        if self._client is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_verify_locations(cafile=str(self.cert))
            ctx.check_hostname = True
            ctx.verify_mode = ssl.CERT_REQUIRED
            self._client = ctx
        return self._client


def make_certificate(directory: Path) -> Certificate:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost,
    valid for a week, and its key, written into `directory`."""
    cert, key = directory / CERT_NAME, directory / KEY_NAME
    cmd = ["openssl", "req", "-x509", "-newkey", "ec",
           "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", str(key), "-out", str(cert), "-days", "7",
           "-subj", "/CN=localhost",
           "-addext", f"subjectAltName={SUBJECT_ALT_NAME}",
           "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
           "-addext", "extendedKeyUsage=serverAuth"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              timeout=OPENSSL_TIMEOUT)
    except FileNotFoundError:
        raise TlsSetupError("no openssl command to make the certificate with") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TlsSetupError(f"openssl req failed: {exc}") from None
    if proc.returncode != 0 or not cert.is_file() or not key.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise TlsSetupError(f"openssl req exited with {proc.returncode}: {tail[0]}")
    made = Certificate(cert, key)
    try:
        made.client_context()  # a certificate Python cannot load is caught here
    except (OSError, ValueError) as exc:
        raise TlsSetupError(f"the certificate openssl made does not load: {exc}") from None
    return made
