"""Certificates for the TLS tests, made with the openssl command line: a
CA, a server certificate for localhost/127.0.0.1 that it signed, a client
certificate it signed, a self-signed server certificate, and keys."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Certs:
    dir: Path
    ca: Path            # the CA's certificate
    cert: Path          # server certificate (signed by ca)
    key: Path
    other_cert: Path    # another server certificate, self-signed
    other_key: Path
    client_cert: Path   # client certificate (signed by ca)
    client_key: Path
    stranger_cert: Path  # client certificate no CA here signed
    stranger_key: Path
    locked_key: Path    # the server key under a passphrase


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make(d: Path) -> Certs:
    san = "subjectAltName=DNS:localhost,IP:127.0.0.1"
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
         "ca.pem", "-days", "30", "-subj", "/CN=fastwsgi test CA", cwd=d)
    for name, subj, ext in (("server", "/CN=localhost", san),
                            ("client", "/C=DE/O=Example, Inc./CN=client one", None)):
        _run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", subj, cwd=d)
        extra = ["-extfile", f"{name}.ext"] if ext else []
        if ext:
            (d / f"{name}.ext").write_text(ext + "\n")
        _run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "30", *extra, cwd=d)
    for name, subj in (("other", "/CN=localhost"), ("stranger", "/CN=stranger")):
        _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.pem", "-days", "30", "-subj", subj, "-addext", san, cwd=d)
    _run("pkey", "-in", "server.key", "-aes256", "-passout", "pass:secret", "-out",
         "locked.key", cwd=d)
    return Certs(d, d / "ca.pem", d / "server.pem", d / "server.key", d / "other.pem",
                 d / "other.key", d / "client.pem", d / "client.key", d / "stranger.pem",
                 d / "stranger.key", d / "locked.key")
