"""The binary wire format of POST /sync/<user><dir>/ (docs/SYNC.md "Wire format"), as pure functions.

Pure Python, shared by the server and the pure-Python client. What must stay true:
- every message starts with MAGIC + VERSION and ends with an 8-byte BLAKE3 tag of everything before it, so a
  truncated or altered body is refused (WireError -> 400) before anything else happens; the tag catches damage,
  it is not an authenticator (signatures are);
- decode(encode(x)) == x for every message; a decoder accepts nothing after the last field but the tag;
- symbols travel in the C core's wire form (csrc/riblt.h) and are only framed here (count + bytes): the server
  parses them with the C core, which rejects partial symbols; the count must then match.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import blake3

MAGIC = b"HSYN"
VERSION = 1
TAG_BYTES = 8
TOKEN_BYTES = 16
DIGEST_BYTES = 32

# request ops
OP_SKETCH, OP_MORE, OP_LIST, OP_FETCH = 1, 2, 3, 4
# response statuses
COMPLETE, MORE, SALT, RESTART, LIST, ITEMS = 0, 1, 2, 3, 4, 5
STATUS_NAMES = {COMPLETE: "complete", MORE: "more", SALT: "salt", RESTART: "restart", LIST: "list", ITEMS: "items"}

_U64 = struct.Struct("<Q")
_HEAD = struct.Struct("<4sBBQ")  # magic, version, op/status, salt
MAX_VARINT = (1 << 64) - 1


class WireError(ValueError):
    """A message that is not a valid sync message (the server answers 400)."""


def tag(data) -> bytes:
    return blake3.blake3(data).digest(TAG_BYTES)


def varint(n: int) -> bytes:
    if n < 0 or n > MAX_VARINT:
        raise ValueError(f"varint out of range: {n}")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class Reader:
    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf, pos: int, end: int):
        self.buf = buf
        self.pos = pos
        self.end = end

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > self.end:
            raise WireError("truncated message")
        view = self.buf[self.pos:self.pos + n]
        self.pos += n
        return view

    def u64(self) -> int:
        return _U64.unpack(self.take(8))[0]

    def varint(self) -> int:
        value = shift = 0
        buf = self.buf
        while True:
            if self.pos >= self.end:
                raise WireError("truncated varint")
            b = buf[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 63:
                raise WireError("varint longer than 64 bits")
        if value > MAX_VARINT:
            raise WireError("varint longer than 64 bits")
        return value

    def done(self) -> None:
        if self.pos != self.end:
            raise WireError(f"{self.end - self.pos} unexpected bytes before the tag")


def _open(data, kind: str) -> tuple[Reader, int, int]:
    """Check magic, version and tag; return (reader over the fields, op/status, salt)."""
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    if len(view) < _HEAD.size + 32 + 1 + TAG_BYTES:
        raise WireError(f"a sync {kind} is at least {_HEAD.size + 33 + TAG_BYTES} bytes, got {len(view)}")
    magic, version, code, salt = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise WireError(f"not a sync {kind} (bad magic)")
    if version != VERSION:
        raise WireError(f"unsupported sync wire version {version} (this server speaks {VERSION})")
    end = len(view) - TAG_BYTES
    if tag(view[:end]) != bytes(view[end:]):
        raise WireError(f"the sync {kind} fails its checksum (truncated or altered)")
    return Reader(view, _HEAD.size, end), code, salt


def _seal(parts: list[bytes]) -> bytes:
    body = b"".join(parts)
    return body + tag(body)


# ---- requests ----

@dataclass(slots=True)
class SyncRequest:
    op: int
    salt: int
    count: int  # client's item count
    set_hash: bytes  # client's set hash, 32 bytes
    symbols: bytes = b""  # OP_SKETCH / OP_MORE: wire symbols
    nsym: int = 0
    token: bytes = b""  # OP_MORE
    start: int = 0  # OP_MORE: index of the first symbol sent
    digests: list[bytes] = field(default_factory=list)  # OP_FETCH


def encode_request(req: SyncRequest) -> bytes:
    if len(req.set_hash) != 32:
        raise ValueError("set hash must be 32 bytes")
    parts = [_HEAD.pack(MAGIC, VERSION, req.op, req.salt), varint(req.count), bytes(req.set_hash)]
    if req.op == OP_SKETCH:
        parts += [varint(req.nsym), req.symbols]
    elif req.op == OP_MORE:
        if len(req.token) != TOKEN_BYTES:
            raise ValueError("a session token is 16 bytes")
        parts += [req.token, varint(req.start), varint(req.nsym), req.symbols]
    elif req.op == OP_FETCH:
        parts.append(varint(len(req.digests)))
        for d in req.digests:
            if len(d) != DIGEST_BYTES:
                raise ValueError("digests are 32 bytes")
            parts.append(bytes(d))
    elif req.op != OP_LIST:
        raise ValueError(f"unknown op {req.op}")
    return _seal(parts)


def decode_request(data) -> SyncRequest:
    r, op, salt = _open(data, "request")
    count = r.varint()
    set_hash = bytes(r.take(32))
    req = SyncRequest(op, salt, count, set_hash)
    if op == OP_SKETCH or op == OP_MORE:
        if op == OP_MORE:
            req.token = bytes(r.take(TOKEN_BYTES))
            req.start = r.varint()
        req.nsym = r.varint()
        if req.nsym > (r.end - r.pos) // 13:
            raise WireError(f"{req.nsym} symbols announced, the body cannot hold them")
        req.symbols = bytes(r.take(r.end - r.pos))  # parsed (and counted) by the C core
        if req.nsym == 0 and req.symbols:
            raise WireError("symbol bytes after a zero symbol count")
    elif op == OP_FETCH:
        n = r.varint()
        if n * DIGEST_BYTES != r.end - r.pos:
            raise WireError(f"{n} digests announced, {r.end - r.pos} bytes follow")
        raw = r.take(n * DIGEST_BYTES)
        req.digests = [bytes(raw[i:i + DIGEST_BYTES]) for i in range(0, len(raw), DIGEST_BYTES)]
    elif op != OP_LIST:
        raise WireError(f"unknown sync op {op}")
    r.done()
    return req


# ---- responses ----

@dataclass(slots=True)
class SyncResponse:
    status: int
    salt: int
    count: int  # server's item count
    set_hash: bytes  # server's set hash
    items: list[bytes] = field(default_factory=list)  # COMPLETE / ITEMS: bytes of the items the client lacks
    extra: list[int] = field(default_factory=list)  # COMPLETE: keys the client has and the server lacks
    token: bytes = b""  # MORE
    have: int = 0  # MORE: symbols the server holds for this session
    need: int = 0  # MORE: total symbols it suggests
    digests: list[bytes] = field(default_factory=list)  # LIST


def encode_response(resp: SyncResponse) -> bytes:
    parts = [_HEAD.pack(MAGIC, VERSION, resp.status, resp.salt), varint(resp.count), bytes(resp.set_hash)]
    st = resp.status
    if st == COMPLETE or st == ITEMS:
        parts.append(varint(len(resp.items)))
        for item in resp.items:
            parts.append(varint(len(item)))
            parts.append(item)
        if st == COMPLETE:
            parts.append(varint(len(resp.extra)))
            if resp.extra:
                parts.append(struct.pack(f"<{len(resp.extra)}Q", *resp.extra))
    elif st == MORE:
        parts += [resp.token, varint(resp.have), varint(resp.need)]
    elif st == LIST:
        parts.append(varint(len(resp.digests)))
        parts.extend(resp.digests)
    elif st not in (SALT, RESTART):
        raise ValueError(f"unknown status {st}")
    return _seal(parts)


def decode_response(data) -> SyncResponse:
    r, st, salt = _open(data, "response")
    count = r.varint()
    resp = SyncResponse(st, salt, count, bytes(r.take(32)))
    if st == COMPLETE or st == ITEMS:
        n = r.varint()
        if n > r.end - r.pos:
            raise WireError("more items announced than bytes follow")
        resp.items = [bytes(r.take(r.varint())) for _ in range(n)]
        if st == COMPLETE:
            n = r.varint()
            raw = r.take(8 * n)
            resp.extra = list(struct.unpack(f"<{n}Q", raw)) if n else []
    elif st == MORE:
        resp.token = bytes(r.take(TOKEN_BYTES))
        resp.have = r.varint()
        resp.need = r.varint()
    elif st == LIST:
        n = r.varint()
        raw = r.take(n * DIGEST_BYTES)
        resp.digests = [bytes(raw[i:i + DIGEST_BYTES]) for i in range(0, len(raw), DIGEST_BYTES)]
    elif st not in (SALT, RESTART):
        raise WireError(f"unknown sync status {st}")
    r.done()
    return resp


# ---- sizing (docs/SYNC.md "Sizing") ----

MIN_SYMBOLS = 24


def symbols_for(differences: int) -> int:
    """Symbols that decode `differences` differing keys in at least ~99.5% of trials (measured, docs/SYNC.md):
    ceil(1.36 d + 3 sqrt(d) + 24)."""
    d = max(0, int(differences))
    return int(1.36 * d + 3.0 * d ** 0.5 + MIN_SYMBOLS + 0.999999)
