"""pubky-compatible event endpoints (SPEC 3.5), in pubky's text formats, for existing clients and indexers.

- GET /events/?cursor=<seq>&limit=<n>: `PUT pubky://...` / `DEL pubky://...` lines, then `cursor: <seq>`;
  an empty page is an empty body.
- GET /events-stream?user=<u>[:<cursor>]...&path=&live=&reverse=&limit=: SSE frames `event: PUT|DEL` with data
  lines `pubky://...`, `cursor: <seq>`, `content_hash: <b64>`; closes without an `end` frame.
Public events only, plus the signer's own private events when the request is signed (signed paths `/events/`
and `/events-stream`). Cursors are decimal seqs; a cursor is exclusive (events strictly after it, or strictly
before it with reverse=true).
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Callable

from ..errors import BadRequest
from ..http.message import Request, Response, StreamResponse
from ..http.sse import END_OF_BODY, chunk, text_frame
from ..log.record import DEL, PUT
from ..names import Pattern, decode_user, encode_content_hash, is_public, key_uri, parse_resume_point
from ..pubsub.subscription import Subscription
from .events import SSE_HEADERS, stream_reader
from .storage import parse_bool, parse_limit

if TYPE_CHECKING:
    from ..app import App

MAX_STREAM_USERS = 50
KIND_TEXT = {PUT: "PUT", 2: "DEL"}


def visible_to(reader: str | None) -> Callable[[Any], bool]:
    """PUT and DEL events the reader may see (a relay's gap records have no pubky form: never listed)."""
    def visible(record: Any) -> bool:
        return record.kind <= DEL and (is_public(record.path) or (reader is not None and record.user == reader))
    return visible


def events_page(app: "App", request: Request, param: str) -> Response:
    cursor_text = request.arg("cursor")
    cursor = parse_resume_point(cursor_text) if cursor_text else 0
    limit = parse_limit(request.arg("limit"))
    reader = app.auth.reader(request.header(b"authorization"), "GET", "/events/")
    visible = visible_to(reader)
    lines: list[str] = []
    last = None
    for record in app.log.read_from(cursor + 1, until=app.hub.published_seq):
        if visible(record):
            lines.append(f"{KIND_TEXT[record.kind]} {key_uri(record.user, record.path)}")
            last = record.seq
            if len(lines) >= limit:
                break
    if last is None:
        return Response(200, [(b"content-type", b"text/plain; charset=utf-8")], b"")
    lines.append(f"cursor: {last}")
    return Response(200, [(b"content-type", b"text/plain; charset=utf-8")], "\n".join(lines).encode("utf-8"))


def pubky_frame(record: Any) -> bytes:
    lines = [key_uri(record.user, record.path), f"cursor: {record.seq}"]
    if record.kind == PUT:
        lines.append(f"content_hash: {encode_content_hash(record.digest)}")
    return text_frame(KIND_TEXT[record.kind], lines)


def _parse_users(request: Request) -> dict[str, int]:
    users: dict[str, int] = {}
    for value in request.args("user"):
        user, _, cursor_text = value.partition(":")
        decode_user(user)
        cursor = parse_resume_point(cursor_text) if cursor_text else 0
        if cursor_text and not cursor_text.isdigit():
            raise BadRequest(f"pubky cursors are decimal seqs, not {cursor_text!r}")
        users[user] = cursor
    if not users:
        raise BadRequest("name at least one user with user=<user>[:<cursor>]")
    if len(users) > MAX_STREAM_USERS:
        raise BadRequest(f"at most {MAX_STREAM_USERS} users per stream, got {len(users)}")
    return users


def events_stream(app: "App", request: Request, param: str) -> StreamResponse:
    users = _parse_users(request)
    prefix = request.arg("path") or "/"
    if not prefix.startswith("/"):
        raise BadRequest(f"path must start with '/', not {prefix!r}")
    live = parse_bool(request.arg("live"), "live", default=False)
    reverse = parse_bool(request.arg("reverse"), "reverse", default=False)
    if reverse and live:
        raise BadRequest("reverse=true cannot be combined with live=true")
    limit = parse_limit(request.arg("limit"), maximum=1 << 62) if request.arg("limit") is not None else None
    reader = stream_reader(app, request, "/events-stream")
    visible = visible_to(reader)

    def matches(record: Any) -> bool:
        cursor = users.get(record.user)
        return (cursor is not None and record.seq > cursor and record.path.startswith(prefix)
                and visible(record))

    hub = app.hub
    if reverse:
        return StreamResponse(200, list(SSE_HEADERS), lambda conn: _reverse(app, conn, users, prefix, visible, limit))
    patterns = [Pattern(f"{u}{prefix}*", u, prefix, True) for u in users]
    after = min(users.values())

    def start(conn: Any) -> Subscription:
        sub = Subscription(hub, conn, patterns, reader, limit=limit, live=live, encoder=pubky_frame,
                           matches=matches, quiet=True)
        return hub.attach(sub, after)

    return StreamResponse(200, list(SSE_HEADERS), start)


def _reverse(app: "App", conn: Any, users: dict[str, int], prefix: str, visible: Callable[[Any], bool],
             limit: int | None) -> None:
    """History newest first: with a cursor, events strictly before it. Written at once, then the body ends."""
    keep: collections.deque[bytes] = collections.deque(maxlen=limit or None)
    for record in app.log.read_from(0, until=app.hub.published_seq):
        cursor = users.get(record.user)
        if cursor is None or not record.path.startswith(prefix) or not visible(record):
            continue
        if cursor and record.seq >= cursor:
            continue
        keep.append(chunk(pubky_frame(record)))
    conn.transport.writelines(list(reversed(keep)) + [END_OF_BODY])
    conn.transport.close()
    return None
