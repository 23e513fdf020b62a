"""GET /subscribe (SPEC 3.1-3.4): validate patterns, resume point and options, then hand the connection to
the hub as a Subscription.

Everything that can be wrong is found before the stream starts (400 naming the bad pattern or resume point,
401 for bad credentials or private patterns without the owner's signature); after the head is sent, the stream
only ends with an `end` frame or a disconnect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, Unauthorized
from ..http.message import Request, StreamResponse
from ..names import is_public, parse_pattern, parse_resume_point
from ..pubsub.subscription import Subscription
from .storage import parse_bool, parse_limit

if TYPE_CHECKING:
    from .context import AppContext as App

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def stream_reader(app: "App", request: Request, signed_path: str) -> str | None:
    """The authenticated reader of a stream, from the Authorization header or the `auth=` parameter."""
    header = request.header(b"authorization")
    if header is None:
        header = request.arg("auth")
    return app.auth.reader(header, "GET", signed_path)


def resume_point(request: Request) -> int | None:
    header = request.header(b"last-event-id")
    if header is not None:
        return parse_resume_point(header.strip())
    after = request.arg("after")
    return None if after is None else parse_resume_point(after)


def subscribe(app: "App", request: Request, param: str) -> StreamResponse:
    texts = request.args("p")
    if not texts:
        raise BadRequest("name at least one pattern with p=<pattern>")
    if len(texts) > app.settings.max_patterns:
        raise BadRequest(f"at most {app.settings.max_patterns} patterns, got {len(texts)}")
    patterns = [parse_pattern(text) for text in texts]
    after = resume_point(request)
    limit = parse_limit(request.arg("limit"), maximum=1 << 62) if request.arg("limit") is not None else None
    live = parse_bool(request.arg("live"), "live", default=True)
    inline = parse_bool(request.arg("inline"), "inline", default=False)
    if request.http_version != b"1.1":
        raise BadRequest("event streams need HTTP/1.1")  # a parameter of the request: before auth
    reader = stream_reader(app, request, "/subscribe")
    for pattern in patterns:
        if pattern.user is not None and not is_public(pattern.path) and pattern.path != "/":
            if reader != pattern.user:
                raise Unauthorized(f"pattern {pattern.text!r} names a private path: it needs the owner's signature")
    hub = app.hub

    def start(conn: Any) -> Subscription:
        sub = Subscription(hub, conn, patterns, reader, limit=limit, inline=inline, live=live)
        return hub.attach(sub, after)

    return StreamResponse(200, list(SSE_HEADERS), start)
