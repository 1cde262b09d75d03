"""The machine: Debian packages, file-descriptor limit, free ports, and the
facts printed next to the results (a ratio is only meaningful with them)."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Callable

APT_TIMEOUT = 900  # seconds; apt on a slow mirror, still bounded


def _deb_installed(package: str) -> bool:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "install ok installed" in out.stdout


def _privileged_prefix() -> list[str] | None:
    if os.geteuid() == 0:
        return []
    # On CI runners apt needs sudo; -n so that we never hang on a password.
    if shutil.which("sudo"):
        return ["sudo", "-n"]
    return None


_apt_updated = False


def ensure_debs(packages: list[str], log: Callable[[str], None]) -> dict[str, str]:
    """Install the Debian packages that are missing. Returns package -> "ok"
    or the reason it is unavailable; never raises."""
    global _apt_updated
    status: dict[str, str] = {}
    missing = []
    for pkg in packages:
        if _deb_installed(pkg):
            status[pkg] = "ok"
        else:
            missing.append(pkg)
    if not missing:
        return status
    prefix = _privileged_prefix()
    if not shutil.which("apt-get") or prefix is None:
        for pkg in missing:
            status[pkg] = "missing (no apt-get or no root)"
        return status
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        if not _apt_updated:
            log("apt-get update")
            subprocess.run([*prefix, "apt-get", "update", "-q"], env=env,
                           capture_output=True, timeout=APT_TIMEOUT, check=False)
            _apt_updated = True
        for pkg in missing:
            log(f"apt-get install -y {pkg}")
            proc = subprocess.run(
                [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", pkg],
                env=env, capture_output=True, text=True, timeout=APT_TIMEOUT, check=False,
            )
            if proc.returncode == 0 and _deb_installed(pkg):
                status[pkg] = "ok"
            else:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
                status[pkg] = f"apt-get install failed: {tail[0]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        for pkg in missing:
            status.setdefault(pkg, f"apt-get failed: {exc}")
    return status


def raise_nofile_limit() -> int:
    """c1000 and idle need thousands of sockets, in this process (the idle
    client) and in the servers, which inherit the limit from us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
    return target


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version_of(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not available"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def machine_info(pythons: dict[str, str]) -> dict[str, object]:
    """pythons: label -> interpreter path of each venv in use."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": _version_of(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "pythons": {label: _version_of([path, "-c",
                                        "import platform; print(platform.python_implementation(), "
                                        "platform.python_version())"])
                    for label, path in pythons.items()},
        "wrk": _version_of(["wrk", "--version"]).split(" Copyright")[0],
        "nginx": _version_of(["nginx", "-v"]),
        "openssl": _version_of(["openssl", "version"]),
    }
