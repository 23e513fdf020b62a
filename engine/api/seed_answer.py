"""The answers of the seed's /get (SPEC 4.1), made a slice at a time: the JSON `{"items": [...]}` body and the
history of its SSE form. Parameters, auth and the storages are settled before (engine/api/seedstore.py).

What must stay true:
- the work and the memory of one slice are bounded whatever the storages hold: at most `budget` bytes of items
  (plus one item) and at most SCAN_SLOTS slots examined, so a large answer is streamed (engine/http/paced.py)
  and a filter that excludes nearly everything still yields the loop;
- items go out in append order, each once per storage, and only those with seq <= the answer's `max_seq`; a
  cursor keeps its place by the last seq it passed, so a compaction of the collection's slots between two
  slices (engine/sync/collections.py) neither skips nor repeats an item;
- an item's stored JSON text is sent as it is, on one line, with U+2028/U+2029/U+0085 escaped; bytes that are
  not strict JSON (not UTF-8, NaN, Infinity, a duplicate name) go as "base64".
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Callable

from ..jsontext import dumps, escape_separators
from ..names import encode_content_hash, encode_seq
from ..sync.canonical import loads_strict

SCAN_SLOTS = 8192  # slots examined per slice, at most (one contains_many call per batch)


@dataclass(slots=True)
class Target:
    id: str
    user: str
    dir: str
    filter: Any = None  # a BloomFilter, or None
    hashes: list[bytes] | None = None
    coll: Any = None
    raw: Any = None  # the request's own spec (filter text, hashes), to merge repeats before decoding


def item_json(ident: str, digest: bytes, value: bytes) -> bytes:
    """`{"id", "hash", "value"}` with the stored JSON text inline; bytes that are not strict JSON go as "base64"."""
    head = b'{"id":' + dumps(ident).encode("utf-8") + b',"hash":"' + encode_content_hash(digest).encode() + b'"'
    try:
        text = value.decode("utf-8")
        loads_strict(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return head + b',"base64":"' + base64.b64encode(value) + b'"}'
    # valid strict JSON holds CR, LF and TAB only as whitespace between tokens (never raw in a string): dropping
    # them keeps the value and puts it on one line
    if "\n" in text or "\r" in text or "\t" in text:
        text = text.replace("\n", "").replace("\r", "").replace("\t", "")
    return head + b',"value":' + escape_separators(text.strip(" ")).encode("utf-8") + b"}"


class Cursor:
    """One target's items in append order, a batch at a time; resumes after compaction by its last seq."""

    __slots__ = ("t", "max_seq", "slot", "last_seq", "compactions", "hash_pos", "sent")

    def __init__(self, t: Target, max_seq: int):
        self.t = t
        self.max_seq = max_seq
        self.slot = 0
        self.last_seq = 0
        self.compactions = t.coll.compactions
        self.hash_pos = 0
        self.sent: set[bytes] | None = set() if t.hashes is not None else None

    def batch(self, limit: int) -> tuple[list[tuple[int, bytes]], bool]:
        """Up to `limit` slots examined: ([(seq, digest) to send], done)."""
        t, coll = self.t, self.t.coll
        if t.hashes is not None:
            out = []
            stop = min(len(t.hashes), self.hash_pos + limit)
            for h in t.hashes[self.hash_pos:stop]:
                slot = coll.slot_of_digest(h)
                if slot is None or h in self.sent:
                    continue
                seq = coll.seqs[slot]
                if 0 < seq <= self.max_seq:
                    self.sent.add(h)
                    out.append((seq, h))
            self.hash_pos = stop
            return out, stop >= len(t.hashes)
        seqs = coll.seqs
        if coll.compactions != self.compactions:  # slots moved down: back to just after the last seq passed
            self.compactions = coll.compactions
            i = min(self.slot, len(seqs)) - 1
            while i >= 0 and (seqs[i] == 0 or seqs[i] > self.last_seq):
                i -= 1
            self.slot = i + 1
        start = self.slot
        stop = min(len(seqs), start + limit)
        slots = []
        done = stop >= len(seqs)
        for s in range(start, stop):
            seq = seqs[s]
            if seq > self.max_seq:
                done = True
                stop = s
                break
            if seq:
                slots.append(s)
                self.last_seq = seq
        self.slot = stop
        digests = coll.digests
        picked = [(seqs[s], bytes(digests[s * 32:(s + 1) * 32])) for s in slots]
        if t.filter is not None and picked:
            present = t.filter.contains_many(b"".join(d for _, d in picked))
            picked = [p for p, hit in zip(picked, present) if not hit]
        return picked, done


class Producer:
    """Items of several targets, encoded by `encode(t, seq, digest, value)`, a slice of about `budget` bytes at a
    time. `count` items made so far; `limit` (or None) stops after that many."""

    def __init__(self, targets: list[Target], max_seq: int, encode: Callable[[Target, int, bytes, bytes], bytes],
                 limit: int | None = None):
        self.cursors = [Cursor(t, max_seq) for t in targets]
        self.encode = encode
        self.limit = limit
        self.count = 0
        self.last: tuple[int, str] | None = None  # (seq, user) of the last item made
        self.pending: list[tuple[int, bytes]] = []  # picked by the current cursor, not yet made (reversed)
        self.done = not self.cursors

    def slice(self, budget: int) -> list[bytes]:
        out: list[bytes] = []
        size = 0
        scanned = 0
        while size < budget:
            if self.limit is not None and self.count >= self.limit:
                self.cursors.clear()
                self.pending.clear()
                break
            if not self.pending:
                if not self.cursors or scanned >= SCAN_SLOTS:
                    break
                picked, finished = self.cursors[0].batch(1024)
                scanned += 1024
                self.pending = picked[::-1]
                if finished:
                    self.pending.insert(0, (-1, b""))  # popped last: the end of this cursor, after its items
                continue
            seq, digest = self.pending.pop()
            t = self.cursors[0].t
            if seq < 0:
                self.cursors.pop(0)
                continue
            try:
                value = t.coll.read(digest)
            except KeyError:
                continue  # deleted since the batch was picked
            data = self.encode(t, seq, digest, bytes(value))
            out.append(data)
            size += len(data)
            self.count += 1
            self.last = (seq, t.user)
        if self.limit is not None and self.count >= self.limit:
            self.cursors.clear()
            self.pending.clear()
        self.done = not self.cursors
        return out


def missing_digests(t: Target, max_seq: int) -> list[bytes]:
    """The digests of target t's items its filter (or hash list) selects, in append order, without their values."""
    cur = Cursor(t, max_seq)
    out: list[bytes] = []
    done = False
    while not done:
        picked, done = cur.batch(SCAN_SLOTS)
        out += [d for _, d in picked]
    return out


def sse_item_frame(t: Target, seq: int, digest: bytes, value: bytes) -> bytes:
    return (b"id: " + f"{encode_seq(seq)}.{t.user}".encode() + b"\nevent: item\ndata: "
            + item_json(t.id, digest, value) + b"\n\n")


def json_item(t: Target, seq: int, digest: bytes, value: bytes) -> bytes:
    return item_json(t.id, digest, value)


class JsonItems:
    """`{"items":[...]}` as consecutive pieces: `piece(budget)` -> (bytes, done)."""

    def __init__(self, producer: Producer):
        self.producer = producer
        self.started = False
        self.first = True

    def piece(self, budget: int) -> tuple[bytes, bool]:
        parts: list[bytes] = []
        if not self.started:
            self.started = True
            parts.append(b'{"items":[')
        items = self.producer.slice(budget)
        if items:
            parts.append((b"" if self.first else b",") + b",".join(items))
            self.first = False
        if self.producer.done:
            parts.append(b"]}")
            return b"".join(parts), True
        return b"".join(parts), False
