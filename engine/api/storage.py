"""The storage API of SPEC 2: PUT/GET/HEAD/DELETE of keys, directory listings, append-only POST.

Checks run in the SPEC's order: names and parameters (400), auth (401), the resource (404). Every write's
response carries `durable_seq`, so it is sent only after the commit that covers its record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from ..errors import BadRequest, InvalidName, NotFound, Unauthorized, ValueTooLarge
from ..http.message import Request, Response
from ..names import (MAX_PATH_BYTES, USER_ID_LENGTH, encode_content_hash, percent_decode, event_id, is_directory,
                     is_public, key_uri, split_key)
from .writes import APPEND_OP, DELETE_OP, PUT_OP, WriteOp, WriteResult

if TYPE_CHECKING:
    from .context import AppContext as App

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_CONTENT_TYPE_BYTES = 1024  # what a log record holds (engine/log/store.py refuses more)
LIST_DEFAULT_LIMIT = 100
LIST_MAX_LIMIT = 1000


def etag(digest: bytes) -> bytes:
    return b'"' + encode_content_hash(digest).encode("ascii") + b'"'


def write_headers(digest: bytes, seq: int, user: str) -> list[tuple[bytes, bytes]]:
    return [(b"etag", etag(digest)), (b"event-id", event_id(seq, user).encode("ascii"))]


def require_reader(app: "App", request: Request, owner: str, path: str) -> None:
    """A private path is readable only with the owner's valid signature (401 whether or not it exists)."""
    if is_public(path):
        return
    reader = app.auth.reader(request.header(b"authorization"), request.method, request.path)
    if reader is None:
        raise Unauthorized("a private path needs the owner's signature")
    if reader != owner:
        raise Unauthorized("only the owner may read a private path")


def parse_limit(text: str | None, default: int = LIST_DEFAULT_LIMIT, maximum: int = LIST_MAX_LIMIT) -> int:
    if text is None:
        return default
    digits = text.lstrip("0")
    if not text.isascii() or not text.isdigit() or not digits:
        raise BadRequest(f"limit must be a positive whole number, not {text[:40]!r}")
    if len(digits) > 20:
        return maximum  # a number this long is past every maximum (and past what int() converts)
    return min(int(digits), maximum)


def parse_bool(text: str | None, name: str, default: bool = False) -> bool:
    if text is None:
        return default
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise BadRequest(f"{name} must be true or false, not {text!r}")


def check_value_size(app: "App", body: bytes) -> None:
    """413 for a value the log would refuse, before names and auth (SPEC 2 order: size, names, auth)."""
    limit = getattr(app.log, "max_value_bytes", None)
    if limit is not None and len(body) > limit:
        raise ValueTooLarge(f"value of {len(body)} bytes is over the limit of {limit} bytes")


def write_content_type(request: Request) -> str:
    """The Content-Type to store (400 when the log cannot hold it): checked before auth, as every header."""
    content_type = request.header(b"content-type") or DEFAULT_CONTENT_TYPE
    if len(content_type.encode("utf-8")) > MAX_CONTENT_TYPE_BYTES:
        raise InvalidName(f"Content-Type longer than {MAX_CONTENT_TYPE_BYTES} bytes")
    return content_type


def check_item_dir(dir_path: str) -> None:
    """400 before auth when `<dir><item name>` would be longer than a path may be."""
    if len(dir_path.encode("utf-8")) + USER_ID_LENGTH > MAX_PATH_BYTES:
        raise InvalidName(f"a collection's items are named <dir><52-char name>: the directory leaves no room "
                          f"for a name within {MAX_PATH_BYTES} bytes")


def storage_put(app: "App", request: Request, param: str) -> Response:
    body = request.body
    check_value_size(app, body)
    user, path = split_key(request.path)
    if is_directory(path):
        raise InvalidName(f"cannot PUT a directory path {path!r}")
    content_type = write_content_type(request)
    app.auth.authorize_write(request.header(b"authorization"), "PUT", request.path, body, user)
    op = WriteOp(PUT_OP, user, path, body, content_type, app.auth.take_replay())
    return app.writes.submit(request, op, _put_response)


def _put_response(result: WriteResult) -> Response:
    return Response(result.status, write_headers(result.digest, result.seq, result.user), b"", result.seq)


def storage_get(app: "App", request: Request, param: str) -> Response:
    user, path = split_key(request.path)
    if is_directory(path):
        return _list(app, request, user, path)
    require_reader(app, request, user, path)
    entry = app.keyspace.get(user, path)
    if entry is None:
        raise NotFound(f"no value at {key_uri(user, path)}")
    tag = etag(entry.digest)
    inm = request.headers.get(b"if-none-match")
    if inm is not None and _etag_matches(inm, tag):
        return Response(304, [(b"etag", tag)])
    headers = [(b"content-type", entry.content_type.encode("latin-1", "replace")), (b"etag", tag)]
    if request.method == "HEAD":
        return Response(200, headers + [(b"content-length", b"%d" % entry.size)], b"")
    response = Response(200, headers, bytes(app.keyspace.read_value(entry)))
    if inm is None and app.read_cache is not None and is_public(path):  # the answer depends on the record alone
        user_b, path_b = app.keyspace.key_bytes(user, path)
        response.cache_tag = (user_b, path_b, entry.loc)
    return response


def _etag_matches(header: bytes, tag: bytes) -> bool:
    if header.strip() == b"*":
        return True
    for candidate in header.split(b","):
        candidate = candidate.strip()
        if candidate.startswith(b"W/"):
            candidate = candidate[2:]
        if candidate == tag:
            return True
    return False


def _list(app: "App", request: Request, user: str, path: str) -> Response:
    limit = parse_limit(request.arg("limit"))
    reverse = parse_bool(request.arg("reverse"), "reverse")
    cursor = request.arg("cursor")
    cursor_path = None
    if cursor:
        prefix = f"pubky://{user}"
        if cursor.startswith("pubky://"):
            if not cursor.startswith(prefix + "/"):
                raise BadRequest("cursor names another user's key")
            cursor = percent_decode(cursor[len(prefix):])  # key_uri escapes control characters and '%'
        elif cursor.startswith(user + "/"):
            cursor = cursor[len(user):]
        if not cursor.startswith("/"):
            raise BadRequest(f"cursor must be a key URI or a path, not {cursor!r}")
        cursor_path = cursor
    require_reader(app, request, user, path)
    paths = app.keyspace.list(user, path, cursor=cursor_path, limit=limit, reverse=reverse)
    body = "\n".join(key_uri(user, p) for p in paths).encode("utf-8")
    return Response(200, [(b"content-type", b"text/plain; charset=utf-8")], body)


def storage_delete(app: "App", request: Request, param: str) -> Response:
    user, path = split_key(request.path)
    if is_directory(path):
        raise InvalidName(f"cannot DELETE a directory path {path!r}")
    app.auth.authorize_write(request.header(b"authorization"), "DELETE", request.path, request.body, user)
    op = WriteOp(DELETE_OP, user, path, replay=app.auth.take_replay())
    return app.writes.submit(request, op, _delete_response)


def _delete_response(result: WriteResult) -> Response:
    return Response(204, [(b"event-id", event_id(result.seq, result.user).encode("ascii"))], b"", result.seq)


def storage_post(app: "App", request: Request, param: str) -> Response:
    body = request.body
    check_value_size(app, body)
    user, path = split_key(request.path)
    if not is_directory(path):
        raise InvalidName(f"POST appends to a collection: the path must end with '/', not {path!r}")
    check_item_dir(path)
    content_type = write_content_type(request)
    app.auth.authorize_write(request.header(b"authorization"), "POST", request.path, body, user)
    op = WriteOp(APPEND_OP, user, path, body, content_type, app.auth.take_replay())
    return app.writes.submit(request, op, _post_response)


def _post_response(result: WriteResult) -> Response:
    location = quote(f"/{result.user}{result.path}", safe="/").encode("ascii")  # a path may hold any UTF-8
    headers = [(b"location", location), (b"etag", etag(result.digest))]
    if result.status == 201:
        headers.append((b"event-id", event_id(result.seq, result.user).encode("ascii")))
    return Response(result.status, headers, b"", result.seq)
