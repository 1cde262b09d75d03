"""Every setting of fastwsgi, declared once.

``run()``, the command line and the settings table in README.md are all
derived from ``SETTINGS``: a setting is added here and nowhere else.
``scripts/settings-table`` prints the Markdown table.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from .hooks import BY_NAME as HOOK_NAMES
from .hooks import HOOKS
from .hooks import any_set as any_hook_set
from .hooks import checker as hook_checker
from .listeners import strip_scheme
from .proxies import parse_allow

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class ConfigError(ValueError):
    """A setting has a value outside what it allows; the message names both."""


class Refused(ValueError):
    """Raised by a check whose value has the allowed form but is still wrong;
    the message says why, in place of what the setting allows."""


def _int_range(lo: int, hi: int) -> tuple[Callable[[Any], int], str]:
    def check(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            value = _parse_size(value)
        if not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError
        return value

    return check, f"an integer from {lo} to {hi}"


def _bytes(lo: int, hi: int) -> tuple[Callable[[Any], int], str]:
    check, allowed = _int_range(lo, hi)
    return check, allowed + ", or with a K, M or G suffix (powers of 1024)"


def _parse_size(text: str) -> int:
    """Accept plain integers and the K/M/G suffixes (powers of 1024)."""
    text = text.strip()
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    if scale != 1:
        text = text[:-1]
    return int(text, 10) * scale


def _seconds(lo: float, hi: float) -> tuple[Callable[[Any], float], str]:
    def check(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if not lo <= number <= hi:
            raise ValueError
        return number

    return check, f"a number of seconds from {lo:g} to {hi:g}"


def _boolean() -> tuple[Callable[[Any], bool], str]:
    words = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}

    def check(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in words:
            return words[value.lower()]
        raise ValueError

    return check, "true or false (command line: the option, or its --no- form)"


def _choice(options: tuple[str, ...]) -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise ValueError
        return value.lower()

    return check, "one of " + ", ".join(options)


def _file_send() -> tuple[Callable[[Any], str], str]:
    word, allowed = _choice(("auto", "on", "off"))

    def check(value: Any) -> str:
        # gunicorn's config files say sendfile = True / False.
        if isinstance(value, bool):
            return "on" if value else "off"
        return word(value)

    return check, allowed


def _text(max_len: int) -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not 0 < len(value) <= max_len:
            raise ValueError
        if any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in value):
            raise ValueError
        return value

    return check, f"visible ASCII text of 1 to {max_len} characters"


def _statsd_address() -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError
        if value and not statsd_target(value):
            raise ValueError
        return value

    return check, ("HOST:PORT, [IPV6]:PORT, HOST (port 8125) or unix:PATH, or nothing"
                   " for none")


def statsd_target(value: str) -> tuple[int, Any] | None:
    """A StatsD address as gunicorn writes it -> (family, address), or
    None when it is none."""
    if value.startswith("unix:"):
        path = value[len("unix://"):] if value.startswith("unix://") else value[len("unix:"):]
        return (socket.AF_UNIX, path) if path else None
    host, port = value, "8125"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)  # several colons: an IPv6 address, nothing else
        except ValueError:
            return None
    if not host or not port.isdigit() or not 0 < int(port) < 65536 \
            or any(c.isspace() for c in host):
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, int(port))


def _tags() -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or len(value) > 512:
            raise ValueError
        if any(ord(ch) < 0x21 or ord(ch) > 0x7E or ch in "|#@" for ch in value):
            raise ValueError
        return value

    return check, "tags separated by commas (name:value,other), or nothing"


def _prefix() -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or len(value) > 128:
            raise ValueError
        if any(ord(ch) < 0x21 or ord(ch) > 0x7E or ch in ":|@#" for ch in value):
            raise ValueError
        return value

    return check, "a metric name prefix such as myapp (no : | @ #), or nothing"


def _host() -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value or any(c.isspace() for c in value):
            raise ValueError
        return value

    return check, "a host name or IP address"


def _str_items(value: Any) -> list[str]:
    """A list setting's items: one string, or strings (ValueError else)."""
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(item, str) for item in items):
        raise ValueError
    return items


def _binds() -> tuple[Callable[[Any], tuple[str, ...]], str]:
    def check(value: Any) -> tuple[str, ...]:
        items = _str_items(value)
        for item in map(strip_scheme, items):
            if item.startswith("unix:"):
                if len(item) <= 5:
                    raise ValueError
                continue
            host, sep, port = item.rpartition(":")
            if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError
            if host.startswith("[") != host.endswith("]"):
                raise ValueError
        seen: dict[tuple[str, int], str] = {}
        for item in items:
            key = _address_key(item)
            if key is None:
                continue
            if key in seen:
                also = "" if seen[key] == item else f" (also as {seen[key]!r})"
                raise Refused(f"{item!r} is given twice{also}; give each address once")
            seen[key] = item
        return tuple(items)

    return check, ("HOST:PORT, [IPV6]:PORT or unix:/PATH, each optionally after"
                   " https:// or http://")


def _address_key(item: str) -> tuple[str, int] | None:
    """What makes two --bind addresses the same, without resolving names:
    the real path of a unix socket, else the host (an IP in its canonical
    form, a name in lower case) and the port.  None for port 0: each of
    those gets a port of its own."""
    item = strip_scheme(item)
    if item.startswith("unix:"):
        return (os.path.realpath(item[5:]), -1)
    host, _, port = item.rpartition(":")
    if int(port) == 0:
        return None
    host = host.strip("[]").lower()
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return (host, int(port))


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity, not the machine's:
    a container or taskset may allow fewer)."""
    affinity = getattr(os, "sched_getaffinity", None)  # PyPy has none
    if affinity is not None:
        return len(affinity(0))
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    return _count_cpu_list(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return os.cpu_count() or 1


def _count_cpu_list(text: str) -> int:
    """'0-3,8,10-11' -> 7."""
    total = 0
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        total += int(hi or lo) - int(lo) + 1
    return total


def _workers() -> tuple[Callable[[Any], int], str]:
    check_int, _ = _int_range(0, 1024)

    def check(value: Any) -> int:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return cpu_count()
        number = check_int(value)
        return number or cpu_count()

    return check, "an integer from 1 to 1024, or 0 or auto for one per CPU"


def _fds() -> tuple[Callable[[Any], tuple[int, ...]], str]:
    def check(value: Any) -> tuple[int, ...]:
        items = [value] if isinstance(value, (str, int)) else list(value)
        fds = []
        for item in items:
            if isinstance(item, bool):
                raise ValueError
            number = int(item)
            if not 3 <= number <= 65535:
                raise ValueError
            fds.append(number)
        return tuple(fds)

    return check, "a descriptor number from 3 to 65535"


def _umask() -> tuple[Callable[[Any], int | None], str]:
    def check(value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool):
            raise ValueError
        number = int(value, 8) if isinstance(value, str) else int(value)
        if not 0 <= number <= 0o777:
            raise ValueError
        return number

    return check, "an octal mask from 0 to 777"


def _networks() -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            value = ",".join(value)
        parse_allow(value)  # ValueError for an item that is neither
        return ",".join(item.strip() for item in value.split(",") if item.strip())

    return check, ("addresses or networks separated by commas (10.0.0.0/8, ::1),"
                   " * for every peer, or nothing for none")


def _address() -> tuple[Callable[[Any], str], str]:
    binds, _ = _binds()

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError
        if value and (value.startswith("unix:") or not binds(value)):
            raise ValueError
        return value

    return check, "HOST:PORT or [IPV6]:PORT, or nothing for none"


def _log_path(dash: str | None = "standard output",
              empty: str = "no access log") -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError
        if value in ("", "-"):
            return value
        folder = os.path.dirname(os.path.abspath(value))
        if not os.path.isdir(folder):
            raise Refused(f"{value!r}: its directory does not exist")
        if os.path.exists(value) and not os.access(value, os.W_OK):
            raise Refused(f"{value!r} is not writable")
        if not os.path.exists(value) and not os.access(folder, os.W_OK | os.X_OK):
            raise Refused(f"{value!r} cannot be created (its directory is not writable)")
        return value

    dash_text = f", - for {dash}," if dash else ""
    return check, f"a file path{dash_text} or nothing for {empty}"


def _access_format() -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        from .accesslog import FormatError, compile_format

        if not isinstance(value, str):
            raise ValueError
        try:
            compile_format(value)
        except FormatError as exc:
            raise Refused(str(exc)) from None
        return value

    return check, "combined, common, json, or a format of %(x)s atoms"


def _directory_or_none() -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if value == "":
            return ""
        if not isinstance(value, str) or not os.path.isdir(value):
            raise Refused(f"{value!r} is not a directory")
        return value

    return check, "a directory path"


def _env_pairs() -> tuple[Callable[[Any], tuple[str, ...]], str]:
    def check(value: Any) -> tuple[str, ...]:
        items = _str_items(value)
        for item in items:
            key, sep, _ = item.partition("=")
            if not sep or not key or not key.replace("_", "a").isalnum():
                raise ValueError
        return tuple(items)

    return check, "KEY=VALUE"


def _directory() -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError
        # Checked now, not at the first large upload (which would get 500).
        if not os.path.isdir(value):
            raise Refused(f"{value!r} is not a directory")
        if not os.access(value, os.W_OK | os.X_OK):
            raise Refused(f"{value!r} is not writable")
        return value

    return check, "a directory path"


def _account(kind: str) -> tuple[Callable[[Any], str], str]:
    """A user or group (`kind`), by name or number, that exists here."""
    def check(value: Any) -> str:
        from .privileges import find_group, find_user

        if value in ("", None):
            return ""
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str):
            raise ValueError
        if (find_user if kind == "user" else find_group)(text) is None:
            raise Refused(f"{text!r}: no such {kind} on this machine")
        return text

    return check, f"a {kind} name or number"


def _logging_dict() -> tuple[Callable[[Any], dict[str, Any] | None], str]:
    def check(value: Any) -> dict[str, Any] | None:
        if value is None or value == {}:
            return None
        if not isinstance(value, dict):
            raise ValueError
        return value

    return check, "a dict for logging.config.dictConfig"


def _scheme_headers() -> tuple[Callable[[Any], dict[str, str]], str]:
    def check(value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and k.strip()
                for k, v in value.items()):
            raise ValueError
        return {k.strip().upper(): v for k, v in value.items()}

    return check, "a dict of header names and values, e.g. {'X-FORWARDED-SSL': 'on'}"


def _patterns() -> tuple[Callable[[Any], tuple[str, ...]], str]:
    def check(value: Any) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else list(value)
        if not all(isinstance(item, str) and item for item in items):
            raise ValueError
        return tuple(items)

    return check, "file paths or glob patterns (** for any depth)"


SYSLOG_FACILITIES = ("auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail",
                     "news", "syslog", "user", "uucp", *(f"local{i}" for i in range(8)))


def _syslog_address() -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in ("udp", "tcp", "unix") or not rest:
            raise ValueError
        if scheme != "unix":
            host, _, port = rest.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError
        return value

    return check, "udp://HOST:PORT, tcp://HOST:PORT or unix://PATH"


def _paste_file() -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError
        path = value.partition("#")[0]
        if value and not os.path.isfile(path):
            raise Refused(f"{path!r}: no such file")
        return value

    return check, "FILE or FILE#NAME (an app section), or nothing for none"


def _config_file() -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError
        if value and not os.path.isfile(value):
            raise Refused(f"{value!r}: no such file")
        return value

    return check, "a file path, or nothing for none"


def _pem_file(what: str) -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError
        if value and not os.path.isfile(value):
            raise Refused(f"{value!r}: no such file")
        if value and not os.access(value, os.R_OK):
            raise Refused(f"{value!r} is not readable")
        return value

    return check, f"the path of {what} (PEM), or nothing for none"


def _cipher_list() -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or len(value) > 4096 or \
                any(not 0x20 < ord(ch) < 0x7f for ch in value):
            raise ValueError
        return value

    return check, "an OpenSSL cipher list (visible ASCII), or nothing for OpenSSL's"


CERT_REQS = {"none": 0, "optional": 1, "required": 2}


def _cert_reqs() -> tuple[Callable[[Any], int], str]:
    def check(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            text = value.strip().lower()
            value = CERT_REQS[text] if text in CERT_REQS else int(text)
        if value not in (0, 1, 2):
            raise ValueError
        return int(value)

    return check, "none (0), optional (1) or required (2)"


@dataclass(frozen=True)
class Setting:
    """One setting: how it is named, checked, defaulted and explained."""

    name: str
    default: Any
    help: str
    check: Callable[[Any], Any]
    allowed: str
    metavar: str = "VALUE"
    repeat: bool = False
    flag: bool = False
    short: str | None = None
    cli: bool = True
    default_text: str | None = None

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "FASTWSGI_" + self.name.upper()

    def convert(self, value: Any) -> Any:
        try:
            return self.check(value)
        except Refused as exc:
            raise ConfigError(f"{self.name}: {exc}") from None
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(
                f"{self.name}: must be {self.allowed}, got {value!r}"
            ) from None


def _setting(name: str, default: Any, checker: tuple[Callable[[Any], Any], str],
             help: str, **extra: Any) -> Setting:
    check, allowed = checker
    return Setting(name, default, help, check, allowed, **extra)


SETTINGS: tuple[Setting, ...] = (
    _setting("host", "127.0.0.1", _host(),
             "Address to listen on (used when no --bind is given).",
             metavar="HOST"),
    _setting("port", 8000, _int_range(0, 65535),
             "Port to listen on (0 picks a free port; -p N also sets it).",
             metavar="PORT"),
    _setting("bind", (), _binds(),
             "Listen here instead of host:port; repeat to listen on several.",
             metavar="ADDR", repeat=True, short="-b", default_text="none"),
    _setting("backlog", 1024, _int_range(1, 65535),
             "Pending connections the kernel queues.", metavar="N"),
    _setting("threads", 0, _int_range(0, 10000),
             "App threads: 0 runs the app on the event loop's thread (fastest"
             " for apps that never wait); N runs app calls on a pool of N"
             " threads while the loop goes on serving.", metavar="N"),
    _setting("request_timeout", 0.0, _seconds(0, 86400),
             "Threaded mode: a request whose app call has not started its"
             " response after this long gets 503 and is closed, and the stack"
             " of the thread running it is logged; one still waiting for a"
             " thread after this long gets 503 too (0: off).",
             metavar="SECONDS"),
    _setting("workers", 1, _workers(),
             "Worker processes, each with its own event loop (and app threads)."
             " 1 runs one process with no master; more run a master that"
             " binds, forks and supervises them.", metavar="N", short="-w"),
    _setting("master", False, _boolean(),
             "Run the supervising master even with one worker (implied by"
             " more workers, --max-requests and --reload).", flag=True),
    _setting("reuse_port", False, _boolean(),
             "Each worker opens its own SO_REUSEPORT socket, and the kernel"
             " spreads connections among them (else the workers share the"
             " master's sockets, and a new connection goes to the least"
             " loaded).", flag=True),
    _setting("timeout", 30.0, _seconds(0, 86400),
             "With a master: a worker whose event loop has been stuck this long"
             " (an inline app call that does not return) is killed and"
             " replaced; the log names the request (0: off).",
             metavar="SECONDS", short="-t"),
    _setting("max_requests", 0, _int_range(0, 1 << 40),
             "With a master: a worker retires after this many requests, its"
             " replacement already serving (0: never).", metavar="N"),
    _setting("max_requests_jitter", 0, _int_range(0, 1 << 40),
             "Add a random 0..N to each worker's max_requests, so that"
             " workers do not all retire at once.", metavar="N"),
    _setting("preload", False, _boolean(),
             "Import the app once in the master before forking (memory is"
             " shared copy-on-write; SIGHUP then keeps the loaded code).",
             flag=True),
    _setting("paste", "", _paste_file(),
             "Load the app from this PasteDeploy file (FILE or FILE#NAME for"
             " the app section NAME), instead of APP; needs PasteDeploy"
             " (pip install fastwsgi[paste]).", metavar="FILE", default_text="none"),
    _setting("daemon", False, _boolean(),
             "Detach from the terminal and run in the background, as gunicorn's"
             " -D does (standard input, output and error go to /dev/null: give"
             " --error-log FILE and --pid FILE).", flag=True, short="-D"),
    _setting("reload", False, _boolean(),
             "Development: restart the workers when a Python file of the"
             " app changes.", flag=True),
    _setting("reload_extra_files", (), _patterns(),
             "With --reload, also restart the workers when one of these files"
             " changes: paths or glob patterns (** for any depth), expanded"
             " again at each check; repeat for several.", metavar="PATTERN",
             repeat=True, default_text="none"),
    _setting("user", "", _account("user"),
             "Started as root: the workers switch to this user (name or number)"
             " before importing the app; the master keeps root to bind, and with"
             " --preload switches too, before it imports the app.", metavar="USER",
             default_text="none", short="-u"),
    _setting("group", "", _account("group"),
             "The group the workers switch to (default: the user's own group).",
             metavar="GROUP", default_text="the user's", short="-g"),
    _setting("initgroups", False, _boolean(),
             "With --user: also take the user's supplementary groups (else none).",
             flag=True),
    _setting("forbid_root", False, _boolean(),
             "Refuse to start if the app would run as root (no --user given"
             " while started as root).", flag=True),
    _setting("pythonpath", "", _text(4096),
             "Directories, separated by commas, put first on the module search"
             " path before loading the app.", metavar="DIRS", default_text="none"),
    _setting("wsgi_app", "", _text(512),
             "The app (module:app) when the command line gives none: for a"
             " config file.", metavar="APP", default_text="none", cli=False),
    _setting("chdir", "", _directory_or_none(),
             "Change to this directory before loading the app.", metavar="DIR",
             default_text="none"),
    _setting("env", (), _env_pairs(),
             "Set an environment variable before loading the app; repeat for"
             " several.", metavar="KEY=VALUE", repeat=True, default_text="none",
             short="-e"),
    _setting("pid", "", _log_path(None, "no pid file"),
             "Write the (master's) process id to this file; removed at exit"
             " (-p FILE also sets it).", metavar="FILE", default_text="none"),
    _setting("name", "", _text(64),
             "Name in the process titles (with setproctitle installed).",
             metavar="NAME", default_text="the app's spec"),
    _setting("fd", (), _fds(),
             "Serve on an inherited listening socket, descriptor N; repeat for"
             " several.", metavar="N", repeat=True, default_text="none"),
    _setting("umask", None, _umask(),
             "Mask for the unix sockets fastwsgi creates (octal, e.g. 007).",
             metavar="MASK", default_text="the process's"),
    _setting("keepalive_timeout", 5.0, _seconds(0.01, 3600),
             "Close an idle keep-alive connection after this long.",
             metavar="SECONDS"),
    _setting("header_timeout", 10.0, _seconds(0.01, 3600),
             "A request head must arrive completely within this time.",
             metavar="SECONDS"),
    _setting("body_timeout", 30.0, _seconds(0.01, 3600),
             "Longest wait for the next piece of a request body.",
             metavar="SECONDS"),
    _setting("write_timeout", 30.0, _seconds(0.01, 3600),
             "Close a connection whose client accepts no output for this long.",
             metavar="SECONDS"),
    _setting("graceful_timeout", 30.0, _seconds(0, 3600),
             "On SIGTERM/SIGINT, how long in-flight requests may take.",
             metavar="SECONDS"),
    _setting("limit_request_line", 8190, _bytes(64, 65536),
             "Longest request line in bytes (414 beyond).", metavar="BYTES"),
    _setting("limit_request_fields", 100, _int_range(1, 256),
             "Most header fields in a request (431 beyond).", metavar="N"),
    _setting("limit_request_field_size", 8190, _bytes(64, 65536),
             "Longest header field line in bytes (431 beyond).",
             metavar="BYTES"),
    _setting("limit_request_head", 65536, _bytes(1024, 1 << 20),
             "Longest request head, line and fields, in bytes (431 beyond).",
             metavar="BYTES"),
    _setting("max_body_size", 1 << 30, _bytes(0, 1 << 50),
             "Largest request body in bytes (413 beyond); K/M/G suffixes work.",
             metavar="BYTES", default_text="1G"),
    _setting("spool_threshold", 1 << 20, _bytes(0, 1 << 40),
             "Request bodies larger than this are kept in a temporary file.",
             metavar="BYTES", default_text="1M"),
    _setting("spool_dir", "", _directory(),
             "Directory for spooled request bodies.", metavar="DIR",
             default_text="the system temporary directory"),
    _setting("allow_underscore_headers", False, _boolean(),
             "Keep header fields whose names contain '_' (dropped by default,"
             " so X-Auth_User cannot pose as X-Auth-User).", flag=True),
    _setting("forwarded_allow_ips", "127.0.0.1,::1", _networks(),
             "Peers whose X-Forwarded-For and -Proto and Forwarded's for= and"
             " proto= set REMOTE_ADDR and wsgi.url_scheme (unix socket peers"
             " count as trusted; empty: none).", metavar="ADDRS"),
    _setting("secure_scheme_headers", {}, _scheme_headers(),
             "Headers that, sent by a --forwarded-allow-ips peer with the value"
             " given, make wsgi.url_scheme https (gunicorn's setting; config"
             " file only).", cli=False, default_text="none"),
    _setting("forwarded_host", False, _boolean(),
             "Also take HTTP_HOST, SERVER_NAME and SERVER_PORT from a trusted"
             " peer's X-Forwarded-Host and -Port and Forwarded's host= (only"
             " where the proxy sets them itself, never passing a client's on).",
             flag=True),
    _setting("proxy_protocol", False, _boolean(),
             "Every connection starts with a PROXY protocol header (v1 or v2)"
             " from a TCP load balancer, naming the client (REMOTE_ADDR); a"
             " connection without a valid one is closed.", flag=True),
    _setting("proxy_allow_ips", "127.0.0.1,::1", _networks(),
             "Peers that may send the PROXY header of --proxy-protocol; one"
             " from any other peer is answered 403 (unix socket peers count"
             " as allowed; * for every peer).", metavar="ADDRS"),
    _setting("certfile", "", _pem_file("a certificate and its chain"),
             "Serve HTTPS: the server's certificate, then its chain.  Every"
             " listener speaks TLS, unless some --bind addresses are written"
             " https://ADDR (only those do; http://ADDR for plain ones).",
             metavar="FILE", default_text="none"),
    _setting("keyfile", "", _pem_file("a private key without a passphrase"),
             "The certificate's private key (when it is not in --certfile).",
             metavar="FILE", default_text="none"),
    _setting("ca_certs", "", _pem_file("CA certificates"),
             "CA certificates that client certificates are checked against"
             " (see --cert-reqs).", metavar="FILE", default_text="none"),
    _setting("cert_reqs", 0, _cert_reqs(),
             "Client certificates: none, optional (asked for; a verified"
             " one's subject is SSL_CLIENT_S_DN in the environ) or required"
             " (the handshake fails without one).", metavar="MODE"),
    _setting("ciphers", "", _cipher_list(),
             "OpenSSL cipher list for TLS 1.2 (TLS 1.3's suites are"
             " OpenSSL's defaults).", metavar="LIST", default_text="OpenSSL's"),
    _setting("tls_min_version", "1.2", _choice(("1.2", "1.3")),
             "The oldest TLS version accepted; 1.0 and 1.1 never are.",
             metavar="VERSION"),
    _setting("suppress_ragged_eofs", True, _boolean(),
             "A TLS client closing without close_notify ends its connection"
             " as an ordinary close (off: as an error).", metavar="BOOL"),
    _setting("do_handshake_on_connect", False, _boolean(),
             "Accepted for gunicorn configs: the handshake always starts as"
             " the connection is accepted, on the event loop, without"
             " blocking anything.", metavar="BOOL"),
    _setting("sendfile", "auto", _file_send(),
             "How a wsgi.file_wrapper file is sent: on uses sendfile(2), off"
             " copies it through a 256 KiB buffer, auto copies to a peer on"
             " this host (a local proxy reads it faster from cache) and uses"
             " sendfile otherwise.", metavar="MODE"),
    _setting("server_header", "fastwsgi", _text(64),
             "Value of the Server header when the app sets none.",
             metavar="TEXT"),
    _setting("access_log", "", _log_path(),
             "Write one line per response here (- for standard output);"
             " written by a thread of its own, reopened on SIGUSR1.",
             metavar="PATH", default_text="none"),
    _setting("access_log_format", "combined", _access_format(),
             "combined (with the duration in microseconds), common, json, or"
             " gunicorn's %(x)s atoms (README lists them).", metavar="FORMAT"),
    _setting("error_log", "-", _log_path("standard error", "standard error"),
             "Where the error log goes (- for standard error); reopened on"
             " SIGUSR1.", metavar="PATH"),
    _setting("logconfig", "", _config_file(),
             "Configure logging from this file (logging.config.fileConfig);"
             " gunicorn's logger names work: gunicorn.error is fastwsgi's log.",
             metavar="FILE", default_text="none"),
    _setting("logconfig_json", "", _config_file(),
             "Configure logging from this JSON file (logging.config.dictConfig).",
             metavar="FILE", default_text="none"),
    _setting("logconfig_dict", None, _logging_dict(),
             "Configure logging with this dict (logging.config.dictConfig);"
             " config file only.", cli=False, default_text="none"),
    _setting("syslog", False, _boolean(),
             "Send the error log to syslog as well (at --syslog-addr).", flag=True),
    _setting("syslog_addr", "udp://localhost:514", _syslog_address(),
             "Where syslog listens (gunicorn's default).", metavar="ADDR"),
    _setting("syslog_prefix", "fastwsgi", _text(64),
             "The program name syslog files the lines under.", metavar="NAME"),
    _setting("syslog_facility", "user", _choice(SYSLOG_FACILITIES),
             "The syslog facility.", metavar="NAME"),
    _setting("capture_output", False, _boolean(),
             "Send what the app prints, and anything else written to stdout"
             " and stderr, to the error log file (with --error-log FILE).",
             flag=True),
    _setting("metrics_bind", "", _address(),
             "Serve Prometheus metrics at http://HOST:PORT/metrics (with a"
             " master: every worker summed).", metavar="ADDR", default_text="none"),
    _setting("statsd_host", "", _statsd_address(),
             "Send gunicorn's StatsD metrics here over UDP (requests, their"
             " duration and status codes, workers, log records), summed over"
             " every worker and sent once a second.", metavar="ADDR",
             default_text="none"),
    _setting("statsd_prefix", "", _prefix(),
             "Prefix of every StatsD metric name (a dot is added).",
             metavar="PREFIX", default_text="none"),
    _setting("dogstatsd_tags", "", _tags(),
             "Datadog tags added to every StatsD metric (|#tags).", metavar="TAGS",
             default_text="none"),
    _setting("log_level", "info", _choice(LOG_LEVELS),
             "Level of the 'fastwsgi' logger (debug also logs each refused"
             " request with its peer).", metavar="LEVEL"),
    _setting("log_format", "text", _choice(("text", "json")),
             "Error log lines: text ([time] [pid] [LEVEL] message) or json"
             " (one object per line).", metavar="FORMAT"),
    # Server hooks: functions, so only a Python config file or run()
    # gives them (README's "Server hooks" table says when each runs).
    *(_setting(h.name, None, hook_checker(h), f"Server hook, called {h.when}.",
               cli=False, default_text="none") for h in HOOKS),
)

BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    """Checked settings, ready to use."""

    values: Mapping[str, Any] = field(default_factory=dict)
    given: frozenset[str] = frozenset()  # the names set explicitly

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def spool_directory(self) -> str:
        return str(self.values["spool_dir"] or tempfile.gettempdir())

    @property
    def supervised(self) -> bool:
        """Whether a master process runs the workers."""
        v = self.values
        return bool(v["workers"] != 1 or v["master"] or v["max_requests"] or v["reload"]
                    or v["user"] or v["group"] or any_hook_set(v))

    @property
    def addresses(self) -> tuple[str, ...]:
        if self.values["bind"]:
            return tuple(self.values["bind"])
        host = self.values["host"]
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return (f"{host}:{self.values['port']}",)


def _check_tls(values: dict[str, Any]) -> None:
    """The TLS settings together: https:// binds need a certificate, and
    the certificate, key and ciphers must make a working context."""
    https = [b for b in values["bind"] if b.startswith("https://")]
    if https and not values["certfile"]:
        raise ConfigError(f"bind: {https[0]!r} needs certfile (and keyfile)")
    if not values["certfile"]:
        for name in ("keyfile", "ca_certs"):
            if values[name]:
                raise ConfigError(f"{name}: needs certfile")
        return
    if values["cert_reqs"] and not values["ca_certs"]:
        raise ConfigError("cert_reqs: needs ca_certs (the CAs that client "
                          "certificates are checked against)")
    if values["proxy_protocol"]:
        raise ConfigError("proxy_protocol: cannot be combined with certfile yet "
                          "(the PROXY header would come before the TLS handshake)")
    from .tls import TLSError, check

    try:
        check(Config(values))
    except TLSError as exc:
        raise ConfigError(str(exc)) from None


def make_config(settings: Mapping[str, Any]) -> Config:
    """Check every given setting and fill in the defaults."""
    values: dict[str, Any] = {}
    for name, value in settings.items():
        setting = BY_NAME.get(name)
        if setting is None:
            raise ConfigError(
                f"{name}: no such setting; the settings are "
                + ", ".join(s.name for s in SETTINGS)
            )
        values[name] = setting.convert(value)
    for setting in SETTINGS:
        values.setdefault(setting.name, setting.default)
    if values["reload"] and values["preload"]:
        # The master would hold the old code: workers forked from it could
        # never see the change.
        raise ConfigError("reload: cannot be combined with preload (the "
                          "master would keep the code it loaded)")
    _check_tls(values)
    if values["request_timeout"] and not values["threads"]:
        # Inline, the app runs on the loop's own thread: nothing could
        # answer for it while it hangs.
        raise ConfigError("request_timeout: needs threaded mode (threads of 1 or "
                          "more); inline the app call holds the loop itself")
    return Config(values, frozenset(settings))


def markdown_table() -> str:
    """The settings as the Markdown table README.md carries."""
    rows = ["| setting | option | environment | default | allowed | meaning |",
            "| --- | --- | --- | --- | --- | --- |"]
    for s in SETTINGS:
        if s.name in HOOK_NAMES:
            continue  # README's "Server hooks" table
        default = s.default_text or repr(s.default).replace("'", "`")
        if isinstance(s.default, str) and not s.default_text:
            default = f"`{s.default}`"
        option = f"`{s.option}`" if s.cli else "APP, the argument"
        rows.append(
            f"| `{s.name}` | {option} | `{s.env}` | {default} | {s.allowed} | {s.help} |"
        )
    return "\n".join(rows) + "\n"

