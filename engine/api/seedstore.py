"""The seed's storage API (SPEC 4.1): POST /set/<storage>, GET|POST /get, GET|POST /bloom.

A storage is `<user><dir>/`; its items are the same set /sync and `POST /<user><dir>/` see (engine/sync/
collections.py). What must stay true:
- checks in SPEC order: parameters and filters (400), auth (401), unknown storage (404), all before any output;
- /set stores the RFC 8785 canonical text of the value through the same collection append (api/writes.py), exactly like POST /<user><dir>/;
- a private storage is read only with its owner's signature: HS1 over (method, decoded request path `/get` or
  `/bloom`, content hash of the body, empty for GET); streams also take it as `auth=`;
- the SSE form of /get takes the items with seq <= the hub's published seq from the collection and everything
  newer from the live fan-out, so nothing is sent twice or skipped at the switch; it ends with `event: end`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, NotFound, Unauthorized
from ..http.message import Request, Response, StreamResponse, json_response
from ..http.sse import END_OF_BODY, chunk, end_frame, retry_frame
from ..log.record import PUT
from ..names import Pattern, encode_content_hash, encode_seq, is_item_name, is_public, zbase32_decode
from ..native.bloom import DEFAULT_K, MAX_K, BloomFilter, bytes_for_count
from ..sync.canonical import canonical_bytes, loads_strict
from ..sync.server import parse_storage
from .events import SSE_HEADERS
from .storage import parse_bool, parse_limit
from .writes import APPEND_OP, WriteOp, WriteResult

if TYPE_CHECKING:
    from .context import AppContext as App

JSON_CONTENT_TYPE = "application/json"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# ---- parameters ----

def decode_filter(text: Any, k: int = DEFAULT_K) -> BloomFilter:
    """A client's filter from standard base64 (URL-safe letters, a '+' turned into ' ' by a query string and
    missing padding are forgiven); 400 when empty, not base64 or shorter than 8 bytes."""
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("bloomFilter must be non-empty base64 text")
    t = text.strip().replace(" ", "+").replace("-", "+").replace("_", "/")
    t += "=" * (-len(t) % 4)
    try:
        raw = base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("bloomFilter is not base64") from None
    if len(raw) < 8:
        raise BadRequest(f"a bloomFilter has at least 8 bytes (64 bits), got {len(raw)}")
    return BloomFilter.from_bytes(raw, k)


def decode_hash(text: Any) -> bytes:
    if not isinstance(text, str):
        raise BadRequest("hashes are content hashes: base64 of 32 bytes")
    try:
        raw = base64.b64decode(text.strip().replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{text!r} is not a content hash") from None
    if len(raw) != 32:
        raise BadRequest(f"{text!r} is not a content hash (32 bytes)")
    return raw


def parse_k(value: Any) -> int:
    if value is None:
        return DEFAULT_K
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_K:
        raise BadRequest(f"k must be a whole number from 1 to {MAX_K}")
    return value


def parse_count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit():
            raise BadRequest(f"count must be a non-negative whole number, not {value!r}")
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 1 << 40:
        raise BadRequest(f"count must be a non-negative whole number, not {value!r}")
    return value


def storage_id(value: Any) -> tuple[str, str, str]:
    if not isinstance(value, str) or not value:
        raise BadRequest("id must name a storage: <user><dir>/")
    user, dir_path = parse_storage(value)
    return value, user, dir_path


def _json_param(text: str, name: str) -> Any:
    try:
        return loads_strict(text)
    except ValueError:
        raise BadRequest(f"{name} must be JSON") from None


def _params(request: Request) -> dict[str, Any]:
    """The call's parameters: the query for GET, the JSON object body for POST (query values are text)."""
    if request.method == "POST" and request.body.strip():
        try:
            doc = loads_strict(request.body)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise BadRequest("the body must be a JSON object")
        return doc
    out: dict[str, Any] = {}
    for name in ("id", "bloomFilter", "hashes", "items", "count", "k"):
        value = request.arg(name)
        if value is None:
            continue
        if name in ("hashes", "items"):
            text = value.strip()
            if name == "items" and not text.startswith(("[", "{", '"')):
                value = text  # a bare storage name
            else:
                value = _json_param(text, name)
        out[name] = value
    return out


@dataclass(slots=True)
class Target:
    id: str
    user: str
    dir: str
    filter: BloomFilter | None = None
    hashes: list[bytes] | None = None
    coll: Any = None


def _target(spec: Any, k: int, top: dict[str, Any] | None = None) -> Target:
    if isinstance(spec, str):
        ident, user, dir_path = storage_id(spec)
        return Target(ident, user, dir_path)
    if not isinstance(spec, dict):
        raise BadRequest("items holds storages or {\"id\": <storage>, \"bloomFilter\": <b64>} objects")
    ident, user, dir_path = storage_id(spec.get("id"))
    t = Target(ident, user, dir_path)
    kk = parse_k(spec.get("k", k))
    if spec.get("bloomFilter") is not None:
        t.filter = decode_filter(spec["bloomFilter"], kk)
    if spec.get("hashes") is not None:
        hashes = spec["hashes"]
        if not isinstance(hashes, list):
            raise BadRequest("hashes must be a JSON array of content hashes")
        t.hashes = [decode_hash(h) for h in hashes]
    return t


def _targets(params: dict[str, Any]) -> list[Target]:
    k = parse_k(params.get("k"))
    items = params.get("items")
    if items is not None:
        if isinstance(items, (str, dict)):
            items = [items]
        if not isinstance(items, list) or not items:
            raise BadRequest("items must be a storage, a list of storages, or a list of {id, bloomFilter}")
        return [_target(spec, k) for spec in items]
    if params.get("id") is None:
        raise BadRequest("name a storage with id=<storage> (or items=...)")
    return [_target({key: params[key] for key in ("id", "bloomFilter", "hashes") if key in params}, k)]


def _authorize(app: "App", request: Request, owners: set[str], allow_query: bool = False) -> str | None:
    """The reader for private storages (401 unless the owner signed); None when everything is public."""
    if not owners:
        return None
    header = request.header(b"authorization")
    if header is None and allow_query:
        header = request.arg("auth")
    reader = app.auth.verify(header, request.method, request.path, request.body, write=False)
    if any(owner != reader for owner in owners):
        raise Unauthorized("a private storage is read only with its owner's signature")
    return reader


def _resolve(app: "App", targets: list[Target]) -> None:
    registry = app.extensions["sync"].registry
    for t in targets:
        t.coll = registry.get(t.user, t.dir)
        if t.coll is None:
            raise NotFound(f"no storage {t.user}{t.dir}")


# ---- item encoding ----

def item_json(ident: str, digest: bytes, value: bytes) -> bytes:
    """`{"id", "hash", "value"}` with the stored JSON text inline; bytes that are not JSON go as "base64"."""
    head = b'{"id":' + _dumps(ident).encode("utf-8") + b',"hash":"' + encode_content_hash(digest).encode() + b'"'
    try:
        text = value.decode("utf-8")
        parsed = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return head + b',"base64":"' + base64.b64encode(value) + b'"}'
    if "\n" in text or "\r" in text or text != text.strip():
        text = _dumps(parsed)
    return head + b',"value":' + text.encode("utf-8") + b"}"


def _selected(t: Target, max_seq: int | None = None) -> list[int]:
    """Slots of target t's items to send, in append order (by hashes in the order asked)."""
    coll = t.coll
    if t.hashes is not None:
        out, seen = [], set()
        for h in t.hashes:
            slot = coll.slot_of_digest(h)
            if slot is not None and slot not in seen and (max_seq is None or coll.seqs[slot] <= max_seq):
                seen.add(slot)
                out.append(slot)
        return out
    slots = list(coll.live_slots(max_seq))
    if t.filter is None or not slots:
        return slots
    digests = b"".join(coll.digests[s * 32:(s + 1) * 32] for s in slots) if coll.dead or max_seq is not None \
        else bytes(coll.digests)
    present = t.filter.contains_many(digests)
    return [s for s, hit in zip(slots, present) if not hit]


# ---- handlers ----

def seed_set(app: "App", request: Request, param: str) -> Response:
    user, dir_path = parse_storage(param)
    try:
        doc = loads_strict(request.body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body must be JSON: {\"value\": <any JSON>}") from None
    if not isinstance(doc, dict) or "value" not in doc:
        raise BadRequest("the body must be {\"value\": <any JSON>}")
    try:
        data = canonical_bytes(doc["value"])
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"the value has no canonical JSON form: {exc}") from None
    app.auth.authorize_write(request.header(b"authorization"), "POST", request.path, request.body, user)
    op = WriteOp(APPEND_OP, user, dir_path, data, JSON_CONTENT_TYPE, app.auth.take_replay())
    return app.writes.submit(request, op, _set_response)


def _set_response(result: WriteResult) -> Response:
    return _with_seq(json_response(result.status, {"hash": encode_content_hash(result.digest), "seq": result.seq}),
                     result.seq)


def _with_seq(resp: Response, seq: int) -> Response:
    resp.durable_seq = seq
    return resp


def seed_get(app: "App", request: Request, param: str) -> Response | StreamResponse:
    params = _params(request)
    targets = _targets(params)
    stream = b"text/event-stream" in (request.headers.get(b"accept") or b"")
    limit = live = None
    if stream:
        limit = parse_limit(request.arg("limit"), default=0, maximum=1 << 62) if request.arg("limit") else None
        live = parse_bool(request.arg("live"), "live", default=True)
    reader = _authorize(app, request, {t.user for t in targets if not is_public(t.dir)}, allow_query=stream)
    _resolve(app, targets)
    if stream:
        return _stream(app, request, targets, reader, limit, live)
    parts = []
    last = 0
    for t in targets:
        coll = t.coll
        for slot in _selected(t):
            digest = coll.digest_at(slot)
            parts.append(item_json(t.id, digest, coll.read(digest)))
        last = max(last, coll.last_seq)
    body = b'{"items":[' + b",".join(parts) + b"]}"
    return Response(200, [(b"content-type", b"application/json")], body, last)


def seed_bloom(app: "App", request: Request, param: str) -> Response:
    params = _params(request)
    spec = params.get("items", params)
    if isinstance(spec, list) and len(spec) == 1:
        spec = spec[0]
    if not isinstance(spec, dict):
        raise BadRequest("/bloom takes {\"id\", \"bloomFilter\", \"count\"} (or that object under \"items\")")
    ident, user, dir_path = storage_id(spec.get("id"))
    k = parse_k(spec.get("k", params.get("k")))
    count = parse_count(spec.get("count"))
    client = decode_filter(spec["bloomFilter"], k) if spec.get("bloomFilter") is not None else None
    _authorize(app, request, set() if is_public(dir_path) else {user})
    t = Target(ident, user, dir_path, client)
    _resolve(app, [t])
    coll = t.coll
    n = max(count, coll.count)
    server_filter = coll.bloom_bytes(bytes_for_count(n), DEFAULT_K)
    missing = [encode_content_hash(coll.digest_at(s)) for s in _selected(t)]
    body = {"count": coll.count, "k": DEFAULT_K, "bloomFilter": base64.b64encode(server_filter).decode("ascii"),
            "missing": missing}
    if client is not None:
        client.close()
    return _with_seq(json_response(200, body), coll.last_seq)


# ---- SSE ----

class _Finished:
    """Stands in for a subscription once a finite stream was written whole."""

    def on_pause(self) -> None: ...
    def on_resume(self) -> None: ...
    def on_disconnect(self) -> None: ...


def _stream(app: "App", request: Request, targets: list[Target], reader: str | None, limit: int | None,
            live: bool) -> StreamResponse:
    if request.http_version != b"1.1":
        raise BadRequest("event streams need HTTP/1.1")
    from ..pubsub.subscription import Subscription

    hub = app.hub
    by_dir: dict[tuple[str, str], list[Target]] = {}
    for t in targets:
        by_dir.setdefault((t.user, t.dir), []).append(t)
    live_hashes = {id(t): set(t.hashes) for t in targets if t.hashes is not None}

    def frame(t: Target, seq: int, user: str, digest: bytes, value: bytes) -> bytes:
        return (b"id: " + f"{encode_seq(seq)}.{user}".encode() + b"\nevent: item\ndata: "
                + item_json(t.id, digest, value) + b"\n\n")

    def wanted(record: Any) -> list[Target]:
        if record.kind != PUT:
            return []
        head, _, name = record.path.rpartition("/")
        ts = by_dir.get((record.user, head + "/"))
        if not ts or not is_item_name(name) or zbase32_decode(name, 32) != record.digest:
            return []
        out = []
        for t in ts:
            if t.hashes is not None and record.digest not in live_hashes[id(t)]:
                continue
            if t.filter is not None and record.digest in t.filter:
                continue
            out.append(t)
        return out

    def matches(record: Any) -> bool:
        return bool(wanted(record))

    def encoder(record: Any) -> bytes:
        value = bytes(record.value)
        return b"".join(frame(t, record.seq, record.user, record.digest, value) for t in wanted(record))

    def start(conn: Any) -> Any:
        published = hub.published_seq
        frames: list[bytes] = []
        last: tuple[int, str] | None = None
        for t in targets:
            coll = t.coll
            for slot in _selected(t, published):
                digest = coll.digest_at(slot)
                seq = coll.seqs[slot]
                frames.append(chunk(frame(t, seq, t.user, digest, coll.read(digest))))
                last = (seq, t.user)
        transport = conn.transport
        if not live or (limit is not None and len(frames) >= limit):
            if limit is not None and len(frames) > limit:
                frames = frames[:limit]
            reason = "limit" if (limit is not None and len(frames) >= limit) else "history"
            last_id = None
            if frames:
                last_id = frames[-1].split(b"id: ", 1)[1].split(b"\n", 1)[0].decode()
            transport.writelines([chunk(retry_frame()), *frames, chunk(end_frame(reason, last_id)), END_OF_BODY])
            transport.close()
            return _Finished()
        patterns = [Pattern(f"{t.user}{t.dir}*", t.user, t.dir, True) for t in targets]
        left = None if limit is None else limit - len(frames)
        sub = Subscription(hub, conn, patterns, reader, limit=left, encoder=encoder, matches=matches)
        hub.attach(sub, published)
        if frames:
            transport.writelines(frames)
            sub.last = last
        return sub

    return StreamResponse(200, list(SSE_HEADERS), start)
