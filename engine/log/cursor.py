# engine/log/cursor.py: the writer's durable cursor, published in a small shared file that readers map.
#
# What it is for: the one process that appends to a log (engine/workers/writer.py) tells every process that
# reads its segments (engine/log/reader.py through engine/follower/) how far the log is durable, where the stream
# history starts, and when retention rewrote segments: Kafka's high-water mark, as 64 bytes of shared memory.
#
# Layout (little-endian u64 fields, one 4 KiB file, mapped shared):
#
#   off  field
#     0  magic        CURSOR_MAGIC
#     8  version      seqlock: odd while the writer is changing the fields below, +2 per publish
#    16  durable_seq  every record with seq <= it is durable and whole in the segments
#    24  first_seq    first seq of the stream history (retention moves it)
#    32  epoch        +1 each time retention rewrote or removed segments: readers must re-map
#    40  generation   +1 each time a writer starts (a restarted writer recovered the log)
#    48  writer_pid   pid of the writer that published last (0: none up)
#    56  (supervisor counters, written by the supervisor only; see engine/workers/supervisor.py)
#
# Invariants: only the writer writes [8, 56), only the supervisor writes [56, 128); `durable_seq` only grows
# within one generation and never passes what the writer made durable; a reader that sees `version` odd or
# changed across its read retries (the fields are read as one consistent snapshot).

from __future__ import annotations

import mmap
import os
import struct
from typing import NamedTuple

CURSOR_MAGIC = 0x31525543534D4848  # "HHMSCUR1"
FILE_BYTES = 4096
_HEAD = struct.Struct("<QQQQQQQ")  # magic .. writer_pid
_U64 = struct.Struct("<Q")
DURABLE_OFFSET = 16
SUPERVISOR_OFFSET = 56
SUPERVISOR_SLOTS = 8  # u64 counters the supervisor may publish


class CursorState(NamedTuple):
    durable_seq: int
    first_seq: int
    epoch: int
    generation: int
    writer_pid: int


class SharedCursor:
    """The mapped cursor file. `create(path)` makes (or resets) it; `attach(path)` maps an existing one."""

    def __init__(self, path: str, fd: int):
        self.path = path
        self._fd = fd
        self.mm = mmap.mmap(fd, FILE_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    @classmethod
    def create(cls, path: str) -> "SharedCursor":
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.ftruncate(fd, FILE_BYTES)
        cur = cls(path, fd)
        if _U64.unpack_from(cur.mm, 0)[0] != CURSOR_MAGIC:
            cur.mm[:FILE_BYTES] = bytes(FILE_BYTES)
            _U64.pack_into(cur.mm, 0, CURSOR_MAGIC)
        return cur

    @classmethod
    def attach(cls, path: str) -> "SharedCursor":
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        cur = cls(path, fd)
        if _U64.unpack_from(cur.mm, 0)[0] != CURSOR_MAGIC:
            cur.close()
            raise ValueError(f"{path} is not a homestream cursor file")
        return cur

    # ---- the writer ----

    def publish(self, durable_seq: int, first_seq: int, *, epoch: int | None = None,
                generation: int | None = None, writer_pid: int | None = None) -> None:
        mm = self.mm
        version, _d, _f, old_epoch, old_gen, old_pid = struct.unpack_from("<QQQQQQ", mm, 8)
        _U64.pack_into(mm, 8, version + 1)
        struct.pack_into("<QQQQQ", mm, 16, durable_seq, first_seq,
                         old_epoch if epoch is None else epoch,
                         old_gen if generation is None else generation,
                         old_pid if writer_pid is None else writer_pid)
        _U64.pack_into(mm, 8, version + 2)

    # ---- readers ----

    def durable_seq(self) -> int:
        """The durable seq alone (one aligned 8-byte load): the per-request check of a follower."""
        return _U64.unpack_from(self.mm, DURABLE_OFFSET)[0]

    def read(self) -> CursorState:
        mm = self.mm
        for _ in range(10000):
            v1 = _U64.unpack_from(mm, 8)[0]
            if v1 & 1:
                continue
            state = CursorState(*struct.unpack_from("<QQQQQ", mm, 16))
            if _U64.unpack_from(mm, 8)[0] == v1:
                return state
        return CursorState(*struct.unpack_from("<QQQQQ", mm, 16))  # a writer killed mid-publish: take it as is

    # ---- the supervisor's counters ----

    def set_counter(self, slot: int, value: int) -> None:
        if not 0 <= slot < SUPERVISOR_SLOTS:
            raise IndexError(slot)
        _U64.pack_into(self.mm, SUPERVISOR_OFFSET + 8 * slot, value)

    def counter(self, slot: int) -> int:
        if not 0 <= slot < SUPERVISOR_SLOTS:
            raise IndexError(slot)
        return _U64.unpack_from(self.mm, SUPERVISOR_OFFSET + 8 * slot)[0]

    def close(self) -> None:
        try:
            self.mm.close()
        finally:
            os.close(self._fd)
