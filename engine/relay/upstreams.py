"""The relay's upstream list (SPEC 5.4) from `--upstream NAME=URL` flags, `HOMESTREAM_UPSTREAM=a=URL,b=URL` or a
TOML `[[upstream]]` list of tables with `name`, `url` and optional `kind`. Pure: parsing and checking only.

Invariants: names are unique, 1-64 characters of `[A-Za-z0-9_.-]` starting with a letter or digit (they are
written into every record and label every metric); URLs are http(s) with a host and no query; `kind` is
"homestream", "pubky" or None (detected when the relay starts following it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

KINDS = ("homestream", "pubky")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True)
class UpstreamSpec:
    name: str
    url: str  # without a trailing '/'
    kind: str | None = None


def parse_upstream(entry: Any) -> UpstreamSpec:
    """One entry: "NAME=URL" text or a {"name", "url", "kind"} table; ValueError naming what is wrong."""
    if isinstance(entry, str):
        name, sep, url = entry.partition("=")
        if not sep:
            raise ValueError(f"upstream {entry!r}: expected NAME=URL")
        kind = None
    elif isinstance(entry, dict):
        unknown = set(entry) - {"name", "url", "kind"}
        if unknown:
            raise ValueError(f"upstream {entry!r}: unknown key(s) {', '.join(sorted(unknown))}")
        name, url, kind = entry.get("name"), entry.get("url"), entry.get("kind")
        if not isinstance(name, str) or not isinstance(url, str):
            raise ValueError(f"upstream {entry!r}: name and url are required strings")
    else:
        raise ValueError(f"upstream {entry!r}: expected NAME=URL or a table with name and url")
    name, url = name.strip(), url.strip()
    if not _NAME.match(name):
        raise ValueError(f"upstream name {name!r}: 1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"upstream {name}: {url!r} is not an http(s) URL of a server")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"upstream {name}: kind must be homestream or pubky, not {kind!r}")
    return UpstreamSpec(name, url.rstrip("/"), kind)


def parse_upstreams(entries: list[Any]) -> list[UpstreamSpec]:
    specs = [parse_upstream(e) for e in entries]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"upstream name {spec.name!r} is given twice")
        seen.add(spec.name)
    if not specs:
        raise ValueError("name at least one upstream: --upstream NAME=URL (or [[upstream]] in the TOML file)")
    return specs
