"""Behind a proxy: what X-Forwarded-* and Forwarded (RFC 7239) say about
the client, believed only when the connection comes from a trusted proxy.

Which element of a list is used: proxies append, so the list is read from
the right, skipping every address that is itself a trusted proxy; the
first one that is not is the client (an address a client wrote at the
left end cannot pose as it).  When every address is trusted, the leftmost
is used.  Forwarded, when present, is used instead of X-Forwarded-*.
Values that are not well formed are ignored (the peer's own values stay).

The check costs nothing for requests without these fields: it is part of
the environ builder only for key sequences that contain one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Environ = dict[str, Any]

FORWARD_KEYS = frozenset({"HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                          "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT"})
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::(\d{1,5}))?")
_TOKEN_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')


def parse_allow(text: str) -> tuple[bool, tuple[Network, ...]]:
    """"127.0.0.1,::1,10.0.0.0/8" or "*" -> (trust everyone, networks);
    ValueError for an item that is no address or network."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if "*" in items:
        return True, ()
    return False, tuple(ipaddress.ip_network(item, strict=False) for item in items)


class Proxies:
    """The trusted proxies and the rewriting of an environ they vouch for."""

    def __init__(self, allow: str, host: bool = False,
                 secure: dict[str, str] | None = None) -> None:
        self.everyone, self.networks = parse_allow(allow)
        # gunicorn's secure_scheme_headers: {"X-FORWARDED-SSL": "on"} as
        # environ keys and the values that mean https.
        self.secure = {"HTTP_" + name.upper().replace("-", "_"): value
                       for name, value in (secure or {}).items()}
        self.keys = FORWARD_KEYS | frozenset(self.secure)
        # The host fields only when asked for: a proxy that does not set
        # X-Forwarded-Host itself passes a client's own on, and the app
        # would take the client's word for its Host (as Django does not,
        # without USE_X_FORWARDED_HOST).
        self.host = host

    def trusts(self, addr: str) -> bool:
        if self.everyone:
            return True
        if not addr:
            # A unix socket: only a local process can connect, and the
            # socket file's permissions say which (nginx in front).
            return True
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def wrap(self, keys: Iterable[str],
             build: Callable[[list[str]], Environ]) -> Callable[[list[str]], Environ]:
        """The builder for a key sequence: itself when no forwarding field
        is among the keys, else one that applies them."""
        if self.networks == () and not self.everyone:
            return build
        if not self.keys.intersection(keys):
            return build
        apply = self.apply

        def build_forwarded(values: list[str]) -> Environ:
            return apply(build(values))

        return build_forwarded

    def apply(self, environ: Environ) -> Environ:
        if not self.trusts(environ.get("REMOTE_ADDR", "")) \
                or "fastwsgi.proxy_client" in environ:
            # (A PROXY header that named no client leaves the balancer's
            # address, but the bytes are a client's: its forwarding headers
            # are its own word.)
            return environ
        self._forwarding(environ)
        # Last: any of them says https, whatever X-Forwarded-Proto said.
        for key, value in self.secure.items():
            if environ.get(key) == value:
                environ["wsgi.url_scheme"] = "https"
        return environ

    def _forwarding(self, environ: Environ) -> Environ:
        forwarded = environ.get("HTTP_FORWARDED")
        if forwarded is not None:
            element = self._pick(_forwarded_elements(forwarded), lambda e: e.get("for", ""))
            if element is not None:
                self._set(environ, _node(element.get("for", "")), element.get("proto"),
                          element.get("host") if self.host else None, None)
            return environ
        client = None
        chain = environ.get("HTTP_X_FORWARDED_FOR")
        if chain is not None:
            client = self._pick([_node(item) for item in chain.split(",")], lambda a: a)
        host = port = None
        if self.host:
            host = _last(environ.get("HTTP_X_FORWARDED_HOST"))
            port = _last(environ.get("HTTP_X_FORWARDED_PORT"))
        self._set(environ, client, _last(environ.get("HTTP_X_FORWARDED_PROTO")), host, port)
        return environ

    def _pick(self, items: list[Any], address: Callable[[Any], str]) -> Any:
        """From the right, the first item whose address is not a trusted
        proxy; the leftmost when all are."""
        if not items:
            return None
        for item in reversed(items):
            addr = _node(address(item)) if not isinstance(item, str) else item
            if not addr or not self._trusted_hop(addr):
                return item
        return items[0]

    def _trusted_hop(self, addr: str) -> bool:
        if self.everyone:
            return False  # "*" trusts every peer, not every hop it names
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    @staticmethod
    def _set(environ: Environ, client: str | None, proto: str | None, host: str | None,
             port: str | None) -> None:
        if client:
            try:
                environ["REMOTE_ADDR"] = str(ipaddress.ip_address(client))
            except ValueError:
                pass
        if proto is not None and proto.lower() in ("http", "https"):
            environ["wsgi.url_scheme"] = proto.lower()
        if host is not None:
            m = _HOST.fullmatch(host)
            if m and (m.group(1) is None or 0 < int(m.group(1)) < 65536):
                environ["HTTP_HOST"] = host
                name = host[:m.start(1) - 1] if m.group(1) else host
                environ["SERVER_NAME"] = name.strip("[]")
                if m.group(1):
                    environ["SERVER_PORT"] = m.group(1)
                elif port is None:
                    environ["SERVER_PORT"] = "443" if environ["wsgi.url_scheme"] == "https" \
                        else "80"
        if port is not None and port.isdigit() and 0 < int(port) < 65536:
            environ["SERVER_PORT"] = str(int(port))


def _last(value: str | None) -> str | None:
    """The value the nearest proxy added (the rightmost of a list)."""
    if value is None:
        return None
    return value.rsplit(",", 1)[-1].strip()


def _node(text: str) -> str:
    """An address out of "1.2.3.4", "1.2.3.4:80", "[2001:db8::1]:80" or a
    quoted form; "" for "unknown", obfuscated names and garbage."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


def _forwarded_elements(value: str) -> list[dict[str, str]]:
    """RFC 7239: comma-separated elements of semicolon-separated pairs.
    A malformed element is dropped."""
    elements = []
    for part in _split_outside_quotes(value, ","):
        pairs: dict[str, str] = {}
        for item in _split_outside_quotes(part, ";"):
            if not item.strip():
                continue
            m = _TOKEN_PAIR.fullmatch(item)
            if not m:
                pairs = {}
                break
            val = m.group(2)
            if val.startswith('"'):
                val = re.sub(r"\\(.)", r"\1", val[1:-1])
            pairs[m.group(1).lower()] = val
        if pairs:
            elements.append(pairs)
    return elements


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts
