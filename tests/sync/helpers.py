"""In-process sync for tests: a Collection fed directly (no keyspace) served through httpx.MockTransport, so the
real client talks to the real SyncService without sockets."""

from __future__ import annotations

import httpx

from engine.errors import ClientError
from engine.names import content_digest
from engine.sync import wire
from engine.sync.collections import Collection
from engine.sync.server import SyncService


class FakeRegistry:
    def __init__(self):
        self.collections = {}
        self.values: dict[bytes, bytes] = {}
        self.seq = 0

    def collection(self, user: str, dir_path: str) -> Collection:
        coll = self.collections.get((user, dir_path))
        if coll is None:
            coll = self.collections[(user, dir_path)] = Collection(user, dir_path, self.read)
        return coll

    def get(self, user, dir_path):
        return self.collections.get((user, dir_path))

    def read(self, coll, digest, slot=None):
        return self.values[digest]

    def add(self, coll: Collection, item: bytes) -> bytes:
        d = content_digest(item)
        self.values[d] = item
        self.seq += 1
        coll.add(d, self.seq)
        return d


def mock_http(service: SyncService, calls: list | None = None) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        from engine.sync.keys import parse_storage

        path = request.url.path
        assert path.startswith("/sync/")
        try:
            user, dir_path = parse_storage(path[len("/sync/"):])
            req, client = service.parse(request.content)
            coll = service.registry.get(user, dir_path)
            if coll is None:
                return httpx.Response(404, json={"error": "not_found", "message": "no storage"})
            resp = service.answer(coll, req, client)
        except ClientError as exc:
            return httpx.Response(exc.status, json={"error": exc.code, "message": exc.message})
        if calls is not None:
            calls.append((req, resp))
        return httpx.Response(200, content=wire.encode_response(resp))

    return httpx.Client(transport=httpx.MockTransport(handle))
