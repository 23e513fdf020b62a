"""The one step that makes a record framed elsewhere part of this node: append its bytes to the log (same seq,
ts and CRC) and index it, telling the key index's listeners (the sync collections) as a local write would.

The hub hears of it from the log's commit listener once it is durable here, as for a local write, so a replica's
subscribers see it in seq order with the same SSE bytes as the origin's. This function is the seam where a
shared follower (ARCHITECTURE.md: workers, replicas and relays all follow a log) can take over.
Invariant: the log refuses a record that fails its CRC or does not carry the next seq, before anything changes.
"""

from __future__ import annotations

from typing import Any


def apply_record(keyspace: Any, data: bytes) -> Any:
    """Append and index one framed record; return the log's Record."""
    record = keyspace.log.append_framed(data)
    keyspace.apply(record)
    return record
