"""Followers: processes that apply a log's records, in seq order, to their own key index and hub.

A worker of `serve --workers N`, a cluster replica and a relay are all followers. The shared part:

    Follower(log, keyspace)                    engine/follower/follower.py
        log       the Log read interface (read_from, read_raw, read_at, header_at, value_at, first_seq, ...)
                  plus a writable `durable_seq` (the applied seq) and `notify(records)` (calls the commit
                  listeners, batches in seq order even when re-entered): engine.log.reader.LogReader has both
        keyspace  an engine.keyspace.Keyspace whose `.log` is that log (its listeners, e.g. the sync
                  collections, are called by Keyspace.apply exactly as by put/delete)
        apply(records) -> int   records in seq order, each readable at its `loc` through `log`; those at or
                                below `applied` are dropped; index first, then log.durable_seq, then notify
                                (the server releases waiting responses, the hub publishes)
        jump(seq)               take seq as applied with nothing to publish (after Keyspace.rebuild)
        applied                 the last seq applied

    SegmentFeed(reader, keyspace, cursor)      engine/follower/segments.py: the feed of a worker
        SegmentFeed.open(directory, cursor)     map the segments, build the index up to the cursor's durable seq
        fresh()                 per request: one 8-byte load; catch up only if the writer is ahead
        catch_up() -> int       read and apply up to the SharedCursor's durable seq; re-map and rebuild the
                                index first when the writer's retention epoch or generation moved

A feed for another source (JetStream, an upstream's stream) makes Records readable through its log and calls
`Follower.apply`; nothing above engine/log/ needs to know where they came from.
"""

from .follower import Follower
from .segments import SegmentFeed

__all__ = ["Follower", "SegmentFeed"]
