"""Following a pubky homeserver: its `/events/?cursor=<c>&limit=1000` feed (SPEC 3.5), polled.

A page is lines `PUT pubky://<user><path>` / `DEL pubky://...` and a last line `cursor: <n>` (the cursor of the
page's last event); an empty page is an empty body. The feed names only each page's last cursor, so an event is
kept with the cursor before its page and its 1-based position in it (engine/relay/record.py): after a crash the
relay asks for the same page again and skips what it already holds. A page of `limit` events is followed at once
by the next; a shorter one means the relay has caught up, and it polls again after `--poll-interval`.
Invariants: pages are read in cursor order and every listed event is appended once, in page order; the feed
carries no content hash, size or time, so those events carry none (NO_HASH) and `ts` is the relay's clock; the
feed cannot say that history was dropped, so no gap is ever reported for a pubky upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from ..errors import InvalidName, StorageError
from ..log.record import DEL, PUT
from ..names import percent_decode
from .follower import Follower, backoff_delay
from .record import NO_HASH, PAGE_END, PUBKY, Meta

log = logging.getLogger("homestream.relay")

PAGE_LIMIT = 1000
_KINDS = {"PUT": PUT, "DEL": DEL}
_SCHEME = "pubky://"


def parse_page(text: str) -> tuple[list[tuple[int, str, str]], int | None]:
    """([(kind, user, path)], cursor) of one /events/ page; ([], None) for an empty page; ValueError if bad."""
    if not text.strip():
        return [], None
    lines = text.rstrip("\n").split("\n")
    last = lines.pop()
    if not last.startswith("cursor: "):
        raise ValueError(f"an /events/ page must end with 'cursor: <n>', not {last[:80]!r}")
    cursor = int(last[len("cursor: "):])
    events = []
    for line in lines:
        word, _, uri = line.partition(" ")
        kind = _KINDS.get(word)
        if kind is None or not uri.startswith(_SCHEME):
            raise ValueError(f"not an /events/ line: {line[:80]!r}")
        rest = uri[len(_SCHEME):]
        user, path = rest[:52], percent_decode(rest[52:])
        events.append((kind, user, path))
    return events, cursor


class PubkyFollower(Follower):
    kind = "pubky"

    def __init__(self, *args, poll_interval: float = 1.0, **kw):
        super().__init__(*args, **kw)
        self.poll_interval = poll_interval
        self.polls_total = 0
        self.caught_up_at: float | None = None

    def lag_s(self, now: float | None = None) -> float:
        """Seconds since the relay last read this feed to its end (what it may not have seen yet)."""
        now = time.time() if now is None else now
        if self.caught_up_at is None:
            return round(now - (self.lost_at or now), 3)
        return round(now - self.caught_up_at, 3)

    async def run(self, http: httpx.AsyncClient) -> None:
        attempt = 0
        while True:
            try:
                full = await self.poll(http)
            except StorageError as exc:
                self.failed(f"the relay's log: {exc}", storage=True)
                log.error("upstream %s: cannot append to the relay's log: %s", self.name, exc)
            except (httpx.HTTPError, OSError, ValueError, InvalidName) as exc:
                self.failed(f"{type(exc).__name__}: {exc}")
                log.info("upstream %s: poll failed: %s", self.name, exc)
            else:
                attempt = 0
                if not full:
                    await asyncio.sleep(self.poll_interval)
                continue
            self.reconnects_total += 1
            delay = backoff_delay(attempt, self.retry_max)
            attempt += 1
            await asyncio.sleep(delay)

    async def poll(self, http: httpx.AsyncClient) -> bool:
        """Read one page from the cursor and append its new events; True when the page was full."""
        cursor, skip = self.resume()
        resp = await http.get(self.url + "/events/", params={"cursor": str(cursor), "limit": str(PAGE_LIMIT)},
                              timeout=httpx.Timeout(10.0, read=30.0))
        if resp.status_code != 200:
            raise httpx.HTTPStatusError(f"/events/ answered {resp.status_code}: {resp.text[:300]}",
                                        request=resp.request, response=resp)
        self.polls_total += 1
        events, end = parse_page(resp.text)
        self.connected("polling")
        n = len(events)
        if n:
            contiguous = end - cursor == n
            now_ms = int(time.time() * 1000)
            for k in range(skip + 1, n + 1):
                kind, user, path = events[k - 1]
                uid = cursor + k if contiguous else (end if k == n else 0)
                flags = PUBKY | NO_HASH | (PAGE_END if k == n else 0)
                self.append_event(kind, user, path, b"", None, Meta(self.name, cursor, uid, now_ms, 0, k, flags))
        full = n >= PAGE_LIMIT
        if not full:
            self.caught_up_at = time.time()
        return full
