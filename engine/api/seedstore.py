"""The seed's storage API (SPEC 4.1): POST /set/<storage>, GET|POST /get, GET|POST /bloom.

A storage is `<user><dir>/`; its items are the same set /sync and `POST /<user><dir>/` see (engine/sync/
collections.py). What must stay true:
- checks in SPEC order: parameters and filters (400), auth (401), unknown storage (404), all before any output;
- /set stores the RFC 8785 canonical text of the value through the same collection append (api/writes.py), exactly like POST /<user><dir>/;
- a private storage is read only with its owner's signature: HS1 over (method, decoded request path `/get` or
  `/bloom`, content hash of the body, empty for GET); streams also take it as `auth=`;
- the SSE form of /get takes the items with seq <= the hub's published seq from the collection and everything
  newer from the live fan-out, so nothing is sent twice or skipped at the switch; it ends with `event: end`;
- what a request costs is bounded by the server's data and settings, never by the client's claims: exact repeats
  of an entry cost a set lookup, distinct entries, filters and hashes are capped (seed_max_*), an answer past
  WHOLE_ANSWER_BYTES is made a slice at a time while the client reads (engine/api/seed_answer.py,
  engine/http/paced.py), and a /bloom count past both the storage's count and bloom_max_count is 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, NotFound, Unauthorized
from ..http.message import Request, Response, StreamResponse, json_response
from ..http.paced import PacedBody
from ..http.sse import end_frame, retry_frame
from ..log.record import PUT
from ..names import Pattern, encode_content_hash, encode_seq, is_item_name, is_public, zbase32_decode
from ..native.bloom import DEFAULT_K, MAX_K, BloomFilter, bytes_for_count
from ..sync.canonical import canonical_bytes, loads_strict
from ..sync.server import parse_storage
from .events import SSE_HEADERS
from .seed_answer import (JsonItems, Producer, Target, item_json, json_item, missing_digests,  # noqa: F401
                          sse_item_frame)
from .storage import check_item_dir, check_value_size, parse_bool, parse_limit
from .writes import APPEND_OP, WriteOp, WriteResult

if TYPE_CHECKING:
    from .context import AppContext as App

JSON_CONTENT_TYPE = "application/json"
WHOLE_ANSWER_BYTES = 64 * 1024  # a /get answer up to this is sent whole (Content-Length); past it, streamed


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
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_K:
        raise BadRequest(f"k must be a whole number from 1 to {MAX_K}")
    return value


MAX_COUNT = 1 << 40  # a count past this is not a sane number of items (400 before auth)


def parse_count(value: Any) -> int:
    """`count`: a whole number from 0 to MAX_COUNT, as JSON or as decimal text; 400 otherwise, never a 500."""
    if value is None:
        return 0
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit() or len(value.lstrip("0")) > 13:
            raise BadRequest(f"count must be a whole number from 0 to {MAX_COUNT}, not {value[:40]!r}")
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > MAX_COUNT:
        raise BadRequest(f"count must be a whole number from 0 to {MAX_COUNT}, not {str(value)[:40]!r}")
    return value


def storage_id(value: Any) -> tuple[str, str, str]:
    if not isinstance(value, str) or not value:
        raise BadRequest("id must name a storage: <user><dir>/")
    user, dir_path = parse_storage(value)
    return value, user, dir_path


def _json_param(text: str, name: str) -> Any:
    try:
        return loads_strict(text)
    except (ValueError, RecursionError):
        raise BadRequest(f"{name} must be JSON") from None


def _params(request: Request) -> dict[str, Any]:
    """The call's parameters: the query for GET, the JSON object body for POST (query values are text)."""
    if request.method == "POST" and request.body.strip():
        try:
            doc = loads_strict(request.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
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


def _spec_key(spec: Any) -> str:
    """What makes two entries for one storage the same request: its filter text, k and hashes, as sent."""
    spec = spec if isinstance(spec, dict) else {}
    return dumps_key({k: spec.get(k) for k in ("bloomFilter", "hashes", "k")})


def dumps_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _raw_key(spec: Any) -> Any:
    """A hashable form of an entry exactly as written (None when it has none: it is then parsed every time)."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        hashes = spec.get("hashes")
        try:
            return (spec.get("id"), spec.get("bloomFilter"), spec.get("k"),
                    tuple(hashes) if isinstance(hashes, list) else hashes)
        except TypeError:
            return None
    return None


def _target(spec: Any, k: int) -> Target:
    if isinstance(spec, str):
        ident, user, dir_path = storage_id(spec)
        return Target(ident, user, dir_path, raw=spec)
    if not isinstance(spec, dict):
        raise BadRequest("items holds storages or {\"id\": <storage>, \"bloomFilter\": <b64>} objects")
    ident, user, dir_path = storage_id(spec.get("id"))
    return Target(ident, user, dir_path, raw=spec)


def _decode(t: Target, k: int) -> None:
    spec = t.raw
    if not isinstance(spec, dict):
        return
    kk = parse_k(spec.get("k", k))
    if spec.get("hashes") is not None:
        hashes = spec["hashes"]
        if not isinstance(hashes, list):
            raise BadRequest("hashes must be a JSON array of content hashes")
        t.hashes = [decode_hash(h) for h in hashes]
    if spec.get("bloomFilter") is not None:
        t.filter = decode_filter(spec["bloomFilter"], kk)


def _targets(params: dict[str, Any], settings: Any) -> list[Target]:
    """The storages a /get names, each once: an entry repeated exactly is skipped at the cost of a set lookup; a
    storage named again (another spelling) with the same filter and hashes is merged; with another filter or
    other hashes it is 400. Distinct entries count against seed_max_storages, then filters and hashes against
    seed_max_filters and seed_max_hashes, all before any filter is decoded."""
    k = parse_k(params.get("k"))
    items = params.get("items")
    if items is not None:
        if isinstance(items, (str, dict)):
            items = [items]
        if not isinstance(items, list) or not items:
            raise BadRequest("items must be a storage, a list of storages, or a list of {id, bloomFilter}")
        specs = items
    else:
        if params.get("id") is None:
            raise BadRequest("name a storage with id=<storage> (or items=...)")
        specs = [{key: params[key] for key in ("id", "bloomFilter", "hashes") if key in params}]
    by_storage: dict[tuple[str, str], tuple[Target, str]] = {}
    written: set[Any] = set()  # entries as written: an exact repeat costs one set lookup, nothing is parsed again
    distinct = 0
    for spec in specs:
        raw = _raw_key(spec)
        if raw is not None:
            if raw in written:
                continue
            written.add(raw)
        distinct += 1
        if distinct > settings.seed_max_storages:  # distinct entries: a storage written differently counts again
            raise BadRequest(f"at most {settings.seed_max_storages} storages in one request")
        t = _target(spec, k)
        key = _spec_key(spec)
        seen = by_storage.get((t.user, t.dir))
        if seen is not None:
            if seen[1] != key:
                raise BadRequest(f"storage {t.user}{t.dir} is named twice with different filters or hashes")
            continue
        by_storage[(t.user, t.dir)] = (t, key)
    targets = [t for t, _ in by_storage.values()]
    filters = sum(1 for t in targets if isinstance(t.raw, dict) and t.raw.get("bloomFilter") is not None)
    if filters > settings.seed_max_filters:
        raise BadRequest(f"at most {settings.seed_max_filters} bloomFilters in one request, got {filters}")
    hashes = sum(len(t.raw["hashes"]) for t in targets if isinstance(t.raw, dict)
                 and isinstance(t.raw.get("hashes"), list))
    if hashes > settings.seed_max_hashes:
        raise BadRequest(f"at most {settings.seed_max_hashes} hashes in one request, got {hashes}")
    for t in targets:
        _decode(t, k)
    return targets


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



# ---- handlers ----

def seed_set(app: "App", request: Request, param: str) -> Response:
    user, dir_path = parse_storage(param)
    check_item_dir(dir_path)
    try:
        doc = loads_strict(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("the body must be JSON: {\"value\": <any JSON>}") from None
    if not isinstance(doc, dict) or "value" not in doc:
        raise BadRequest("the body must be {\"value\": <any JSON>}")
    try:
        data = canonical_bytes(doc["value"])
    except (ValueError, TypeError, RecursionError) as exc:
        raise BadRequest(f"the value has no canonical JSON form: {exc}") from None
    check_value_size(app, data)
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
    targets = _targets(params, app.settings)
    stream = b"text/event-stream" in (request.headers.get(b"accept") or b"")
    limit = live = None
    if stream:
        limit = parse_limit(request.arg("limit"), default=0, maximum=1 << 62) if request.arg("limit") else None
        live = parse_bool(request.arg("live"), "live", default=True)
        if request.http_version != b"1.1":
            raise BadRequest("event streams need HTTP/1.1")
    reader = _authorize(app, request, {t.user for t in targets if not is_public(t.dir)}, allow_query=stream)
    _resolve(app, targets)
    if stream:
        return _stream(app, targets, reader, limit, live)
    last = max(t.coll.last_seq for t in targets)
    body = JsonItems(Producer(targets, last, json_item))
    head, done = body.piece(WHOLE_ANSWER_BYTES)
    if done:  # small: one answer with a Content-Length, the connection kept
        return Response(200, [(b"content-type", b"application/json")], head, last)
    chunked = request.http_version == b"1.1"  # HTTP/1.0: the body ends when the connection closes

    def start(conn: Any) -> PacedBody:
        return PacedBody(conn, body.piece, chunked=chunked).start(head)

    # the body ends with the connection (a StreamResponse takes it over): say so, or a client reuses it
    return StreamResponse(200, [(b"content-type", b"application/json"), (b"connection", b"close")], start, last)


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
    cap = max(coll.count, app.settings.bloom_max_count)
    if count > cap:  # after 404: the cap depends on the storage's own count
        raise BadRequest(f"count {count} is past what this storage takes ({cap}: the larger of its "
                         f"{coll.count} items and bloom_max_count)")
    n = max(count, coll.count)
    server_filter = coll.bloom_bytes(bytes_for_count(n), DEFAULT_K, cache=count <= coll.count)
    missing = [encode_content_hash(d) for d in missing_digests(t, coll.last_seq)]
    body = {"count": coll.count, "k": DEFAULT_K, "bloomFilter": base64.b64encode(server_filter).decode("ascii"),
            "missing": missing}
    if client is not None:
        client.close()
    return _with_seq(json_response(200, body), coll.last_seq)


# ---- SSE ----

def _stream(app: "App", targets: list[Target], reader: str | None, limit: int | None,
            live: bool) -> StreamResponse:
    """The items up to the hub's published seq from the collections, paced (engine/http/paced.py); then, when
    live, a Subscription from that seq on, so nothing is sent twice or skipped at the switch."""
    from ..pubsub.subscription import Subscription

    hub = app.hub
    by_dir: dict[tuple[str, str], list[Target]] = {}
    for t in targets:
        by_dir.setdefault((t.user, t.dir), []).append(t)
    live_hashes = {id(t): set(t.hashes) for t in targets if t.hashes is not None}

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
        return b"".join(sse_item_frame(t, record.seq, record.digest, value) for t in wanted(record))

    def start(conn: Any) -> PacedBody:
        published = hub.published_seq
        producer = Producer(targets, published, sse_item_frame, limit)
        ended = [False]

        def piece(budget: int) -> tuple[bytes, bool]:
            frames = producer.slice(budget)
            data = b"".join(frames)
            if not producer.done:
                return data, False
            if not live or (limit is not None and producer.count >= limit):
                reason = "limit" if (limit is not None and producer.count >= limit) else "history"
                last_id = None if producer.last is None else f"{encode_seq(producer.last[0])}.{producer.last[1]}"
                ended[0] = True
                return data + end_frame(reason, last_id), True
            return data, True

        def go_live(conn: Any) -> Any:
            if ended[0]:
                return None
            patterns = [Pattern(f"{t.user}{t.dir}*", t.user, t.dir, True) for t in targets]
            left = None if limit is None else limit - producer.count
            sub = Subscription(hub, conn, patterns, reader, limit=left, encoder=encoder, matches=matches)
            hub.attach(sub, published)
            if producer.last is not None:
                sub.last = producer.last
            return sub

        return PacedBody(conn, piece, chunked=True, then=go_live).start(retry_frame())

    return StreamResponse(200, list(SSE_HEADERS), start)
