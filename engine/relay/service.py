"""The relay's followers as one service of the server (engine/server.py starts and stops `app.services`).

At start each upstream gets its own task: kind detection when its kind is neither configured nor known from the
log, then its follower (engine/relay/homestream.py or pubky.py) for as long as the server runs. Tasks share one
HTTP client and nothing else, so a slow or dead upstream never holds up another. A one-second tick keeps each
upstream's events/s for /metrics. Invariant: at most one task follows an upstream, and only between start and
stop, so the log has one writer per upstream and records of an upstream are in its order.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from typing import Any

import httpx

from .follower import Follower, backoff_delay
from .homestream import HomestreamFollower
from .pubky import PubkyFollower
from .record import PUBKY, Meta
from .upstreams import UpstreamSpec

log = logging.getLogger("homestream.relay")

RATE_WINDOW = 10  # seconds of samples behind events/s


async def detect_kind(http: httpx.AsyncClient, url: str) -> str:
    """"homestream" if /healthz answers a homestream health document (a relay's too), else "pubky" if /events/
    answers 200; OSError/httpx errors when the upstream cannot be reached, ValueError when it is neither."""
    resp = await http.get(url + "/healthz", timeout=10.0)
    if resp.status_code == 200:
        try:
            doc = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            doc = None
        if isinstance(doc, dict) and "last_seq" in doc:
            return "homestream"
    resp = await http.get(url + "/events/", params={"limit": "1"}, timeout=10.0)
    if resp.status_code == 200:
        return "pubky"
    raise ValueError(f"{url} is neither a homestream server (/healthz) nor a pubky homeserver (/events/ "
                     f"answered {resp.status_code})")


class RelayService:
    def __init__(self, specs: list[UpstreamSpec], log_: Any, recovered: dict[str, tuple[int, Meta]], *,
                 poll_interval: float = 1.0, retry_max: float = 30.0):
        self.log = log_
        self.poll_interval = poll_interval
        self.retry_max = retry_max
        self.specs = specs
        self.followers: list[Follower] = []
        for spec in specs:
            last = recovered.get(spec.name)
            kind = spec.kind
            if last is not None:
                known = "pubky" if last[1].flags & PUBKY else "homestream"
                if kind is not None and kind != known:
                    raise ValueError(f"upstream {spec.name} was followed as {known}: its kind cannot change "
                                     f"(give the {kind} server another name)")
                kind = known
            self.followers.append(self._make(spec, kind, last))
        self.http: httpx.AsyncClient | None = None
        self.tasks: list[asyncio.Task] = []
        self._rates: dict[str, collections.deque] = {f.name: collections.deque(maxlen=RATE_WINDOW + 1)
                                                     for f in self.followers}
        self._ticker: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def _make(self, spec: UpstreamSpec, kind: str | None, last: tuple[int, Meta] | None) -> Follower:
        kw = {"retry_max": self.retry_max, "last": last}
        if kind == "homestream":
            return HomestreamFollower(spec, self.log, **kw)
        if kind == "pubky":
            return PubkyFollower(spec, self.log, poll_interval=self.poll_interval, **kw)
        f = Follower(spec, self.log, **kw)
        f.state = "detecting"
        return f

    # ---- lifecycle (engine/server.py) ----

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.http = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
                                      headers={"user-agent": "homestream-relay"})
        for i in range(len(self.followers)):
            self.tasks.append(loop.create_task(self._follow(i), name=f"relay-upstream-{self.followers[i].name}"))
        self._ticker = loop.call_later(1.0, self._tick)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self.tasks.clear()
        for f in self.followers:
            f.state = "stopped"
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    async def _follow(self, i: int) -> None:
        f = self.followers[i]
        attempt = 0
        while not f.kind:
            try:
                kind = await detect_kind(self.http, f.url)
            except (httpx.HTTPError, OSError, ValueError) as exc:
                f.failed(f"detecting the kind: {exc}")
                f.state = "detecting"
                await asyncio.sleep(backoff_delay(attempt, self.retry_max))
                attempt += 1
                continue
            log.info("upstream %s (%s) is a %s server", f.name, f.url, kind)
            new = self._make(self.specs[i], kind, None)
            new.errors_total, new.lost_at = f.errors_total, f.lost_at
            f = self.followers[i] = new
        await f.run(self.http)

    def _tick(self) -> None:
        now = time.monotonic()
        for f in self.followers:
            self._rates.setdefault(f.name, collections.deque(maxlen=RATE_WINDOW + 1)).append((now, f.events_total))
        self._ticker = self.loop.call_later(1.0, self._tick)

    # ---- what /healthz and /metrics say ----

    def rate(self, f: Follower) -> float:
        samples = self._rates.get(f.name)
        if not samples or len(samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = samples[0], samples[-1]
        return round((n1 - n0) / (t1 - t0), 3) if t1 > t0 else 0.0

    def health(self) -> list[dict]:
        return [f.health() for f in self.followers]

    def metric_lines(self) -> list[str]:
        fams = [
            ("homestream_relay_upstream_up", "gauge", "1 while the upstream is connected (homestream) or answering "
             "polls (pubky)", lambda f: 1 if f.state in ("live", "polling") else 0),
            ("homestream_relay_upstream_lag_seconds", "gauge", "how far the relay's copy of the upstream is behind "
             "(s): the last event's upstream-to-relay delay, or the time since the upstream was lost",
             lambda f: f.lag_s()),
            ("homestream_relay_upstream_events_total", "counter", "upstream events copied into the relay's log",
             lambda f: f.events_total),
            ("homestream_relay_upstream_events_per_second", "gauge",
             f"upstream events copied per second over the last {RATE_WINDOW} s", self.rate),
            ("homestream_relay_upstream_reconnects_total", "counter", "reconnects (homestream) or failed polls "
             "(pubky) of the upstream", lambda f: f.reconnects_total),
            ("homestream_relay_upstream_gaps_total", "counter", "gaps recorded: upstream events lost before the "
             "relay copied them", lambda f: f.gaps_total),
            ("homestream_relay_upstream_skipped_total", "counter", "upstream events the relay could not store "
             "(invalid names)", lambda f: f.skipped_total),
            ("homestream_relay_upstream_relay_seq", "gauge", "the relay's seq of the upstream's newest record",
             lambda f: f.last_seq),
        ]
        lines: list[str] = []
        for name, kind, help_text, read in fams:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for f in self.followers:
                lines.append(f'{name}{{upstream="{f.name}",kind="{f.kind or "unknown"}"}} {read(f)}')
        return lines
