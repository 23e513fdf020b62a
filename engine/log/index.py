# engine/log/index.py: the sparse in-memory index of one segment, seq -> byte offset every N records.
#
# What it is for: starting a read at a seq without walking the whole segment, and cutting replay into large raw
# slices at known record boundaries without decoding records.
# Invariants:
# - entries are (seq, offset) of record starts, strictly increasing in both; the first record of a segment is
#   always an entry;
# - it is rebuilt from the segment at open and never trusted over the log: it only says where to start walking.

from __future__ import annotations

from array import array
from bisect import bisect_right

DEFAULT_INTERVAL = 256


class SparseIndex:
    __slots__ = ("seqs", "offsets", "interval", "_since")

    def __init__(self, interval: int = DEFAULT_INTERVAL):
        self.seqs = array("Q")
        self.offsets = array("Q")
        self.interval = interval
        self._since = 0  # records added since the last entry

    def note(self, seq: int, offset: int) -> None:
        """Called for every record appended or scanned, in order; keeps one entry every `interval` records."""
        if self._since == 0:
            self.seqs.append(seq)
            self.offsets.append(offset)
        self._since += 1
        if self._since >= self.interval:
            self._since = 0

    def floor(self, seq: int) -> tuple[int, int]:
        """(seq, offset) of the last entry with entry seq <= seq, or of the first entry; (0, 0) if empty."""
        if not self.seqs:
            return 0, 0
        i = bisect_right(self.seqs, seq) - 1
        if i < 0:
            i = 0
        return self.seqs[i], self.offsets[i]

    def entries_from(self, seq: int):
        """Index of the first entry usable to start at `seq` (the floor entry)."""
        i = bisect_right(self.seqs, seq) - 1
        return max(i, 0)

    def __len__(self) -> int:
        return len(self.seqs)

    def clear(self) -> None:
        del self.seqs[:]
        del self.offsets[:]
        self._since = 0
