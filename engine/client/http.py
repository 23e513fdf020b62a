"""The storage client (SPEC 2): signed PUT/GET/HEAD/DELETE/list/POST over httpx, sync (Client) and async
(AsyncClient), plus `subscribe()` that hands out the auto-resuming event streams of engine/client/stream.py.

Invariants:
- requests are built by one pure helper (`_Requests`) shared by both clients, so sync and async send the same bytes;
- a write signature is never reused inside the replay window: `Signer` remembers the last timestamp per
  (method, path, body hash) and moves it one second on only when the same write would sign the same way again
  (a fresh write uses the clock, so a busy writer does not drift into the future); a write the server refuses
  as a replay (the same write signed in the same second by another process with this key) is re-signed with
  the next second and sent again, at most twice;
- every failure leaves as a ClientFailure: ApiError (status + server code) for an error answer, ConnectionFailed
  for an unreachable server, BadReference for a bad name found before sending.
"""

from __future__ import annotations

import mimetypes
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator
from urllib.parse import urlsplit

import httpx
import nacl.signing

from ..http.auth import sign_request
from ..names import content_hash
from . import refs
from .errors import ApiError, ConnectionFailed
from .keys import load_key, user_id

DEFAULT_URL = "http://127.0.0.1:6286"
URL_ENV = "HOMESTREAM_URL"
REPLAY_WINDOW = 300  # seconds, SPEC 2: a write signature is remembered this long
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
MAX_REDIRECTS = 3  # 307/308 hops a request follows (a cluster replica to its origin is one)
WRITE_METHODS = frozenset({"PUT", "DELETE", "POST"})


def default_url() -> str:
    return os.environ.get(URL_ENV) or DEFAULT_URL


class Signer:
    """HS1 Authorization headers for one key (thread-safe)."""

    def __init__(self, key: nacl.signing.SigningKey, clock: Callable[[], float] = time.time):
        self.key = key
        self.user = user_id(key)
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str, str], int] = {}

    def authorization(self, method: str, path: str, body: bytes = b"") -> str:
        now = int(self.clock())
        ts = now
        if method in WRITE_METHODS:
            k = (method, path, content_hash(body))
            with self._lock:
                last = self._last.get(k)
                if last is not None and last >= now:
                    ts = last + 1  # the same write again within a second: make its signature unique
                self._last[k] = ts
                if len(self._last) > 4096:
                    self._forget(now)
        return sign_request(self.key, method, path, body, ts)

    def _forget(self, now: int) -> None:
        horizon = now - REPLAY_WINDOW - 1
        for k in [k for k, ts in self._last.items() if ts < horizon]:
            del self._last[k]


@dataclass(frozen=True)
class WriteResult:
    """The answer to a PUT, DELETE or POST."""

    status: int
    uri: str
    event_id: str | None
    etag: str | None = None  # content hash, without quotes
    location: str | None = None  # POST: the target of the stored item

    @property
    def created(self) -> bool:
        return self.status == 201


@dataclass(frozen=True)
class Blob:
    """A stored value (GET) or its headers only (HEAD, or 304 Not Modified with `not_modified`)."""

    status: int
    uri: str
    data: bytes
    content_type: str | None
    etag: str | None
    headers: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def text(self) -> str:
        return self.data.decode("utf-8")


@dataclass(frozen=True)
class ListPage:
    entries: list[str]  # pubky:// URIs
    next_cursor: str | None  # pass back as cursor= for the next page; None when this page was the last


@dataclass
class _Request:
    method: str
    target: str
    uri: str
    headers: dict[str, str]
    body: bytes = b""
    params: list[tuple[str, str]] | None = None
    ok: tuple[int, ...] = (200,)
    limit: int | None = None
    signed: str | None = None  # the signed path when the request carries a write signature (for a re-sign)
    owner: str | None = None  # the user the path belongs to (to name the real cause of a 401)


def _etag(headers: httpx.Headers) -> str | None:
    value = headers.get("etag")
    if value is None:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def _body_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"a value is bytes or str, not {type(data).__name__}")


def check_url(url: str) -> str:
    """`url` when it is a usable server URL (http[s]://host[:port], port 1..65535), else BadReference saying why."""
    if not url.startswith(("http://", "https://")):
        raise refs.BadReference(f"server URL must start with http:// or https://, not {url!r}")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raw = parts.netloc.rpartition(":")[2]
        raise refs.BadReference(f"server URL {url!r}: invalid port {raw!r} (a port is 1..65535)") from None
    if port == 0:
        raise refs.BadReference(f"server URL {url!r}: invalid port 0 (a port is 1..65535)")
    if not parts.hostname:
        raise refs.BadReference(f"server URL {url!r} names no host")
    if parts.query or parts.fragment:
        raise refs.BadReference(f"server URL {url!r}: no query or fragment, only scheme, host, port and path")
    return url


class _Requests:
    """Pure request building and response reading shared by Client and AsyncClient."""

    def __init__(self, url: str | None, key: nacl.signing.SigningKey | str | os.PathLike | None):
        self.base = check_url((url or default_url()).rstrip("/"))
        if key is not None and not isinstance(key, nacl.signing.SigningKey):
            key = load_key(key)
        self.signer = Signer(key) if key is not None else None

    @property
    def user(self) -> str | None:
        return self.signer.user if self.signer else None

    def resolve(self, ref: str, directory: bool = False) -> tuple[str, str]:
        return refs.resolve(ref, self.user, directory=directory)

    def _auth(self, headers: dict[str, str], method: str, user: str, path: str, body: bytes, *,
              needed: bool) -> None:
        # writes are always signed (the server may run --open-writes, then it ignores the header); reads only of
        # private paths and only with the owner's key, the one signature that can open them
        if self.signer is not None and needed and self.signer.user == user:
            headers["Authorization"] = self.signer.authorization(method, refs.signed_path(user, path), body)

    @staticmethod
    def moved(resp: httpx.Response) -> str | None:
        """Where a 307/308 sends the same request again (a cluster replica sends writes to its origin, SPEC 5.3):
        the same method, body and signature, since the signature covers the path, not the host."""
        if resp.status_code not in (307, 308):
            return None
        location = resp.headers.get("location", "")
        return location if location.startswith(("http://", "https://")) else None

    def replayed(self, req: _Request, resp: httpx.Response) -> bool:
        """A write refused as a replay: the same write was signed in the same second by another process (or
        client) with this key. Re-signing moves the timestamp on (Signer remembers the one just used)."""
        if resp.status_code != 401 or req.method not in WRITE_METHODS or "Authorization" not in req.headers:
            return False
        try:
            code = resp.json().get("error")
        except ValueError:
            return False
        if code != "replayed":  # engine.http.auth.REPLAYED
            return False
        user = req.signed.split("/", 2)[1] if req.signed else None
        if self.signer is None or user != self.signer.user:
            return False
        req.headers["Authorization"] = self.signer.authorization(req.method, req.signed, req.body)
        return True

    def put(self, ref: str, data: Any, content_type: str | None, guess_type: bool) -> _Request:
        user, path = self.resolve(ref)
        body = _body_bytes(data)
        headers: dict[str, str] = {}
        if content_type is None and guess_type:
            content_type = mimetypes.guess_type(path, strict=False)[0]
        if content_type:
            headers["Content-Type"] = content_type
        self._auth(headers, "PUT", user, path, body, needed=True)
        return _Request("PUT", refs.target(user, path), refs.uri(user, path), headers, body, ok=(200, 201, 204),
                        signed=refs.signed_path(user, path), owner=user)

    def get(self, ref: str, method: str, if_none_match: str | None) -> _Request:
        user, path = self.resolve(ref)
        headers: dict[str, str] = {}
        if if_none_match:
            tag = if_none_match if if_none_match.startswith(('"', "W/")) else f'"{if_none_match}"'
            headers["If-None-Match"] = tag
        self._auth(headers, method, user, path, b"", needed=not path.startswith("/pub/"))
        return _Request(method, refs.target(user, path), refs.uri(user, path), headers, ok=(200, 304), owner=user)

    def delete(self, ref: str) -> _Request:
        user, path = self.resolve(ref)
        headers: dict[str, str] = {}
        self._auth(headers, "DELETE", user, path, b"", needed=True)
        return _Request("DELETE", refs.target(user, path), refs.uri(user, path), headers, ok=(200, 204),
                        signed=refs.signed_path(user, path), owner=user)

    def list(self, ref: str, cursor: str | None, limit: int | None, reverse: bool) -> _Request:
        user, path = self.resolve(ref, directory=True)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise refs.BadReference(f"limit must be a positive integer, not {limit!r}")
        params: list[tuple[str, str]] = []
        if cursor:
            params.append(("cursor", cursor))
        if limit is not None:
            params.append(("limit", str(limit)))
        if reverse:
            params.append(("reverse", "true"))
        headers: dict[str, str] = {}
        self._auth(headers, "GET", user, path, b"", needed=not path.startswith("/pub/"))
        return _Request("GET", refs.target(user, path), refs.uri(user, path), headers, params=params,
                        limit=min(limit or 100, 1000), owner=user)

    def post(self, ref: str, data: Any, content_type: str | None) -> _Request:
        user, path = self.resolve(ref, directory=True)
        body = _body_bytes(data)
        headers: dict[str, str] = {}
        if content_type:
            headers["Content-Type"] = content_type
        self._auth(headers, "POST", user, path, body, needed=True)
        return _Request("POST", refs.target(user, path), refs.uri(user, path), headers, body, ok=(200, 201),
                        signed=refs.signed_path(user, path), owner=user)

    # ---- responses ----

    def check(self, req: _Request, resp: httpx.Response) -> None:
        if resp.status_code not in req.ok:
            error = ApiError.from_response(resp.status_code, resp.content, dict(resp.headers))
            cause = self.unsigned_cause(req) if resp.status_code == 401 and "Authorization" not in req.headers \
                else None
            if cause is not None:
                error = type(error)(error.status, error.code, cause, error.headers)
            raise error

    def unsigned_cause(self, req: _Request) -> str | None:
        """Why a request went unsigned, when that is why it was refused: no key, or a key of another user."""
        if req.owner is None:
            return None
        what = "a write to" if req.method in WRITE_METHODS else "reading"
        if self.signer is None:
            return f"{what} {req.uri} needs its owner's key (--key FILE or HOMESTREAM_KEY)"
        if self.signer.user != req.owner:
            return (f"the key of user {self.signer.user} does not own {req.uri}: {what} it needs the key of "
                    f"user {req.owner}")
        return None

    def write_result(self, req: _Request, resp: httpx.Response) -> WriteResult:
        self.check(req, resp)
        location = resp.headers.get("location")
        uri = req.uri
        if location:
            uri = refs.URI_SCHEME + httpx.URL(location).path.lstrip("/")
        return WriteResult(resp.status_code, uri, resp.headers.get("event-id"), _etag(resp.headers), location)

    def blob(self, req: _Request, resp: httpx.Response) -> Blob:
        self.check(req, resp)
        data = b"" if req.method == "HEAD" or resp.status_code == 304 else resp.content
        return Blob(resp.status_code, req.uri, data, resp.headers.get("content-type"), _etag(resp.headers),
                    dict(resp.headers))

    def page(self, req: _Request, resp: httpx.Response) -> ListPage:
        self.check(req, resp)
        entries = [line for line in resp.text.split("\n") if line.strip()]
        full = req.limit is not None and len(entries) >= req.limit
        return ListPage(entries, entries[-1] if entries and full else None)


def _transport_error(base: str, exc: httpx.HTTPError) -> ConnectionFailed:
    reason = str(exc) or type(exc).__name__
    return ConnectionFailed(f"cannot reach the server at {base}: {reason}; is it running? (start it with "
                            f"`homestream serve`, or pass --url)")


class Client:
    """Synchronous client. `key` is a SigningKey, a key file path, or None (reads of public data only)."""

    def __init__(self, url: str | None = None, key: nacl.signing.SigningKey | str | os.PathLike | None = None, *,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, transport: httpx.BaseTransport | None = None):
        self._r = _Requests(url, key)
        self.http = httpx.Client(timeout=timeout, transport=transport, headers={"User-Agent": _USER_AGENT})

    @classmethod
    def from_env(cls, **kw: Any) -> "Client":
        """URL from $HOMESTREAM_URL, key from $HOMESTREAM_KEY (a file path) when set."""
        return cls(default_url(), os.environ.get("HOMESTREAM_KEY") or None, **kw)

    @property
    def url(self) -> str:
        return self._r.base

    @property
    def user(self) -> str | None:
        """The user id of this client's key, or None without a key."""
        return self._r.user

    @property
    def signer(self) -> Signer | None:
        return self._r.signer

    def resolve(self, ref: str, *, directory: bool = False) -> tuple[str, str]:
        """(user, path) of a reference; a bare /path is this client's own user. BadReference if invalid."""
        return self._r.resolve(ref, directory)

    def _send(self, req: _Request) -> httpx.Response:
        url, params = self._r.base + req.target, req.params
        for _ in range(3 + MAX_REDIRECTS):
            try:
                resp = self.http.request(req.method, url, params=params, headers=req.headers,
                                         content=req.body or None)
            except httpx.HTTPError as exc:
                raise _transport_error(self._r.base, exc) from exc
            moved = self._r.moved(resp)
            if moved is not None:
                url, params = moved, None
                continue
            if not self._r.replayed(req, resp):
                break
        return resp

    def put(self, ref: str, data: bytes | str, content_type: str | None = None, *,
            guess_type: bool = True) -> WriteResult:
        """Store `data` at a key. Without a content type one is guessed from the path's extension."""
        req = self._r.put(ref, data, content_type, guess_type)
        return self._r.write_result(req, self._send(req))

    def get(self, ref: str, *, if_none_match: str | None = None) -> Blob:
        req = self._r.get(ref, "GET", if_none_match)
        return self._r.blob(req, self._send(req))

    def head(self, ref: str) -> Blob:
        req = self._r.get(ref, "HEAD", None)
        return self._r.blob(req, self._send(req))

    def delete(self, ref: str) -> WriteResult:
        req = self._r.delete(ref)
        return self._r.write_result(req, self._send(req))

    def list(self, ref: str, *, cursor: str | None = None, limit: int | None = None,
             reverse: bool = False) -> ListPage:
        req = self._r.list(ref, cursor, limit, reverse)
        return self._r.page(req, self._send(req))

    def iter_list(self, ref: str, *, cursor: str | None = None, reverse: bool = False,
                  page_size: int = 1000) -> Iterator[str]:
        """Every entry of a directory, page by page."""
        while True:
            page = self.list(ref, cursor=cursor, limit=page_size, reverse=reverse)
            yield from page.entries
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def post(self, ref: str, data: bytes | str, content_type: str | None = None) -> WriteResult:
        """Append to the collection `ref` (a directory): the item is stored under its content's name."""
        req = self._r.post(ref, data, content_type)
        return self._r.write_result(req, self._send(req))

    def subscribe(self, patterns: list[str] | str, after: str | int | None = None, **kw: Any):
        """An auto-resuming event stream (engine.client.stream.Stream); see its docstring for the options."""
        from .stream import Stream

        return Stream(self, patterns, after=after, **kw)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncClient:
    """The same calls as Client, awaited; `subscribe()` returns an async iterator."""

    def __init__(self, url: str | None = None, key: nacl.signing.SigningKey | str | os.PathLike | None = None, *,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None):
        self._r = _Requests(url, key)
        self.http = httpx.AsyncClient(timeout=timeout, transport=transport, headers={"User-Agent": _USER_AGENT})

    @classmethod
    def from_env(cls, **kw: Any) -> "AsyncClient":
        return cls(default_url(), os.environ.get("HOMESTREAM_KEY") or None, **kw)

    @property
    def url(self) -> str:
        return self._r.base

    @property
    def user(self) -> str | None:
        return self._r.user

    @property
    def signer(self) -> Signer | None:
        return self._r.signer

    def resolve(self, ref: str, *, directory: bool = False) -> tuple[str, str]:
        return self._r.resolve(ref, directory)

    async def _send(self, req: _Request) -> httpx.Response:
        url, params = self._r.base + req.target, req.params
        for _ in range(3 + MAX_REDIRECTS):
            try:
                resp = await self.http.request(req.method, url, params=params, headers=req.headers,
                                               content=req.body or None)
            except httpx.HTTPError as exc:
                raise _transport_error(self._r.base, exc) from exc
            moved = self._r.moved(resp)
            if moved is not None:
                url, params = moved, None
                continue
            if not self._r.replayed(req, resp):
                break
        return resp

    async def put(self, ref: str, data: bytes | str, content_type: str | None = None, *,
                  guess_type: bool = True) -> WriteResult:
        req = self._r.put(ref, data, content_type, guess_type)
        return self._r.write_result(req, await self._send(req))

    async def get(self, ref: str, *, if_none_match: str | None = None) -> Blob:
        req = self._r.get(ref, "GET", if_none_match)
        return self._r.blob(req, await self._send(req))

    async def head(self, ref: str) -> Blob:
        req = self._r.get(ref, "HEAD", None)
        return self._r.blob(req, await self._send(req))

    async def delete(self, ref: str) -> WriteResult:
        req = self._r.delete(ref)
        return self._r.write_result(req, await self._send(req))

    async def list(self, ref: str, *, cursor: str | None = None, limit: int | None = None,
                   reverse: bool = False) -> ListPage:
        req = self._r.list(ref, cursor, limit, reverse)
        return self._r.page(req, await self._send(req))

    async def iter_list(self, ref: str, *, cursor: str | None = None, reverse: bool = False,
                        page_size: int = 1000) -> AsyncIterator[str]:
        while True:
            page = await self.list(ref, cursor=cursor, limit=page_size, reverse=reverse)
            for entry in page.entries:
                yield entry
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def post(self, ref: str, data: bytes | str, content_type: str | None = None) -> WriteResult:
        req = self._r.post(ref, data, content_type)
        return self._r.write_result(req, await self._send(req))

    def subscribe(self, patterns: list[str] | str, after: str | int | None = None, **kw: Any):
        """An auto-resuming async event stream (engine.client.stream.AsyncStream): `async for ev in ...`."""
        from .stream import AsyncStream

        return AsyncStream(self, patterns, after=after, **kw)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


_USER_AGENT = f"homestream-client/{__import__('engine').__version__}"
