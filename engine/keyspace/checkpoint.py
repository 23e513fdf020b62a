# engine/keyspace/checkpoint.py: a checkpoint of the key index, so that a restart reads only the records written
# after it (issue 18 item 6). The log always wins: the checkpoint is a shortcut that is checked, never trusted.
#
# File `checkpoint.bin` in the log directory, written atomically (temp, fsync, rename, fsync dir):
#
#   b"HSCKPT1\n" | u64 header length | header (marshal) | chunks | u32 0 | BLAKE3-256 of everything before
#   header: {"format": 2, "log_id", "seq", "first_seq", "written_at", "segments": [SegmentState tuples],
#            "ids": [segment id of each], "sections": {name: bytes}}  (sections: a hook, see below)
#   chunk:  u32 length | marshal([user bytes, {path bytes: location}]), at most CHUNK_KEYS keys
#
# Locations are stored as the writing process had them (segment id << 40 | offset), with the segment ids in
# "ids". At open the log checks the segments (engine/log/trusted.py) and, when none of those ids was used yet in
# this process (always so in a server that just started), gives the segments those same ids: the locations are
# then loaded as they are. Otherwise they are remapped to the new ids (a pass over every key).
#
# Invariants:
# - a checkpoint describes the index after exactly the records up to "seq", all durable before it was written;
# - it is used only if its checksum, its log id (the `log-id` file of this directory) and every segment it names
#   check out; torn, foreign or stale-beyond-use checkpoints are ignored with one log line, and the index is
#   rebuilt from the whole log. A checkpoint older than the log's tail is fine: the records after its seq are
#   scanned and applied (deletes included) like at any open;
# - it is written off the loop: the loop only copies each user's dict (one C-level copy per user) and records
#   the writes made meanwhile (a keyspace listener); a worker thread applies those, serialises and writes;
# - no retention pass may run while a checkpoint is taken (retention moves keys without the listener): the
#   server runs both from one maintenance task.
#
# Sync collection sketches are not kept here: they are built lazily on first use (engine/sync/collections.py),
# so a restart does not pay for them. `SECTIONS` is the hook for other state (a user table): a provider registers
# (dump() -> bytes on the worker, load(bytes) at open); a checkpoint whose section fails to load is ignored.

from __future__ import annotations

import asyncio
import itertools
import logging
import marshal
import os
import struct
import time
import uuid
from typing import Callable

import blake3

from engine.log import segment as _seg
from engine.log.record import PUT
from engine.log.trusted import SegmentState, state_of

logger = logging.getLogger("homestream.checkpoint")

FILE_NAME = "checkpoint.bin"
LOG_ID_NAME = "log-id"
MAGIC = b"HSCKPT1\n"
FORMAT = 2
CHUNK_KEYS = 65536
LOC_SHIFT = 40
LOC_MASK = (1 << LOC_SHIFT) - 1
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")

# name -> (dump() -> bytes, load(bytes) -> None): other state saved with the index (see the module comment)
SECTIONS: dict[str, tuple[Callable[[], bytes], Callable[[bytes], None]]] = {}


def log_id(directory: str) -> str:
    """This log directory's identity (the `log-id` file, made at the first checkpoint)."""
    path = os.path.join(directory, LOG_ID_NAME)
    try:
        with open(path, "r", encoding="ascii") as fh:
            value = fh.read().strip()
        if value:
            return value
    except (OSError, UnicodeDecodeError):
        pass
    value = uuid.uuid4().hex
    _seg.write_file_atomic(path, [value.encode("ascii") + b"\n"])
    return value


def _read_log_id(directory: str) -> str | None:
    try:
        with open(os.path.join(directory, LOG_ID_NAME), "r", encoding="ascii") as fh:
            return fh.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


# ---------------------------------------------------------------- loading

class Trusted:
    """A checkpoint read and checksummed, offered to Log recovery (`Log.open(..., trusted=)`): the log calls
    accept(segment ids) when its segments still match, or reject(reason)."""

    def __init__(self, path: str, header: dict, chunks: list[bytes], users: dict):
        self.path = path
        self.seq = header["seq"]
        self.first_seq = header["first_seq"]
        self.states = [SegmentState(*s) for s in header["segments"]]
        self.ids = list(header["ids"])
        self.sections = header.get("sections") or {}
        self._chunks = chunks
        self._users = users
        self.used = False
        self.reason: str | None = None

    def accept(self, ids: list[int]) -> None:
        """The log's segments match; `ids` are their ids now (the checkpoint's own when the log could adopt them)."""
        users = self._users
        remap = None if ids == self.ids else dict(zip(self.ids, ids))
        for blob in self._chunks:
            user_b, keys = marshal.loads(blob)
            if remap is not None:
                keys = {p: (remap[loc >> LOC_SHIFT] << LOC_SHIFT) | (loc & LOC_MASK) for p, loc in keys.items()}
            d = users.get(user_b)
            if d is None:
                users[user_b] = keys
            else:
                d.update(keys)
        self._chunks = []
        for name, blob in self.sections.items():
            if name in SECTIONS:
                SECTIONS[name][1](blob)
        self.used = True
        logger.info("checkpoint %s used: index at seq %d; scanning only the records after it", self.path, self.seq)

    def reject(self, reason: str) -> None:
        self.reason = reason
        self._chunks = []
        logger.warning("checkpoint %s ignored: %s; rebuilding the key index from the whole log", self.path, reason)


def load(directory: str, users: dict) -> Trusted | None:
    """The directory's checkpoint if it is whole and of this log (else None, with a log line). Keys are put into
    `users` only when the log accepts it."""
    path = os.path.join(directory, FILE_NAME)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("checkpoint %s ignored: cannot read it (%s)", path, exc)
        return None
    try:
        header, chunks = _parse(data)
    except ValueError as exc:
        logger.warning("checkpoint %s ignored: %s; rebuilding the key index from the whole log", path, exc)
        return None
    mine = _read_log_id(directory)
    if header.get("log_id") != mine:
        logger.warning("checkpoint %s ignored: it belongs to another log (log id %s, this log's %s); rebuilding "
                       "the key index from the whole log", path, header.get("log_id"), mine)
        return None
    return Trusted(path, header, chunks, users)


def _parse(data: bytes) -> tuple[dict, list[bytes]]:
    if len(data) < len(MAGIC) + 8 + 4 + 32 or not data.startswith(MAGIC):
        raise ValueError("not a checkpoint (torn or foreign file)")
    body, digest = data[:-32], data[-32:]
    if blake3.blake3(body).digest() != digest:
        raise ValueError("checksum mismatch (torn or damaged)")
    mv = memoryview(body)
    p = len(MAGIC)
    (hlen,) = _U64.unpack_from(mv, p)
    p += 8
    header = marshal.loads(mv[p:p + hlen])
    p += hlen
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError("unknown checkpoint format")
    chunks = []
    while True:
        (n,) = _U32.unpack_from(mv, p)
        p += 4
        if n == 0:
            break
        chunks.append(bytes(mv[p:p + n]))
        p += n
    if p != len(body):
        raise ValueError("trailing bytes")
    return header, chunks


# ---------------------------------------------------------------- writing

class CheckpointWriter:
    """Takes one checkpoint of a Keyspace: `await w.run()` on the loop (copies per user, worker thread for the
    rest) or `w.run_sync()`. Result: {"seq", "keys", "bytes", "seconds", "longest_loop_step"}."""

    def __init__(self, keyspace):
        self.ks = keyspace
        self.longest_step = 0.0

    def run_sync(self) -> dict:
        gen = self._steps()
        value = None
        while True:
            try:
                step = gen.send(value)
            except StopIteration as stop:
                return stop.value
            value = step() if step is not None else None

    async def run(self) -> dict:
        gen = self._steps()
        value = None
        while True:
            t0 = time.perf_counter()
            try:
                step = gen.send(value)
            except StopIteration as stop:
                return stop.value
            finally:
                self.longest_step = max(self.longest_step, time.perf_counter() - t0)
            if step is None:
                value = None
                await asyncio.sleep(0)
            else:
                value = await asyncio.to_thread(step)

    def _steps(self):
        ks = self.ks
        log = ks.log
        t0 = time.perf_counter()
        changes: list = []

        def listener(kind, user, path, rec):
            changes.append((user.encode("ascii"), path.encode("utf-8"), rec.loc if kind == PUT else None))

        # the state at seq S = (each key's value read at some moment after the listener started) + (every write
        # the listener saw up to S, applied in order): a key written after its read is fixed by its later write
        ks.add_listener(listener)
        try:
            keys: list = []
            for user_b in list(ks._users):
                d = ks._users.get(user_b)
                if d is not None:
                    keys.append((user_b, d, list(d)))  # one C-level copy of one user's key list
                yield None
            copies = yield lambda: _read_values(keys)
        finally:
            ks.remove_listener(listener)
        seq = log.last_seq
        segs = [(s, s.used, s.count, s.last_seq, s.last_ts) for s in log._segments]
        first_seq = log.first_seq
        directory = log.directory
        result = yield lambda: self._write(directory, log, seq, first_seq, segs, copies, changes)
        result["seconds"] = round(time.perf_counter() - t0, 3)
        return result

    def _write(self, directory, log, seq, first_seq, segs, copies, changes) -> dict:
        """Worker thread: wait until `seq` is durable, apply the writes made during the copy, write the file."""
        if seq and not log.wait_durable_sync(seq, timeout=60):
            raise TimeoutError(f"seq {seq} not durable after 60 s")
        for user_b, path_b, loc in changes:
            d = copies.get(user_b)
            if loc is None:
                if d is not None:
                    d.pop(path_b, None)
            else:
                if d is None:
                    d = copies[user_b] = {}
                d[path_b] = loc
        states = [tuple(state_of(s, used, count, last, ts)) for s, used, count, last, ts in segs]
        header = {"format": FORMAT, "log_id": log_id(directory), "seq": seq, "first_seq": first_seq,
                  "written_at": int(time.time()), "segments": states, "ids": [s.id for s, *_r in segs],
                  "sections": {name: dump() for name, (dump, _load) in SECTIONS.items()}}
        h = blake3.blake3()
        hb = marshal.dumps(header)
        parts = [MAGIC, _U64.pack(len(hb)), hb]
        keys = 0
        for user_b, d in copies.items():
            if not d:
                continue
            keys += len(d)
            it = iter(d.items())  # d is this thread's own copy: nothing changes it while we iterate
            while True:
                chunk = dict(itertools.islice(it, CHUNK_KEYS))
                if not chunk:
                    break
                blob = marshal.dumps([user_b, chunk])
                parts += (_U32.pack(len(blob)), blob)
        parts.append(_U32.pack(0))
        for part in parts:
            h.update(part)
        parts.append(h.digest())
        _seg.write_file_atomic(os.path.join(directory, FILE_NAME), parts)
        copies.clear()  # freed here, not on the loop
        changes.clear()
        return {"seq": seq, "keys": keys, "bytes": sum(len(p) for p in parts)}


def _read_values(keys: list) -> dict:
    """Worker thread: {user: {path: location}} for the listed keys still in the index (dict.get is atomic)."""
    copies: dict = {}
    for user_b, d, paths in keys:
        get = d.get
        copies[user_b] = {p: loc for p in paths if (loc := get(p)) is not None}
    keys.clear()  # freed here, not on the loop (a million references take milliseconds to drop)
    return copies


def remove(directory: str) -> None:
    _seg.remove(os.path.join(directory, FILE_NAME))


__all__ = ["CheckpointWriter", "Trusted", "load", "log_id", "remove", "SECTIONS", "FILE_NAME"]
