"""Joining at start: make this node's log a prefix of the stream before it serves anything.

A node may hold records the stream does not: a deposed origin's last writes (never acknowledged with
`--replication-ack cluster`; acknowledged, and now lost, with `local`), or records at seqs where the new origin
wrote others. `divergence` finds the newest seq at which this log and the stream agree, walking back from the end
they share while the stream holds other bytes there; the caller truncates the log after it (logging how many
records it drops). Records past the stream's end that conflict with nothing are kept only when no other node
holds the lease: this node may then take it and publish them.
Invariant: after a truncation to the returned seq, every record of this log is the stream's record at that seq
(as far as the stream still holds them).
"""

from __future__ import annotations

from typing import Any

MAX_WALK_BACK = 100_000


async def divergence(cluster: Any, log: Any, other_origin: bool) -> int | None:
    """The seq to truncate this log after, or None to keep every record."""
    first, last = await cluster.stream_state()
    local = log.last_seq
    keep = min(local, last)
    walked = 0
    while keep >= max(first, log.first_seq, 1):
        theirs = await cluster.record(keep)
        if theirs is None:
            break
        ours = b"".join(bytes(v) for _f, _l, v in log.read_raw(keep, until=keep))
        if theirs == ours:
            break
        keep -= 1
        walked += 1
        if walked > MAX_WALK_BACK:
            raise RuntimeError(f"this node's log and the stream disagree on more than {MAX_WALK_BACK} records: it "
                               "belongs to another cluster, or the stream was replaced; move its data directory away")
    if keep < min(local, last):
        return keep
    if local > last and other_origin:
        return last
    return None
