# engine/log/record.py: the binary framing of one log record, as pure functions over buffers.
#
# What it is for: turning a write (PUT or DEL of <user><path>) into the bytes stored in a segment, and back.
# Nothing here touches a file; every function works on bytes, bytearray, memoryview or an mmap.
#
# Layout (little-endian, fixed 120-byte header, then three variable fields):
#
#   off  size  field
#     0     4  length      u32  total bytes of this record, header included (>= HEADER_SIZE)
#     4     4  crc         u32  CRC32C (Castagnoli) of bytes [8, length) of the record
#     8     1  magic       u8   MAGIC (0xB1: format version 1); anything else is a bad record
#     9     1  kind        u8   PUT = 1, DEL = 2
#    10     2  path_len    u16  bytes of the UTF-8 path
#    12     2  ctype_len   u16  bytes of the content type (0 for DEL)
#    14     2  flags       u16  MAGIC: reserved, 0.  MAGIC_V2: ext_len, bytes of the extension block
#    16     8  seq         u64  sequence number, >= 1
#    24     8  ts          u64  unix milliseconds at append
#    32     4  value_len   u32  bytes of the value (0 for DEL); length == 120 + path_len + ctype_len + value_len
#    36    52  user        z-base-32 user id, ASCII
#    88    32  digest      BLAKE3-256 of the value (32 zero bytes for DEL)
#   120     .  path, content type, value, then (MAGIC_V2 only) the extension block of ext_len bytes
#
# Version 2 (MAGIC_V2 = 0xB2) is version 1 plus an opaque extension block after the value, so that every reader
# that finds the value at 120 + path_len + ctype_len and steps by `length` reads both versions unchanged; only
# the validators (`check`, `framing_ok`, the recovery scanner) know that length == 120 + path_len + ctype_len +
# value_len + ext_len there. Version 2 also allows the kind GAP (3). The relay (engine/relay/) is its only
# writer; a homeserver's log holds version 1 records only. `Record.ext` is the block (b"" for version 1).
#
# Invariants:
# - a record whose length, magic, kind, field lengths or CRC do not agree is never decoded as valid;
# - a length field of 0 is the end of the data in a segment (segments are pre-allocated with zeros);
# - records are written whole, CRC last, so a torn write fails its CRC.
#
# WARNING: the record format and the recovery scanner (store.py `_scan`, recovery.py and `decode_records` below)
# must change together. A new layout needs a new MAGIC, and the scanner must keep reading the old one.

from __future__ import annotations

import struct
from typing import Iterator

from engine.native.hashing import crc32c
from engine.kinds import DEL, GAP, KIND_NAMES, KINDS, KINDS_V2, PUT  # noqa: F401  (re-exported: the record's kinds)

MAGIC = 0xB1
MAGIC_V2 = 0xB2
MAX_EXT_LEN = 0xFFFF
HEADER = struct.Struct("<IIBBHHHQQI52s32s")
HEADER_SIZE = HEADER.size  # 120
assert HEADER_SIZE == 120
# The first 36 bytes (everything before the user id), for scanners that need no bytes objects.
PREFIX = struct.Struct("<IIBBHHHQQI")
PREFIX_SIZE = PREFIX.size  # 36
LEN_CRC = struct.Struct("<II")
U32 = struct.Struct("<I")
USER_OFFSET = 36
USER_SIZE = 52
DIGEST_OFFSET = 88
DIGEST_SIZE = 32
BODY_OFFSET = 120
MAX_PATH_LEN = 0xFFFF
MAX_CTYPE_LEN = 0xFFFF
MAX_RECORD_LEN = 0xFFFFFFFF
_ZERO_DIGEST = bytes(32)


class Record:
    """One decoded log record. `value` may be a memoryview into a segment's mmap (see store.py on lifetime).

    `loc` is the record's packed location in the log (store.py: segment id << 40 | offset), or None before it
    is written; it is what the key index keeps.
    """

    __slots__ = ("seq", "ts", "kind", "user", "path", "digest", "content_type", "value", "loc", "ext")

    def __init__(self, seq: int, ts: int, kind: int, user: str, path: str, digest: bytes = b"",
                 content_type: str = "", value: bytes | memoryview = b"", loc: int | None = None,
                 ext: bytes | memoryview = b""):
        self.seq = seq
        self.ts = ts
        self.kind = kind
        self.user = user
        self.path = path
        self.digest = digest
        self.content_type = content_type
        self.value = value
        self.loc = loc
        self.ext = ext

    @property
    def size(self) -> int:
        return len(self.value)

    def __repr__(self) -> str:
        return (f"Record(seq={self.seq}, ts={self.ts}, kind={KIND_NAMES.get(self.kind, self.kind)}, "
                f"user={self.user!r}, path={self.path!r}, size={self.size})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (self.seq, self.ts, self.kind, self.user, self.path, bytes(self.digest), self.content_type,
                bytes(self.value), bytes(self.ext)) == (other.seq, other.ts, other.kind, other.user, other.path,
                                                        bytes(other.digest), other.content_type,
                                                        bytes(other.value), bytes(other.ext))

    __hash__ = None  # type: ignore[assignment]


class BadRecord(ValueError):
    """A buffer that does not hold a valid record at the given offset (torn, corrupt, or not a record)."""

    def __init__(self, offset: int, reason: str):
        super().__init__(f"bad record at offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason


def encoded_size(path_b: bytes, ctype_b: bytes, value_len: int, ext_len: int = 0) -> int:
    return HEADER_SIZE + len(path_b) + len(ctype_b) + value_len + ext_len


def framing_ok(magic: int, kind: int, plen: int, clen: int, flags: int, vlen: int, length: int) -> bool:
    """Do a header's magic, kind and field lengths agree with its length, in either version? (no CRC)"""
    if magic == MAGIC:
        return kind in KINDS and HEADER_SIZE + plen + clen + vlen == length
    if magic == MAGIC_V2:
        return kind in KINDS_V2 and HEADER_SIZE + plen + clen + vlen + flags == length
    return False


def ext_of(buf, off: int, length: int, magic: int, flags: int):
    """The extension block of the record at `off` (b"" for version 1), as a slice of `buf`."""
    if magic != MAGIC_V2 or not flags:
        return b""
    return buf[off + length - flags:off + length]


def encode_header(seq: int, ts: int, kind: int, user_b: bytes, path_b: bytes, digest: bytes, ctype_b: bytes,
                  value_len: int) -> bytes:
    """The header and variable fields before the value, with the CRC field still 0 (see `seal_crc`)."""
    length = HEADER_SIZE + len(path_b) + len(ctype_b) + value_len
    return HEADER.pack(length, 0, MAGIC, kind, len(path_b), len(ctype_b), 0, seq, ts, value_len, user_b,
                       digest or _ZERO_DIGEST) + path_b + ctype_b


def encode(seq: int, ts: int, kind: int, user: str, path: str, digest: bytes = b"", content_type: str = "",
           value: bytes | memoryview = b"", ext: bytes = b"") -> bytes:
    """The framed bytes of one record (version 2 when `ext` is given)."""
    if kind not in (KINDS_V2 if ext else KINDS):
        raise ValueError(f"unknown record kind {kind}")
    if len(ext) > MAX_EXT_LEN:
        raise ValueError("extension block too long for the record format")
    user_b = user.encode("ascii")
    if len(user_b) != USER_SIZE:
        raise ValueError("user id must be 52 ASCII characters")
    if digest and len(digest) != DIGEST_SIZE:
        raise ValueError("digest must be 32 bytes")
    path_b = path.encode("utf-8")
    ctype_b = content_type.encode("utf-8")
    if len(path_b) > MAX_PATH_LEN or len(ctype_b) > MAX_CTYPE_LEN:
        raise ValueError("path or content type too long for the record format")
    head = encode_header(seq, ts, kind, user_b, path_b, digest, ctype_b, len(value))
    if ext:
        head = HEADER.pack(len(head) + len(value) + len(ext), 0, MAGIC_V2, kind, len(path_b), len(ctype_b),
                           len(ext), seq, ts, len(value), user_b, digest or _ZERO_DIGEST) + path_b + ctype_b
    body = head + bytes(value) + bytes(ext)
    crc = crc32c(memoryview(body)[8:])
    return body[:4] + U32.pack(crc) + body[8:]


def check(buf, off: int = 0, end: int | None = None) -> int:
    """Validate the record at `off` (not past `end`); return its length or raise BadRecord."""
    if end is None:
        end = len(buf)
    if end - off < PREFIX_SIZE:
        raise BadRecord(off, "truncated header")
    length, crc, magic, kind, plen, clen, flags, seq, _ts, vlen = PREFIX.unpack_from(buf, off)
    if length == 0:
        raise BadRecord(off, "zero length (end of data)")
    if magic not in (MAGIC, MAGIC_V2):
        raise BadRecord(off, f"bad magic 0x{magic:02x}")
    if length < HEADER_SIZE or off + length > end:
        raise BadRecord(off, f"length {length} out of bounds")
    if kind not in (KINDS if magic == MAGIC else KINDS_V2):
        raise BadRecord(off, f"unknown kind {kind}")
    if not framing_ok(magic, kind, plen, clen, flags, vlen, length):
        raise BadRecord(off, "field lengths do not add up to the record length")
    if crc32c(memoryview(buf)[off + 8:off + length]) != crc:
        raise BadRecord(off, "CRC mismatch")
    return length


def decode_at(buf, off: int = 0, *, verify: bool = True, copy: bool = False) -> tuple[Record, int]:
    """Decode the record at `off`: (Record, length). Value is a memoryview into `buf` unless `copy`."""
    if verify:
        check(buf, off)
    (length, _crc, magic, kind, plen, clen, flags, seq, ts, vlen, user_b, digest) = HEADER.unpack_from(buf, off)
    p = off + BODY_OFFSET
    mv = memoryview(buf)
    path = str(mv[p:p + plen], "utf-8")
    p += plen
    ctype = str(mv[p:p + clen], "utf-8")
    p += clen
    value = bytes(mv[p:p + vlen]) if copy else mv[p:p + vlen]
    if kind == DEL:
        digest = b""
    ext = ext_of(mv, off, length, magic, flags)
    return Record(seq, ts, kind, user_b.decode("ascii"), path, digest, ctype, value,
                  ext=bytes(ext) if copy else ext), length


def decode(data, *, copy: bool = True) -> Record:
    """Decode exactly one record from `data` (verifying it)."""
    rec, length = decode_at(data, 0, copy=copy)
    if length != len(data):
        raise BadRecord(length, "trailing bytes after the record")
    return rec


def decode_records(buffer, *, verify: bool = False, copy: bool = False) -> Iterator[Record]:
    """Iterate the records of a raw slice of consecutive framed records (as `Log.read_raw` yields).

    A length of 0 ends the iteration (zero padding). With `verify`, every CRC is checked (BadRecord otherwise).
    """
    mv = memoryview(buffer)
    n = len(mv)
    off = 0
    unpack = HEADER.unpack_from
    while off + PREFIX_SIZE <= n:
        if verify and U32.unpack_from(mv, off)[0] != 0:
            check(mv, off, n)
        (length, _crc, magic, kind, plen, clen, flags, seq, ts, vlen, user_b, digest) = unpack(mv, off)
        if length == 0:
            return
        if length < HEADER_SIZE or off + length > n:
            raise BadRecord(off, f"length {length} out of bounds")
        p = off + BODY_OFFSET
        path = str(mv[p:p + plen], "utf-8")
        p += plen
        ctype = str(mv[p:p + clen], "utf-8")
        p += clen
        value = bytes(mv[p:p + vlen]) if copy else mv[p:p + vlen]
        rec = Record(seq, ts, kind, user_b.decode("ascii"), path, b"" if kind == DEL else digest, ctype, value)
        if magic == MAGIC_V2:
            ext = ext_of(mv, off, length, magic, flags)
            rec.ext = bytes(ext) if copy else ext
        yield rec
        off += length
