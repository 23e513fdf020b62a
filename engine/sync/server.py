"""POST /sync/<user><dir>/: set reconciliation on the server side (docs/SYNC.md).

One request usually settles it: the client's symbols are subtracted from a prefix of the collection's sketch and
peeled in C; the answer carries the items the client lacks (their bytes), the keys it holds that the server
lacks, and the server's count and set hash. What must stay true:
- checks in SPEC order: storage name and body (400, nothing touched), auth (401), the storage (404);
- COMPLETE is answered only when the peel ended at all-zero symbols *and* the count equation
  (server-only - client-only == server count - client count) holds and every key lands where it must (server-only
  keys in the index, client-only keys not); anything else is MORE with an estimate of the symbols needed, and the
  client's symbols are kept in a short-lived session so that it sends only the next ones;
- a session is created or changed only by a request that passed every check; sessions are bounded in number,
  total symbols (server-wide: sync_session_bytes) and age;
- the work per request and the collection's sketch are bounded by the server's own data: at most
  `symbol_cap(server count, sync_max_symbols)` symbols are used and kept, whatever count the client claims and
  however many symbols it sends; when that is not enough, the answer's `need` is not more than `have` (more
  symbols will not help) and the client falls back to the exact list.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import BadRequest, NotFound, Unauthorized
from ..http.message import Request, Response
from ..names import is_public
from ..native.sketch import Sketch
from . import wire
from .collections import Collection, Registry
from .keys import parse_storage  # noqa: F401  (re-exported for the API modules)

if TYPE_CHECKING:
    from ..api.context import AppContext as App

CONTENT_TYPE = b"application/x-homestream-sync"
SESSION_TTL = 120.0
MAX_SESSIONS = 1024
SYMBOL_BYTES = 24  # one coded symbol in C (csrc/riblt.h)
MAX_SESSION_SYMBOLS = (32 << 20) // SYMBOL_BYTES  # in all sessions together (sync_session_bytes)
DEFAULT_MAX_SYMBOLS = 1_000_000  # sync_max_symbols
EMPTY_SET_HASH = bytes(32)


def symbol_cap(server_count: int, max_symbols: int = DEFAULT_MAX_SYMBOLS) -> int:
    """The most symbols a /sync uses for a collection: 2 n + 256 decode a difference as large as the server's
    own n items in practice, and never more than the fixed `max_symbols`. The client's claimed count plays no
    part, so neither the work of a request nor the collection's sketch grows with what a client says; a larger
    difference (a client holding many items the server lacks) goes to the exact list."""
    return min(2 * server_count + 256, max_symbols)


@dataclass(slots=True)
class Session:
    coll: Collection
    sketch: Sketch  # the client's symbols so far
    created: float


class Sessions:
    def __init__(self, ttl: float = SESSION_TTL, max_sessions: int = MAX_SESSIONS,
                 max_symbols: int = MAX_SESSION_SYMBOLS, clock=time.monotonic):
        self.ttl = ttl
        self.max_sessions = max_sessions
        self.max_symbols = max_symbols
        self.clock = clock
        self.by_token: OrderedDict[bytes, Session] = OrderedDict()
        self.symbols = 0

    def __len__(self) -> int:
        return len(self.by_token)

    def _drop(self, token: bytes) -> None:
        s = self.by_token.pop(token, None)
        if s is not None:
            self.symbols -= len(s.sketch)
            s.sketch.close()

    def expire(self) -> None:
        now = self.clock()
        while self.by_token:
            token, s = next(iter(self.by_token.items()))
            if now - s.created <= self.ttl and len(self.by_token) <= self.max_sessions \
                    and self.symbols <= self.max_symbols:
                break
            self._drop(token)

    def put(self, coll: Collection, sketch: Sketch, token: bytes | None = None) -> bytes:
        if token is not None:
            self._drop(token)
        token = secrets.token_bytes(wire.TOKEN_BYTES)
        self.by_token[token] = Session(coll, sketch, self.clock())
        self.symbols += len(sketch)
        self.expire()
        return token

    def take(self, token: bytes) -> Session | None:
        """Remove and return a live session (the caller puts it back under a new token if still needed)."""
        self.expire()
        s = self.by_token.pop(token, None)
        if s is not None:
            self.symbols -= len(s.sketch)
        return s

    def close(self) -> None:
        for token in list(self.by_token):
            self._drop(token)


class SyncService:
    """The /sync logic over a Registry, independent of HTTP (the bench drives it directly)."""

    def __init__(self, registry: Registry | None, sessions: Sessions | None = None,
                 max_symbols: int = DEFAULT_MAX_SYMBOLS):
        self.registry = registry
        self.sessions = sessions if sessions is not None else Sessions()
        self.max_symbols = max_symbols

    @staticmethod
    def parse(body: bytes) -> tuple[wire.SyncRequest, Sketch | None]:
        """Decode and fully validate a request body (symbols parsed by the C core); BadRequest on any fault."""
        try:
            req = wire.decode_request(body)
        except wire.WireError as exc:
            raise BadRequest(f"bad sync body: {exc}") from None
        sketch = None
        if req.op in (wire.OP_SKETCH, wire.OP_MORE):
            sketch = Sketch(0, req.salt)
            try:
                added = sketch.append_bytes(req.symbols) if req.symbols else 0
            except ValueError as exc:
                sketch.close()
                raise BadRequest(f"bad sync body: {exc}") from None
            if added != req.nsym:
                sketch.close()
                raise BadRequest(f"bad sync body: {req.nsym} symbols announced, {added} sent")
        return req, sketch

    def answer(self, coll: Collection, req: wire.SyncRequest, client: Sketch | None) -> wire.SyncResponse:
        base = dict(salt=coll.salt, count=coll.count, set_hash=coll.set_hash)
        if req.salt != coll.salt:
            if client is not None:
                client.close()
            return wire.SyncResponse(wire.SALT, **base)
        if req.op == wire.OP_LIST:
            digests = coll.live_digests()
            return wire.SyncResponse(wire.LIST, digests=[digests[i:i + 32] for i in range(0, len(digests), 32)],
                                     **base)
        if req.op == wire.OP_FETCH:
            items = []
            for d in req.digests:
                if coll.slot_of_digest(d) is not None:
                    items.append(coll.read(d))
            return wire.SyncResponse(wire.ITEMS, items=items, **base)
        old_token = None
        if req.op == wire.OP_MORE:
            session = self.sessions.take(req.token)
            if session is None or session.coll is not coll or len(session.sketch) != req.start \
                    or session.sketch.salt != req.salt:
                if session is not None:
                    session.sketch.close()
                client.close()
                return wire.SyncResponse(wire.RESTART, **base)
            if req.symbols:
                session.sketch.append_bytes(req.symbols)
            client.close()
            client = session.sketch
        return self._reconcile(coll, req, client, old_token)

    def _reconcile(self, coll: Collection, req: wire.SyncRequest, client: Sketch,
                   old_token: bytes | None) -> wire.SyncResponse:
        base = dict(salt=coll.salt, count=coll.count, set_hash=coll.set_hash)
        if req.count == coll.count and req.set_hash == coll.set_hash:
            client.close()
            return wire.SyncResponse(wire.COMPLETE, **base)  # already equal: nothing to peel
        if req.count == 0 and req.set_hash == EMPTY_SET_HASH:
            client.close()  # the client holds nothing: it lacks every item, and has no extra
            items = [coll.read(coll.digest_at(s), s) for s in coll.live_slots()]
            return wire.SyncResponse(wire.COMPLETE, items=items, **base)
        cap = symbol_cap(coll.count, self.max_symbols)
        m = min(len(client), cap)
        server = coll.ensure_symbols(m, cap)
        diff = server.copy(m)
        try:
            if m:
                diff.subtract(client)
            result = diff.decode() if m else None
            ok = result is not None and result.complete and self._consistent(coll, req, result)
            if ok:
                index, read, digest_at = coll.index, coll.read, coll.digest_at
                items = [read(digest_at(slot), slot) for slot in map(index.__getitem__, result.only_a)]
                client.close()
                return wire.SyncResponse(wire.COMPLETE, items=items, extra=list(result.only_b), **base)
            have = len(client)
            if have >= cap:  # more symbols will not be used: need == have tells the client to take the exact list
                client.close()
                return wire.SyncResponse(wire.MORE, token=bytes(wire.TOKEN_BYTES), have=have, need=have, **base)
            need = estimate_need(diff, result, m, coll.count - req.count)
        finally:
            diff.close()
        # at least 20% more each round, so a low estimate cannot make the rounds crawl
        need = min(max(need, have + max(8, have // 5)), cap)
        token = self.sessions.put(coll, client)
        return wire.SyncResponse(wire.MORE, token=token, have=have, need=need, **base)

    @staticmethod
    def _consistent(coll: Collection, req: wire.SyncRequest, result) -> bool:
        if len(result.only_a) - len(result.only_b) != coll.count - req.count:
            return False
        index = coll.index
        return all(k in index for k in result.only_a) and not any(k in index for k in result.only_b)

    def close(self) -> None:
        self.sessions.close()


def estimate_need(diff: Sketch, result, m: int, count_delta: int) -> int:
    """Total symbols likely to decode, from a failed peel: keys found + an estimate of those left, read from
    the fraction of still-empty symbols (a symbol i holds each remaining key with probability 2/(i+2))."""
    found = 0
    residual = diff.copy()
    try:
        if result is not None:
            for k in result.only_a:
                residual.remove(k)
            for k in result.only_b:
                residual.add(k)
            found = len(result.only_a) + len(result.only_b)
        lo_i = max(1, m // 2)
        step = max(1, (m - lo_i) // 256)
        sample = range(lo_i, m, step)
        observed = sum(1 for i in sample if residual.symbol(i) == (0, 0, 0))
    finally:
        residual.close()
    logs = [math.log1p(-2.0 / (i + 2)) for i in sample]

    def expected(r: float) -> float:
        return sum(math.exp(r * x) for x in logs)

    if not logs:
        left = 16.0
    elif observed == 0:
        left = 4.0 * max(m, 16)  # saturated: many times m keys are left
    else:
        lo, hi = 0.0, 64.0 * max(m, 16)
        for _ in range(40):
            mid = (lo + hi) / 2
            if expected(mid) > observed:
                lo = mid
            else:
                hi = mid
        left = hi
    d_est = max(found + left, abs(count_delta))
    return wire.symbols_for(math.ceil(d_est))


def sync_handler(app: "App", request: Request, param: str) -> Response:
    user, dir_path = parse_storage(param)
    service: SyncService = app.extensions["sync"]
    req, client = service.parse(request.body)
    try:
        if not is_public(dir_path):
            reader = app.auth.verify(request.header(b"authorization"), "POST", request.path, request.body,
                                     write=False)
            if reader != user:
                raise Unauthorized("only the owner may sync a private storage")
        coll = service.registry.get(user, dir_path)
        if coll is None:
            raise NotFound(f"no storage {user}{dir_path}")
    except BaseException:
        if client is not None:
            client.close()
        raise
    resp = service.answer(coll, req, client)
    body = wire.encode_response(resp)
    return Response(200, [(b"content-type", CONTENT_TYPE)], body, coll.last_seq)
