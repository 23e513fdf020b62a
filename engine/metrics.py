"""Server counters and gauges, rendered in the Prometheus text format (version 0.0.4).

Plain attributes incremented on the hot path (no locks: everything runs on the loop thread, except the log's
committer which reports through its own stats object). Invariant: counter names end in `_total` and only grow.
"""

from __future__ import annotations

import collections
from typing import Callable


class Metrics:
    def __init__(self) -> None:
        self.connections_total = 0
        self.responses: collections.Counter[int] = collections.Counter()
        self.protocol_errors = 0
        self.timeouts = 0
        self.events_total = 0
        self.deliveries_total = 0
        self.delivered_bytes_total = 0
        self.catchups_total = 0
        self.evictions_total = 0
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self.families: list[Callable[[], list[str]]] = []  # labelled series, rendered as given (relay upstreams)

    def response(self, status: int) -> None:
        self.responses[status] += 1

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge or counter read at scrape time (connections, subscribers, log size, ...)."""
        self.gauges[name] = (help_text, read)

    def render(self) -> bytes:
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, value: float, labels: str = "") -> None:
            if not labels:
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name}{labels} {value}")

        metric("homestream_connections_total", "counter", "TCP connections accepted", self.connections_total)
        lines.append("# HELP homestream_http_responses_total HTTP responses by status")
        lines.append("# TYPE homestream_http_responses_total counter")
        for status in sorted(self.responses):
            lines.append(f'homestream_http_responses_total{{status="{status}"}} {self.responses[status]}')
        metric("homestream_protocol_errors_total", "counter", "requests rejected for framing or limits",
               self.protocol_errors)
        metric("homestream_timeouts_total", "counter", "connections closed for a slow request head or body",
               self.timeouts)
        metric("homestream_events_total", "counter", "events published to subscribers", self.events_total)
        metric("homestream_deliveries_total", "counter", "event frames queued to subscribers",
               self.deliveries_total)
        metric("homestream_delivered_bytes_total", "counter", "bytes of event frames queued to subscribers",
               self.delivered_bytes_total)
        metric("homestream_catchups_total", "counter", "times a slow subscriber fell back to reading the log",
               self.catchups_total)
        metric("homestream_evictions_total", "counter", "subscribers ended for lagging past --max-lag",
               self.evictions_total)
        for name, (help_text, read) in sorted(self.gauges.items()):
            kind = "counter" if name.endswith("_total") else "gauge"
            metric(name, kind, help_text, read())
        for family in self.families:
            lines.extend(family())
        return ("\n".join(lines) + "\n").encode("utf-8")
