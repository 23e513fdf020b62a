"""The relay's cursor for each upstream, recovered from its log at start-up, and what retention must keep.

The cursor of an upstream is the Meta of its newest record (engine/relay/record.py), so recovery reads the log
from its newest segment back, looking only at each record's extension block, until every configured upstream has
been seen (an upstream with no record at all costs one pass over the log, once). Retention keeps each upstream's
newest record whatever its age (`is_live`), so a quiet upstream never loses its cursor.
Invariant: after a kill -9, `recover` returns for each upstream the newest record the log kept durable, which is
exactly what the relay's subscribers can have seen of it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ..log.record import MAGIC_V2, PREFIX
from .record import Meta, meta_name


def recover(log: Any, names: Iterable[str]) -> dict[str, tuple[int, Meta]]:
    """{upstream name: (relay seq, Meta) of its newest record} for the upstreams named (others found on the
    way are included too)."""
    wanted = set(names)
    found: dict[str, tuple[int, Meta]] = {}
    unpack = PREFIX.unpack_from
    for view in reversed(log.raw_segments()):
        newest: dict[str, tuple[int, Any]] = {}
        off, end = 0, len(view)
        while off + PREFIX.size <= end:
            length, _crc, magic, _kind, _p, _c, flags, seq, _ts, _v = unpack(view, off)
            if length == 0:
                break
            if magic == MAGIC_V2 and flags:
                ext = view[off + length - flags:off + length]
                newest[meta_name(ext)] = (seq, ext)
            off += length
        for name, (seq, ext) in newest.items():
            if name not in found:
                found[name] = (seq, Meta.decode(bytes(ext)))
        if wanted <= found.keys():
            break
    return found


def newest_records(followers: Iterable[Any]) -> Callable[[Any], bool]:
    """Retention's is_live: a record is kept while it is the newest of its upstream (`followers` is read at
    each call, so a list changed in place is followed)."""

    def is_live(record: Any) -> bool:
        return any(f.last_seq == record.seq for f in followers)

    return is_live
