"""A peer for loadtest/compare.py: sse-starlette on uvicorn (uvloop + httptools), written the way a Python
developer would write a fan-out: one unbounded asyncio.Queue per subscriber, every published message put on each
queue, and sse-starlette encoding each event for each subscriber. No history, so no resume: a reconnecting client
gets only what is published after it reconnects (its Last-Event-ID header is ignored).

  POST /pub        body = the event's data (JSON carrying "seq"); answered 202 after it is queued everywhere
  GET  /sub        text/event-stream: `id: <seq>`, `event: PUT`, `data: <body>`

Usage: python -m loadtest.peers.sse_starlette_app PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

SUBSCRIBERS: set[asyncio.Queue] = set()


def build_app():
    from sse_starlette.sse import EventSourceResponse
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def publish(request):
        body = (await request.body()).decode()
        seq = json.loads(body)["seq"]  # parsed once per message, not per subscriber
        item = (str(seq), body)
        for queue in SUBSCRIBERS:
            queue.put_nowait(item)
        return Response(status_code=202)

    async def subscribe(request):
        queue: asyncio.Queue = asyncio.Queue()
        SUBSCRIBERS.add(queue)

        async def events():
            try:
                while True:
                    seq, body = await queue.get()
                    yield {"id": seq, "event": "PUT", "data": body}
            finally:
                SUBSCRIBERS.discard(queue)

        return EventSourceResponse(events(), ping=15)

    return Starlette(routes=[Route("/pub", publish, methods=["POST"]), Route("/sub", subscribe)])


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(build_app(), host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                log_level="warning", access_log=False, backlog=4096)
