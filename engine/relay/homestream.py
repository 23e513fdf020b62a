"""Following a homestream upstream: `GET /subscribe?p=*&after=<cursor>&inline=1`, one record per event.

The stream is read by engine/relay/wire.py and its SSE bytes parsed by the client's incremental parser
(engine/client/stream.py). Each PUT/DEL frame is
appended with the upstream's seq as the relay's cursor; a `gap` frame (the upstream's retention dropped what the
relay still needed) becomes one GAP record and moves the cursor past it; `end` or any error reconnects from the
cursor with jittered back-off (`evicted`: at once). Invariants: a frame is appended only if its seq is beyond the
cursor, so a replay by the upstream never duplicates; nothing is acknowledged to the upstream, so a crash of the
relay loses only what it had not yet made durable, and that is read again from the cursor at restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from base64 import b64decode

import httpx

from ..client.stream import SSEParser
from ..errors import StorageError
from ..log.record import DEL, PUT
from .follower import HEALTHY_CONNECTION, Follower, backoff_delay
from .record import NO_HASH, Meta
from .wire import StreamRefused, open_stream

log = logging.getLogger("homestream.relay")

IDLE_TIMEOUT = 45.0  # the upstream sends ": keep-alive" after 15 s of silence
_KINDS = {"PUT": PUT, "DEL": DEL}


class UpstreamEnded(Exception):
    def __init__(self, reason: str):
        super().__init__(f"the upstream ended the stream ({reason})")
        self.reason = reason


class HomestreamFollower(Follower):
    kind = "homestream"

    async def run(self, http: httpx.AsyncClient) -> None:
        attempt = 0
        while True:
            started = time.monotonic()
            now = False
            self.state = "connecting"
            try:
                await self._follow(http)
                reason = "the upstream closed the stream"
            except UpstreamEnded as exc:
                reason = str(exc)
                now = exc.reason == "evicted"
            except StorageError as exc:
                self.failed(f"the relay's log: {exc}", storage=True)
                log.error("upstream %s: cannot append to the relay's log: %s", self.name, exc)
                reason = str(exc)
            except (StreamRefused, OSError, ValueError, KeyError, TypeError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if self.state != "failed":
                self.failed(reason)
            if time.monotonic() - started > HEALTHY_CONNECTION:
                attempt = 0
            delay = 0.0 if now and attempt == 0 else backoff_delay(attempt, self.retry_max)
            attempt += 1
            self.reconnects_total += 1
            log.info("upstream %s: %s; reconnecting in %.2f s after %s", self.name, reason, delay, self.cursor_text)
            await asyncio.sleep(delay)

    async def _follow(self, http: httpx.AsyncClient | None = None) -> None:
        """One connection: read the upstream's stream from the cursor until it ends or fails (engine/relay/wire.py,
        not httpx: it is the relay's hot path)."""
        cursor = self.resume()[0]
        params = [("p", "*"), ("inline", "1"), ("after", str(cursor))]
        parser = SSEParser()
        stream = open_stream(self.url, "/subscribe", params, idle_timeout=IDLE_TIMEOUT)
        try:
            async for data in stream:
                if self.state != "live":
                    self.connected("live")
                for frame in parser.feed(data):
                    self.on_frame(frame)
        finally:
            await stream.aclose()

    def on_frame(self, frame: dict[str, str]) -> None:
        """Append what one upstream frame stands for (PUT, DEL, gap), or raise UpstreamEnded on `end`."""
        event = frame.get("event", "message")
        data = frame.get("data")
        if data is None:
            return
        kind = _KINDS.get(event)
        if kind is not None:
            doc = json.loads(data)
            seq = int(doc["seq"])
            if self.last is not None and seq <= self.last.cursor:
                return  # already copied (a replay at the switch-over of a reconnect)
            hash_text = doc.get("hash") if kind == PUT else None
            digest = b64decode(hash_text) if hash_text else b""
            if len(digest) != 32:
                digest = b""  # not a BLAKE3-256 hash: kept as unknown rather than refusing the event
            body = doc.get("body")
            meta = Meta(self.name, seq, seq, int(doc.get("ts", 0)), int(doc.get("size", 0)) if kind == PUT else 0,
                        flags=NO_HASH if kind == PUT and not digest else 0)
            self.append_event(kind, doc["user"], doc["path"], digest,
                              body.encode("utf-8") if isinstance(body, str) else None, meta)
        elif event == "gap":
            doc = json.loads(data)
            first, last = int(doc["from"]), int(doc["to"])
            if doc.get("upstream") is not None:
                log.warning("upstream %s: it is a relay that lost events of its own upstream %s (%d..%d)",
                            self.name, doc["upstream"], first, last)
                return
            cursor = self.last.cursor if self.last is not None else 0
            if last > cursor:
                self.append_gap(max(first, cursor + 1), last, last)
        elif event == "end":
            reason = str(json.loads(data).get("reason"))
            raise UpstreamEnded(reason)


__all__ = ["HomestreamFollower", "UpstreamEnded"]
