"""Assembling a relay (SPEC 5.4) from the homeserver's parts: the same App, Server, Log, hub and stream handlers,
with the relay's log records, frames, routes, /healthz and upstream followers.

`build_relay(settings)` is what `homestream relay` passes to engine/server.py's `serve` in place of `build_app`:
it opens the relay's own log (recovery and retention as a homeserver's), recovers each upstream's cursor from it
(engine/relay/cursors.py), and wires the followers in as a service that the server starts after listening and
stops before it flushes the log. Invariant: the relay has no key index and no write endpoint; its log is written
only by its followers.
"""

from __future__ import annotations

import asyncio

from ..api import events, ops, pubky
from ..app import App
from ..config import Settings
from ..http.message import Request, Response, json_response
from ..log.store import Log
from .cursors import newest_records, recover
from .hub import RelayHub
from .routes import route
from .service import RelayService
from .upstreams import parse_upstreams


def healthz(app: App, request: Request, param: str) -> Response:
    relay: RelayService = app.extensions["relay"]
    return json_response(200, {"status": "ok", "role": "relay", "last_seq": app.log.last_seq,
                               "durable_seq": app.log.durable_seq, "upstreams": relay.health()})


def build_relay(settings: Settings) -> App:
    """Open the relay's log, recover its cursors and assemble the application (ValueError for bad upstreams)."""
    from ..server import log_gauges

    specs = parse_upstreams(settings.upstream)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    log_ = Log.open(settings.data, segment_bytes=settings.segment_bytes, fsync=settings.fsync,
                    commit_window=settings.commit_window_ms / 1000.0, max_value_bytes=settings.max_body_bytes)
    log_.native_scan = False  # version 2 records: history scans in Python (engine/pubsub/history.py)
    try:
        service = RelayService(specs, log_, recover(log_, [s.name for s in specs]),
                               poll_interval=settings.poll_interval, retry_max=settings.upstream_retry_max)
    except BaseException:
        log_.close()
        raise
    app = App(settings, log_, None)
    app.route = route
    app.handlers = {
        "preflight": ops.preflight,
        "healthz": healthz,
        "metrics": ops.metrics,
        "subscribe": events.subscribe,
        "pubky_events": pubky.events_page,
        "pubky_events_stream": pubky.events_stream,
    }
    app.extensions["relay"] = service
    app.services.append(service)
    live = newest_records(service.followers)  # the list is kept: a detected upstream replaces its placeholder
    app.apply_retention = lambda age, nbytes: log_.apply_retention(age, nbytes, is_live=live)
    log_gauges(app.metrics, log_)
    app.metrics.families.append(service.metric_lines)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = asyncio.get_event_loop()
    s = settings
    app.hub = RelayHub(log_, app.metrics, loop, inline_max=s.inline_max, send_queue_bytes=s.send_queue_bytes,
                       max_lag_bytes=s.max_lag_bytes, keepalive=s.sse_keepalive)
    return app

