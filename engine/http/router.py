"""Routing: from (method, decoded path) to a handler name and its path parameters. Pure, no I/O.

Fixed endpoints are matched first; anything else that starts with a user id is the storage API. Invariant: the
router never validates names beyond choosing the route; handlers do (so errors name what is wrong).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ClientError, NotFound


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


@dataclass(frozen=True, slots=True)
class Route:
    handler: str
    param: str = ""  # the rest of the path after the endpoint prefix (storage key, sync storage...)


_FIXED: dict[str, dict[str, str]] = {
    "/healthz": {"GET": "healthz", "HEAD": "healthz"},
    "/metrics": {"GET": "metrics"},
    "/subscribe": {"GET": "subscribe"},
    "/events/": {"GET": "pubky_events"},
    "/events-stream": {"GET": "pubky_events_stream"},
    "/get": {"GET": "seed_get", "POST": "seed_get"},
    "/bloom": {"GET": "seed_bloom", "POST": "seed_bloom"},
    "/signup": {"POST": "signup"},
}

_PREFIXED: list[tuple[str, dict[str, str]]] = [
    ("/set/", {"POST": "seed_set"}),
    ("/sync/", {"POST": "sync"}),
]

ADMIN_PREFIX = "/admin/"

_STORAGE = {"GET": "storage_get", "HEAD": "storage_get", "PUT": "storage_put", "DELETE": "storage_delete",
            "POST": "storage_post"}


def route(method: str, path: str) -> Route:
    if method == "OPTIONS":
        return Route("preflight")
    methods = _FIXED.get(path)
    if methods is not None:
        return _pick(methods, method, path)
    if path.startswith(ADMIN_PREFIX):  # every method: the admin API answers 404 when off (engine/admin)
        return Route("admin", path[len(ADMIN_PREFIX):])
    for prefix, methods in _PREFIXED:
        if path.startswith(prefix):
            return _pick(methods, method, path, path[len(prefix):])
    if path == "/":
        raise NotFound("no resource at /")
    return _pick(_STORAGE, method, path, path)


def _pick(methods: dict[str, str], method: str, path: str, param: str = "") -> Route:
    handler = methods.get(method)
    if handler is None:
        raise MethodNotAllowed(f"{method} is not allowed on {path}; allowed: {', '.join(sorted(methods))}")
    return Route(handler, param)
