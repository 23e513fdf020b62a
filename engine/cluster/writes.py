"""Writes on a replica: answered `307 Temporary Redirect` with `Location` on the origin's advertised URL (the
same target, so the same signed request is valid there), or `503` with `Retry-After` while no node holds the
lease. Redirecting instead of proxying keeps a replica's loop free of write traffic and lets a client write to
the origin directly from then on. Invariant: only writes are turned away; every read is answered here.
"""

from __future__ import annotations

from typing import Callable

from ..http import router
from ..http.message import Request, Response, error_response

WRITE_HANDLERS = frozenset(("storage_put", "storage_delete", "storage_post", "seed_set", "signup"))
WRITE_METHODS = frozenset(("PUT", "DELETE", "POST"))


def is_write(request: Request) -> bool:
    if request.method not in WRITE_METHODS:
        return False
    try:
        return router.route(request.method, request.path).handler in WRITE_HANDLERS
    except Exception:
        return False  # the handler path answers routing errors


def redirect(origin_url: str | None, request: Request) -> Response:
    if not origin_url:
        response = error_response(503, "no_origin", "no cluster node holds the origin's lease right now; retry")
        response.headers.append((b"retry-after", b"1"))
        return response
    location = origin_url.rstrip("/").encode("ascii") + request.raw_target
    response = error_response(307, "redirect", "writes go to the cluster's origin")
    response.headers.append((b"location", location))
    return response


def write_guard(is_origin: Callable[[], bool], origin_url: Callable[[], str | None]):
    """The App.write_guard of a cluster node: None (go on) on the origin, else the redirect."""

    def guard(request: Request) -> Response | None:
        if is_origin() or not is_write(request):
            return None
        return redirect(origin_url(), request)

    return guard
