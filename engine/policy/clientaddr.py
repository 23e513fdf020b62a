"""The client address a request is counted under (SPEC 5.2 `--trusted-proxies`). Pure, no I/O.

Rule: without trusted proxies, or when the TCP peer is not in a trusted range, the client is the peer. When the
peer is trusted, the client is the last (rightmost) `X-Forwarded-For` entry that is not itself in a trusted
range; when every entry is trusted (all hops are ours), the first one, as nginx's `real_ip_recursive` does.

The address is reduced to a rate-limit key: IPv4 as written, an IPv4-mapped IPv6 address as its IPv4, any
other IPv6 address as its /64 network (one host usually holds a whole /64, so counting per address would let it
dodge every limit). An entry that is not an address at all (only a trusted proxy could have written it) is
kept as its first 64 characters. Invariant: results are cached in bounded dicts; the common case (no trusted
proxies, an IPv4 peer) is one tuple index.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable

_CACHE_MAX = 65536
UNKNOWN = "unknown"


def parse_networks(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The trusted ranges; ValueError naming a bad one."""
    out = []
    for text in cidrs:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {text!r} is not an address or CIDR range") from None
    return out


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("["):  # [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        addr = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def address_key(text: str) -> str:
    """The rate-limit key of an address as text (see the module comment)."""
    addr = _parse(text)
    if addr is None:
        return text.strip()[:64] or UNKNOWN
    if isinstance(addr, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class ClientAddress:
    def __init__(self, trusted: Iterable[str] = ()):
        self.networks = parse_networks(trusted)
        self._keys: dict[str, str] = {}
        self._trusted: dict[str, bool] = {}

    def key(self, host: str) -> str:
        keys = self._keys
        k = keys.get(host)
        if k is None:
            if len(keys) >= _CACHE_MAX:
                keys.clear()
            k = keys[host] = address_key(host)
        return k

    def trusted(self, host: str) -> bool:
        cache = self._trusted
        hit = cache.get(host)
        if hit is None:
            addr = _parse(host)
            hit = addr is not None and any(addr.version == n.version and addr in n for n in self.networks)
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[host] = hit
        return hit

    def of(self, peer: Any, forwarded: bytes | None) -> str:
        """The key of the client: `peer` is the socket's peername (or None), `forwarded` the raw
        X-Forwarded-For header value (or None)."""
        if not peer:
            return UNKNOWN
        host = peer[0]
        if forwarded is None or not self.networks or not self.trusted(host):
            k = self._keys.get(host)  # the common case: one lookup, no call
            return k if k is not None else self.key(host)
        entries = [e.strip() for e in forwarded.decode("latin-1").split(",")]
        entries = [e for e in entries if e]
        if not entries:
            return self.key(host)
        for entry in reversed(entries):
            if not self.trusted(entry):
                return self.key(entry)
        return self.key(entries[0])
