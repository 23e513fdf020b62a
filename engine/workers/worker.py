"""A worker process of `serve --workers N`: accepts on the shared port and serves every request.

Reads, listings, streams, /sync and the seed's reads are answered from this process's own key index and hub,
kept current by a SegmentFeed (engine/follower/) over the writer's segments, mapped read-only. Writes are
parsed, size-checked and signature-checked here, then forwarded to the writer (forward.py). Before each
request the feed checks the shared cursor (one 8-byte load) and catches up if the writer is ahead, so a write
acknowledged anywhere is seen by every new request here.

Invariants: this process never writes a segment; its `app.log` is the LogReader, whose `durable_seq` is the
applied seq; the hub publishes only applied records, which are durable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
from typing import Any

from ..app import App
from ..config import Settings
from ..follower import SegmentFeed
from ..http.message import Request, Response, json_response
from ..http.offload import Deferred
from ..log.cursor import SharedCursor
from .forward import ForwardedWrites
from .snapshot import MetricsSnapshots

log = logging.getLogger("homestream.worker")

POLL_INTERVAL = 0.02  # a safety net: the writer's commit notices wake the worker at once
MAX_FRAME_EXTRA = 64 * 1024


def worker_healthz(app: App, request: Request, param: str) -> Response:
    ext = app.extensions["worker"]
    up = ext["writes"].link.up
    return json_response(200, {"status": "ok" if up else "degraded", "last_seq": app.log.last_seq,
                               "durable_seq": app.log.durable_seq, "writer": "up" if up else "down",
                               "worker": ext["index"], "workers": ext["workers"],
                               "pid": os.getpid()})


def worker_metrics(app: App, request: Request, param: str) -> Deferred:
    """Every process's figures, collected fresh (engine/workers/snapshot.py): answered from the loop."""
    per_worker = request.arg("per_worker") in ("1", "true")
    deferred = Deferred(request)

    def done(body: bytes) -> None:
        if deferred.on_done is not None:
            deferred.on_done(request, Response(200, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")],
                                               body))

    app.extensions["worker"]["snapshots"].collect(done, per_worker)
    return deferred


async def serve_worker(settings: Settings, index: int, workers: int, run_dir: str,
                       sock: socket.socket | None) -> int:
    from ..server import Server, _install_extensions, log_gauges

    loop = asyncio.get_running_loop()
    cursor = SharedCursor.attach(os.path.join(run_dir, "cursor"))
    feed = SegmentFeed.open(settings.data, cursor)
    app = App(settings, feed.reader, feed.keyspace)
    log_gauges(app.metrics, feed.reader, feed.keyspace)
    app.auth.replay_elsewhere = True
    app.fresh = feed.fresh
    _install_extensions(app)
    writes = ForwardedWrites(run_dir, feed, loop, settings.max_body_bytes + MAX_FRAME_EXTRA)
    app.writes = writes
    m = app.metrics
    m.gauge("homestream_worker_writes_forwarded_total", "writes this worker handed to the writer",
            lambda: writes.forwarded_total)
    m.gauge("homestream_worker_writes_unavailable_total", "writes answered 503 while the writer was down",
            lambda: writes.unavailable_total)
    m.gauge("homestream_worker_reloads_total", "times this worker re-mapped the segments (retention, writer restart)",
            lambda: feed.reloads_total)
    m.gauge("homestream_worker_applied_seq", "newest seq this worker has applied", lambda: feed.applied)
    snapshots = MetricsSnapshots(run_dir, str(index), m, loop)
    app.extensions["worker"] = {"index": index, "workers": workers, "writes": writes, "snapshots": snapshots}
    app.add_handlers({"healthz": worker_healthz, "metrics": worker_metrics})
    server = Server(settings, app, loop, sock=sock)
    server.runs_retention = False
    server.reuse_port = sock is None
    writes.link.start()
    await server.start()
    poll: asyncio.TimerHandle | None = None

    def poll_cursor() -> None:
        nonlocal poll
        try:
            feed.fresh()
        except Exception:
            log.exception("worker %d: catching up failed", index)
        poll = loop.call_later(POLL_INTERVAL, poll_cursor)

    poll = loop.call_later(POLL_INTERVAL, poll_cursor)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker %d (pid %d) serving, applied seq %d", index, os.getpid(), feed.applied)
    await stop.wait()
    await server.shutdown()
    poll.cancel()
    snapshots.close()
    writes.close()
    feed.reader.close()
    cursor.close()
    return 0


def worker_settings(settings: Settings) -> Settings:
    """A worker's copy of the settings: retention is the writer's."""
    return dataclasses.replace(settings, retention_age=0.0, retention_bytes=0)
