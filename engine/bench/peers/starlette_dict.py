"""A peer for `homestream bench http`: Starlette on uvicorn (`--http h11`, uvloop) storing PUT bodies in a
dict, the way a Python developer would write it. Usage: python -m engine.bench.peers.starlette_dict PORT"""

from __future__ import annotations

import sys

STORE: dict[str, bytes] = {}


def build_app():
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def item(request):
        key = request.url.path
        if request.method == "PUT":
            body = await request.body()
            created = key not in STORE
            STORE[key] = body
            return Response(status_code=201 if created else 204)
        body = STORE.get(key)
        if body is None:
            return Response(status_code=404)
        return Response(body, media_type="application/octet-stream")

    return Starlette(routes=[Route("/{path:path}", item, methods=["GET", "PUT"])])


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(build_app(), host="127.0.0.1", port=int(sys.argv[1]), http="h11", loop="uvloop",
                log_level="warning", access_log=False)
