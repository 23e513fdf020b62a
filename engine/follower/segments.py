"""Feeds a Follower from segments another process writes: the shared log of `serve --workers N`.

The writer publishes its durable seq in a SharedCursor (engine/log/cursor.py); the feed reads records up to it
from a LogReader (engine/log/reader.py) and applies them. `fresh()` is the per-request check (read your
writes across processes: one 8-byte load, and a synchronous catch-up only when the writer is ahead);
`catch_up()` is also called when the writer announces a commit.

Invariants:
- nothing past the cursor's durable seq is read or applied;
- after the writer's retention rewrote segments (the cursor's `epoch` moved) or a writer restarted (its
  `generation` moved), the reader re-maps every segment and the index is rebuilt up to the applied seq before
  anything newer is applied, so no location into a removed or rewritten file survives;
- a follower that fell behind the writer's retention (its next seq is no longer in the history) rebuilds its
  index at the durable seq: the hub publishes nothing for the records it skipped (as for a slow subscriber,
  those are past retention) and a warning is logged.
"""

from __future__ import annotations

import logging
from typing import Any

from ..keyspace import Keyspace
from ..log.cursor import SharedCursor
from ..log.reader import LogReader
from .follower import Follower

log = logging.getLogger("homestream.follower")


class SegmentFeed:
    def __init__(self, reader: LogReader, keyspace: Keyspace, cursor: SharedCursor):
        self.reader = reader
        self.keyspace = keyspace
        self.cursor = cursor
        self.follower = Follower(reader, keyspace)
        self.epoch = -1
        self.generation = -1
        self.reloads_total = 0
        self.failures_total = 0
        self._durable = cursor.durable_seq

    @classmethod
    def open(cls, directory: str, cursor: SharedCursor) -> "SegmentFeed":
        """Map the segments and build the index up to the cursor's durable seq."""
        reader = LogReader(directory)
        keyspace = Keyspace()
        keyspace.log = reader
        feed = cls(reader, keyspace, cursor)
        feed._reload(cursor.read(), initial=True)
        return feed

    @property
    def applied(self) -> int:
        return self.reader.durable_seq

    def fresh(self) -> None:
        """Before answering a request: catch up if the writer made something durable that is not applied."""
        if self._durable() > self.reader.durable_seq:
            try:
                self.catch_up()
            except Exception:  # a read that fails here must not take the request (or the loop) down
                self.failures_total += 1
                log.exception("follower: catching up to the writer's durable seq failed; will retry")

    def catch_up(self) -> int:
        state = self.cursor.read()
        if state.epoch != self.epoch or state.generation != self.generation:
            self._reload(state)
        self.reader._first_seq = max(self.reader._first_seq, state.first_seq) if state.first_seq else 1
        if state.durable_seq > self.reader.durable_seq:
            records = self.reader.advance(state.durable_seq)
            if records:
                self.follower.apply(records)
        return self.reader.durable_seq

    def _reload(self, state: Any, initial: bool = False) -> None:
        applied = self.reader.durable_seq
        target = applied
        if initial or applied + 1 < state.first_seq:
            if not initial:
                log.warning("follower: applied seq %d is behind the writer's retention (history starts at %d): "
                            "rebuilding the index at %d", applied, state.first_seq, state.durable_seq)
            target = state.durable_seq
        self.keyspace.rebuild(lambda visit: self.reader.load(target, state.first_seq or 1, visit))
        self.epoch = state.epoch
        self.generation = state.generation
        if not initial:
            self.reloads_total += 1
        if target > applied:
            self.follower.jump(self.reader.durable_seq)
