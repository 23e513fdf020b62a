"""Operational endpoints: CORS preflight, /healthz and /metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..http.message import Request, Response, json_response, preflight_headers

if TYPE_CHECKING:
    from .context import AppContext as App


def preflight(app: "App", request: Request, param: str) -> Response:
    return Response(204, preflight_headers())


def healthz(app: "App", request: Request, param: str) -> Response:
    return json_response(200, {"status": "ok", "last_seq": app.log.last_seq, "durable_seq": app.log.durable_seq})


def metrics(app: "App", request: Request, param: str) -> Response:
    return Response(200, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")], app.metrics.render())
