"""The relay's endpoints (SPEC 5.4): from (method, path) to a handler name. Pure, no I/O.

A relay serves streams and its own health, nothing else: writes anywhere are 405, reads of any other path are
404, both with the usual JSON error body (engine/http/router.py's MethodNotAllowed and NotFound).
"""

from __future__ import annotations

from ..errors import NotFound
from ..http.router import MethodNotAllowed, Route, _pick

_FIXED: dict[str, dict[str, str]] = {
    "/healthz": {"GET": "healthz", "HEAD": "healthz"},
    "/metrics": {"GET": "metrics"},
    "/subscribe": {"GET": "subscribe"},
    "/events/": {"GET": "pubky_events"},
    "/events-stream": {"GET": "pubky_events_stream"},
}


def route(method: str, path: str) -> Route:
    if method == "OPTIONS":
        return Route("preflight")
    methods = _FIXED.get(path)
    if methods is not None:
        return _pick(methods, method, path)
    if method in ("GET", "HEAD"):
        raise NotFound(f"no resource at {path}: a relay serves /subscribe, /events/ and /events-stream only")
    raise MethodNotAllowed(f"{method} is not allowed on {path}: a relay is read-only")
