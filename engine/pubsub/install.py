"""Wires the event streams into an App: the hub (fed by the server's commit listener) and the handlers."""

from __future__ import annotations

import asyncio
from typing import Any


def install(app: Any) -> None:
    from ..api import events, pubky
    from .hub import Hub

    s = app.settings
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = asyncio.get_event_loop()
    app.hub = Hub(app.log, app.metrics, loop, inline_max=s.inline_max, send_queue_bytes=s.send_queue_bytes,
                  max_lag_bytes=s.max_lag_bytes, keepalive=s.sse_keepalive)
    from . import history

    app.metrics.gauge("homestream_history_records_examined_total",
                      "log records examined by /events/ pages, reverse /events-stream and stream catch-up scans",
                      lambda: history.TOTALS.examined)
    app.add_handlers({
        "subscribe": events.subscribe,
        "pubky_events": pubky.events_page,
        "pubky_events_stream": pubky.events_stream,
    })
