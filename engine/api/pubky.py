"""pubky-compatible event endpoints (SPEC 3.5), in pubky's text formats, for existing clients and indexers.

- GET /events/?cursor=<seq>&limit=<n>: `PUT pubky://...` / `DEL pubky://...` lines, then `cursor: <seq>`;
  an empty page is an empty body.
- GET /events-stream?user=<u>[:<cursor>]...&path=&live=&reverse=&limit=: SSE frames `event: PUT|DEL` with data
  lines `pubky://...`, `cursor: <seq>`, `content_hash: <b64>`; closes without an `end` frame.
Public events only, plus the signer's own private events when the request is signed (signed paths `/events/`
and `/events-stream`). Cursors are decimal seqs; a cursor is exclusive (events strictly after it, or strictly
before it with reverse=true).

What a request costs is bounded by what it returns, not by the log (engine/pubsub/history.py finds the wanted
records in C over raw slices): an /events/ page and a reverse stream examine at most `history_scan_records`
records. A page that stops on that budget ends with `cursor: <the last seq examined>` (even with no event
listed), so a client moves on; a reverse stream that stops on it simply ends, its last event's cursor being where
to continue. A forward stream's history is paced a slice per loop turn by its Subscription.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..errors import BadRequest
from ..http.message import Request, Response, StreamResponse
from ..http.paced import PacedBody
from ..http.sse import text_frame
from ..log.record import DEL, PUT
from ..names import Pattern, decode_user, encode_content_hash, is_public, key_uri, parse_resume_point
from ..pubsub import history
from ..pubsub.history import ScanFilter
from ..pubsub.subscription import Subscription
from .events import SSE_HEADERS, stream_reader
from .storage import parse_bool, parse_limit

if TYPE_CHECKING:
    from .context import AppContext as App

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
    page = history.scan(app.log, cursor + 1, app.hub.published_seq, ScanFilter(None, "", reader),
                        budget=app.settings.history_scan_records, max_hits=limit)
    lines = [f"{KIND_TEXT[r.kind]} {key_uri(r.user, r.path)}" for r in page.records]
    if page.records and (page.complete or len(page.records) >= limit):
        last = page.records[-1].seq  # SPEC 3.5: the last event listed
    elif not page.complete and page.last > cursor:
        last = page.last  # stopped on the scan budget: the last seq examined, so the client moves on
    else:
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
        budget = app.settings.history_scan_records
        return StreamResponse(200, [*SSE_HEADERS, (b"connection", b"close")],  # the body ends with the connection
                              lambda conn: _reverse(app, conn, users, prefix, reader, limit, budget))
    patterns = [Pattern(f"{u}{prefix}*", u, prefix, True) for u in users]
    after = min(users.values())
    scan = ScanFilter({u: (c, 0) for u, c in users.items()}, prefix, reader)

    def start(conn: Any) -> Subscription:
        sub = Subscription(hub, conn, patterns, reader, limit=limit, live=live, encoder=pubky_frame,
                           matches=matches, quiet=True, scan=scan)
        return hub.attach(sub, after)

    return StreamResponse(200, list(SSE_HEADERS), start)


REVERSE_WINDOW = 4096  # seqs scanned forward at a time, newest window first


def _reverse(app: "App", conn: Any, users: dict[str, int], prefix: str, reader: str | None, limit: int | None,
             budget: int) -> PacedBody:
    """History newest first (with a cursor, events strictly before it), written a window at a time while the
    peer reads: windows of at most REVERSE_WINDOW seqs, scanned forward in C, sent reversed. At most `budget`
    records examined and `limit` events sent in all; then the body ends."""
    log = app.log
    filt = ScanFilter({u: (0, c) for u, c in users.items()}, prefix, reader)
    top = app.hub.published_seq
    if all(users.values()):
        top = min(top, max(users.values()) - 1)
    state = {"hi": top, "left": limit if limit is not None else -1, "budget": budget}

    def piece(out_budget: int) -> tuple[bytes, bool]:
        out: list[bytes] = []
        size = 0
        while size < out_budget:
            hi, left, room = state["hi"], state["left"], state["budget"]
            first = log.first_seq
            if hi < first or left == 0 or room <= 0:
                return b"".join(out), True
            lo = max(first, hi - min(REVERSE_WINDOW, room) + 1)  # a window never needs more than the budget left
            page = history.scan(log, lo, hi, filt, budget=room, max_hits=REVERSE_WINDOW)
            state["budget"] = room - page.examined
            state["hi"] = lo - 1
            for record in reversed(page.records):
                if left == 0:
                    break
                frame = pubky_frame(record)
                out.append(frame)
                size += len(frame)
                left -= 1
            state["left"] = left
        return b"".join(out), False

    return PacedBody(conn, piece, chunked=True).start()
