"""The policy the request path talks to (SPEC 5.2): one object, called at fixed points of App._dispatch.

Order, as SPEC 2 and 5.2 fix it: framing, size, names, auth, then signup, rate, quota, then the resource.
- `begin(request)` (before the handler, when a per-address limit is on) works out the client address and
  charges its request bucket. A refusal is not answered yet: it is kept as `pending`, because the request's
  names and auth come first;
- a write's handler calls `admit_write(owner)` right after its signature was accepted (the Authenticator's
  write gate): disabled / not signed up → 403; then the pending address refusal or the user's write bucket
  → 429. The quota is checked when the value's size is known, just before the append (Keyspace.put_guard,
  engine/policy/quota.py) → 507. The resource (404, 200 for a known item) comes after;
- `settle(exc)` orders a handler's ClientError against a pending refusal: names, size and auth errors win,
  anything later (the resource) loses to the 429;
- `finish(request, response)` answers 429 for a read still holding a refusal, and counts a stream against the
  client's open-stream limit (decremented when the connection ends).

Invariants: a refused write appends nothing (every refusal is raised before Keyspace.put/delete appends);
`pending` lives for one synchronous dispatch only (App._dispatch clears it); with every limit off, `watching`
is False and a request pays one attribute test.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from ..errors import ClientError, Forbidden, RateLimited
from .clientaddr import UNKNOWN, ClientAddress
from .quota import Quota
from .ratelimit import RateLimiter, StreamCounter
from .signups import write_refusal
from .users import UserTable

log = logging.getLogger("homestream.policy")

# errors that precede the rate limits in SPEC order: names and parameters, method, size, framing, auth
_BEFORE_RATE = frozenset((400, 401, 405, 413, 414, 431))
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class Policy:
    def __init__(self, settings: Any, keyspace: Any, table: UserTable,
                 clock: Callable[[], int] | None = None):
        kw = {} if clock is None else {"clock": clock}
        self.mode = settings.signup
        self.table = table
        self.keyspace = keyspace
        self.addresses = ClientAddress(settings.trusted_proxies)
        self.ip_requests = RateLimiter(settings.rate_ip_requests, **kw) if settings.rate_ip_requests > 0 else None
        self.user_writes = RateLimiter(settings.rate_user_writes, **kw) if settings.rate_user_writes > 0 else None
        self.streams = StreamCounter(settings.rate_ip_streams) if settings.rate_ip_streams > 0 else None
        self.quota = Quota(settings.user_quota_bytes) if settings.user_quota_bytes > 0 else None
        self.watching = self.ip_requests is not None or self.streams is not None
        self.pending: RateLimited | None = None
        self.client = UNKNOWN
        self.refused = {"forbidden": 0, "rate_limited": 0, "quota_exceeded": 0}

    # ---- per request ----

    def begin(self, request: Any) -> None:
        client = self.client = self.addresses.of(request.peer, request.headers.get(b"x-forwarded-for"))
        limiter = self.ip_requests
        if limiter is not None:
            wait = limiter.take(client)
            if wait:
                self.pending = RateLimited(f"more than {limiter.rate:g} requests per second from {client}", wait)

    def fast_admit(self, peer: Any, headers: dict) -> bool:
        """For an answer the connection sends without a Request (the read cache): charge the client's request
        bucket; False sends the request down the ordinary path, which refuses it in order."""
        client = self.addresses.of(peer, headers.get(b"x-forwarded-for"))
        return self.ip_requests.take(client) == 0  # type: ignore[union-attr]

    def admit_write(self, owner: str) -> None:
        """Right after a write's signature was accepted: signup, then rate (raises Forbidden / RateLimited)."""
        table = self.table
        table.maybe_refresh()  # other workers' disables reach this one within a second
        if owner in table.disabled or (self.mode != "open" and owner not in table.signed_up):
            if owner not in table.disabled:
                table.refresh()  # a signup answered by another worker a moment ago
            reason = write_refusal(self.mode, disabled=owner in table.disabled, signed_up=owner in table.signed_up,
                                   has_data=self.keyspace.has_user(owner))
            if reason is not None:
                self.pending = None
                raise Forbidden(reason)
        self.check_pending()
        limiter = self.user_writes
        if limiter is not None:
            wait = limiter.take(owner)
            if wait:
                raise RateLimited(f"more than {limiter.rate:g} writes per second by {owner}", wait)

    def check_pending(self) -> None:
        """Raise the client's request-rate refusal now (for handlers with effects, after their auth)."""
        refusal = self.pending
        if refusal is not None:
            self.pending = None
            raise refusal

    def settle(self, exc: ClientError) -> ClientError:
        """The error to answer: `exc`, unless a pending refusal comes before it in SPEC order."""
        refusal = self.pending
        if refusal is not None and exc.status not in _BEFORE_RATE and exc.status != 403:
            exc = refusal
        if exc.code in self.refused:  # forbidden, rate_limited, quota_exceeded: counted once, as answered
            self.refused[exc.code] += 1
        return exc

    def finish(self, request: Any, response: Any, stream_type: type) -> Any:
        """The response a read handler gave, unless a refusal comes first; streams are counted here."""
        refusal = self.pending
        if refusal is not None:
            self.pending = None
            raise refusal
        counter = self.streams
        if counter is not None and type(response) is stream_type:
            client = self.client
            if counter.full(client):
                raise RateLimited(f"more than {counter.limit} open streams from {client}", 1)
            response.start = _counted(response.start, counter, client)
        return response

    def end(self) -> None:
        self.pending = None

    # ---- what the admin API shows ----

    def users(self) -> list[dict]:
        ks, table = self.keyspace, self.table
        table.refresh()
        names = set(ks.users()) | table.signed_up | table.disabled
        return [{"user": u, "bytes": ks.live_bytes(u), "keys": ks.user_keys(u), "disabled": u in table.disabled}
                for u in sorted(names)]


def startup_warnings(settings: Any) -> list[str]:
    """Lines to log loudly at start: open signups on an address others can reach."""
    if settings.signup == "open" and settings.host not in LOOPBACK_HOSTS and not settings.host.startswith("127."):
        banner = "!" * 78
        return [banner,
                f"!! --signup open on {settings.host}: ANYONE who reaches this port can store data here.".ljust(75)
                + " !!",
                "!! Use --signup token (or closed) and --user-quota-bytes for a public server.".ljust(75) + " !!",
                banner]
    return []


class _CountedStream:
    """A stream that gives its slot back when its connection ends (on_disconnect is called exactly once)."""

    __slots__ = ("inner", "counter", "key")

    def __init__(self, inner: Any, counter: StreamCounter, key: str):
        self.inner, self.counter, self.key = inner, counter, key

    def on_pause(self) -> None:
        self.inner.on_pause()

    def on_resume(self) -> None:
        self.inner.on_resume()

    def on_disconnect(self) -> None:
        counter, self.counter = self.counter, None
        if counter is not None:
            counter.closed(self.key)
        self.inner.on_disconnect()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _counted(start: Callable[[Any], Any], counter: StreamCounter, key: str) -> Callable[[Any], Any]:
    def begin(conn: Any) -> Any:
        counter.opened(key)
        try:
            inner = start(conn)
        except BaseException:
            counter.closed(key)
            raise
        if inner is None:  # the stream was written whole and its connection closed already
            counter.closed(key)
            return None
        return _CountedStream(inner, counter, key)

    return begin
