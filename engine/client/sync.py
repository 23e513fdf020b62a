"""Set reconciliation client for append-only collections (SPEC 4, docs/SYNC.md), pure Python + httpx.

`reconcile(base_url, storage, have, *, server_count=None, key=None)` gets the items the client lacks and learns
which of its items the server lacks, usually in one POST /sync. `LocalCollection` is the client's incremental
state (digests, keys, set hash, sketch) for callers that sync the same collection repeatedly.

What must stay true:
- nothing here imports the C core (engine._native): keys, symbols and wire are engine/sync/{keys,pysketch,wire}.py;
- a result is returned as complete only after the client checked it: every received item is new, every extra key
  is one of its own items, and count and set hash (its own, plus received, minus extra) equal the server's; any
  mismatch falls back to the exact list (LIST, then FETCH of the missing digests), which is checked the same way;
- the first request is sized from the count difference (`server_count` hint) with wire.symbols_for(), so the
  upload stays within 24 bytes per differing item + 1 KiB in the usual case; a failed decode sends only the
  further symbols the server asks for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import quote

import blake3
import httpx

from ..http.auth import sign_request
from ..sync import wire
from ..sync.keys import HASH_MOD, KeyDeriver, collection_key, parse_storage, set_hash_bytes
from ..sync.pysketch import PySketch
from .errors import ApiError, ConnectionFailed

MAX_ROUNDS = 8
FETCH_BATCH = 100_000  # digests per FETCH request (3.2 MB)
CONTENT_TYPE = "application/x-homestream-sync"


class SyncError(ConnectionFailed):
    """The protocol could not reach a verified result (a server that keeps answering inconsistently)."""


@dataclass
class SyncResult:
    items: list[bytes]  # the items received (the client lacked them)
    extra: list[bytes]  # the client's items the server lacks
    count: int  # the server's item count
    requests: int  # HTTP requests made
    set_hash: bytes = b""  # the server's set hash
    bytes_sent: int = 0  # request lines + headers + bodies
    bytes_received: int = 0  # response bodies
    symbols: int = 0  # coded symbols uploaded
    fallback: str | None = None  # None, or why the exact list was used


class LocalCollection:
    """The client's copy of one collection: items by digest, their keys, set hash, and a PySketch kept current."""

    def __init__(self, storage: str, items: Iterable[bytes] = ()):
        self.storage = storage
        self.user, self.dir = parse_storage(storage)
        self.ckey = collection_key(self.user, self.dir)
        self.derive = KeyDeriver(self.ckey)
        self.salt = self.derive.salt
        self.items: dict[bytes, bytes] = {}  # digest -> bytes
        self.by_key: dict[int, bytes] = {}  # key -> digest
        self.total = 0
        self.sketch = PySketch(self.salt, 0)
        for item in items:
            self.add(item)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def set_hash(self) -> bytes:
        return set_hash_bytes(self.total)

    def add(self, item: bytes) -> bytes | None:
        """Add an item's bytes; its digest, or None when already held."""
        item = bytes(item)
        digest = blake3.blake3(item).digest()
        if digest in self.items:
            return None
        key = self.derive(digest)
        self.items[digest] = item
        self.by_key.setdefault(key, digest)
        self.total = (self.total + int.from_bytes(digest, "little")) % HASH_MOD
        self.sketch.add(key)
        return digest

    def symbols(self, start: int, stop: int) -> bytes:
        self.sketch.extend(stop)
        return self.sketch.to_bytes(start, stop - start)


def _signing_key(key):
    if key is None:
        return None
    import nacl.signing

    if isinstance(key, nacl.signing.SigningKey):
        return key
    if isinstance(key, (bytes, bytearray)) and len(key) == 32:
        return nacl.signing.SigningKey(bytes(key))
    if isinstance(key, (str, os.PathLike)):
        from .keys import load_key

        return load_key(key)
    signing_key = getattr(key, "signing_key", None) or getattr(key, "key", None)
    if isinstance(signing_key, nacl.signing.SigningKey):
        return signing_key
    raise TypeError("key must be a nacl SigningKey, a 32-byte seed or a key file path")


class _Session:
    """One reconciliation's HTTP side: signing, byte accounting and error mapping."""

    def __init__(self, base_url: str, local: LocalCollection, key, http: httpx.Client | None, timeout: float):
        self.local = local
        self.path = f"/sync/{local.user}{local.dir}"
        self.url = base_url.rstrip("/") + quote(self.path, safe="/")
        self.key = _signing_key(key)
        self.own = http is None
        self.http = http or httpx.Client(timeout=timeout)
        if self.own:
            for name in ("user-agent", "accept-encoding", "accept"):
                self.http.headers.pop(name, None)
        self.requests = 0
        self.sent = 0
        self.received = 0
        self.symbols = 0

    def close(self) -> None:
        if self.own:
            self.http.close()

    def post(self, req: wire.SyncRequest) -> wire.SyncResponse:
        body = wire.encode_request(req)
        self.symbols += req.nsym
        headers = {"content-type": CONTENT_TYPE}
        if self.key is not None:
            headers["authorization"] = sign_request(self.key, "POST", self.path, body)
        request = self.http.build_request("POST", self.url, content=body, headers=headers)
        self.sent += request_size(request)
        self.requests += 1
        try:
            response = self.http.send(request)
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"sync {self.url}: {exc}") from None
        self.received += len(response.content)
        if response.status_code != 200:
            raise ApiError.from_response(response.status_code, response.content, dict(response.headers))
        try:
            return wire.decode_response(response.content)
        except wire.WireError as exc:
            raise SyncError(f"sync {self.url}: bad answer: {exc}") from None


def request_size(request: httpx.Request) -> int:
    """Bytes of the request on the wire: request line, headers, blank line, body."""
    target = request.url.raw_path
    size = len(request.method) + 1 + len(target) + len(b" HTTP/1.1\r\n") + 2
    for name, value in request.headers.raw:
        size += len(name) + 2 + len(value) + 2
    return size + len(request.content)


def reconcile(base_url: str, storage: str, have, *, server_count: int | None = None, key=None,
              http: httpx.Client | None = None, timeout: float = 60.0) -> SyncResult:
    """Reconcile the items in `have` (bytes of items, or a LocalCollection) with `<user><dir>/` on the server."""
    local = have if isinstance(have, LocalCollection) else LocalCollection(storage, have)
    s = _Session(base_url, local, key, http, timeout)
    try:
        return _run(s, local, server_count)
    finally:
        s.close()


def _verify(local: LocalCollection, resp: wire.SyncResponse, items: list[bytes], extra_keys: list[int]):
    """(new items, extra items) when the answer is consistent with the server's count and set hash, else None."""
    new: dict[bytes, bytes] = {}
    for item in items:
        d = blake3.blake3(item).digest()
        if d in local.items or d in new:
            return None
        new[d] = item
    extra = []
    for k in extra_keys:
        d = local.by_key.get(k)
        if d is None:
            return None
        extra.append(d)
    if len(set(extra)) != len(extra):
        return None
    total = local.total + sum(int.from_bytes(d, "little") for d in new) - sum(int.from_bytes(d, "little")
                                                                             for d in extra)
    if len(local) + len(new) - len(extra) != resp.count or set_hash_bytes(total % HASH_MOD) != resp.set_hash:
        return None
    return list(new.values()), [local.items[d] for d in extra]


def _result(s: _Session, resp: wire.SyncResponse, items, extra, fallback=None) -> SyncResult:
    return SyncResult(items, extra, resp.count, s.requests, resp.set_hash, s.sent, s.received, s.symbols, fallback)


def _run(s: _Session, local: LocalCollection, server_count: int | None) -> SyncResult:
    n = len(local)
    if n == 0:
        m = 0  # holding nothing: the server answers with everything
    else:
        d_est = abs(server_count - n) if server_count is not None else 0
        m = wire.symbols_for(d_est)
        if server_count is not None:
            m = min(m, 2 * (server_count + n) + 256)
    base = dict(salt=local.salt, count=n, set_hash=local.set_hash)
    resp = s.post(wire.SyncRequest(wire.OP_SKETCH, symbols=local.symbols(0, m), nsym=m, **base))
    sent = m
    for _ in range(MAX_ROUNDS):
        if resp.status == wire.COMPLETE:
            checked = _verify(local, resp, resp.items, resp.extra)
            if checked is not None:
                return _result(s, resp, *checked)
            return _full(s, local, "the decoded difference did not match the server's count and set hash")
        if resp.status == wire.SALT:
            return _full(s, local, "the server uses another salt for this collection")
        if resp.status == wire.MORE:
            if resp.need <= resp.have:  # the server will use no more symbols (its cap): take the exact list
                return _full(s, local, "the difference is past what the server decodes")
            need = resp.need
            if need * 13 > 32 * max(resp.count, 1) + 4096:
                return _full(s, local, "the difference is as large as the collection")
            resp = s.post(wire.SyncRequest(wire.OP_MORE, token=resp.token, start=resp.have,
                                           symbols=local.symbols(resp.have, need), nsym=need - resp.have, **base))
            sent = need
            continue
        if resp.status == wire.RESTART:
            m = max(sent, 1)
            resp = s.post(wire.SyncRequest(wire.OP_SKETCH, symbols=local.symbols(0, m), nsym=m, **base))
            continue
        raise SyncError(f"unexpected sync status {resp.status}")
    return _full(s, local, f"no decode after {MAX_ROUNDS} rounds")


def _full(s: _Session, local: LocalCollection, why: str) -> SyncResult:
    """The exact fallback: the server's digest list, then the missing items by digest; verified."""
    base = dict(salt=local.salt, count=len(local), set_hash=local.set_hash)
    for _attempt in range(3):
        listing = s.post(wire.SyncRequest(wire.OP_LIST, **base))
        server = listing.digests
        server_set = set(server)
        missing = [d for d in server if d not in local.items]
        extra = [local.items[d] for d in local.items if d not in server_set]
        items: list[bytes] = []
        for i in range(0, len(missing), FETCH_BATCH):
            got = s.post(wire.SyncRequest(wire.OP_FETCH, digests=missing[i:i + FETCH_BATCH], **base))
            items.extend(got.items)
        received = {blake3.blake3(it).digest(): it for it in items}
        if all(d in received for d in missing) and len(received) == len(missing):
            return _result(s, listing, [received[d] for d in missing], extra, why)
        # an item was deleted between LIST and FETCH: list again
    raise SyncError("the collection kept changing during the exact fallback")
