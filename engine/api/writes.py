"""The decisions of a write, in one place: what a PUT, DELETE or collection append does to the key index.

Handlers (storage.py, seedstore.py) check names, sizes and signatures, then hand a `WriteOp` to `app.writes`
with a `frame(result) -> Response`. In one process `LocalWrites` applies it at once; with `serve --workers N`
the worker's `app.writes` forwards it to the writer process (engine/workers/forward.py), which calls the same
`apply_write` against its own index. So 201/204, the 404 of a missing DELETE, the 200 of a collection item that
already exists and the replay 401 are decided against the one index that appends, and the response is framed
by the same code either way.

Invariants: `apply_write` raises ClientError (nothing written) or returns the result of exactly one decision;
a replay token (the digest and timestamp of a write signature, when the check was left to the writer) is
checked before anything is written, so a replayed write is a 401 (auth) before any 404 (resource), as SPEC 2
orders them, and remembered only when the write is accepted (a refused request may be sent again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import NotFound, Unauthorized
from ..http.auth import REPLAYED
from ..log.record import PUT
from ..names import item_name, key_uri

PUT_OP, DELETE_OP, APPEND_OP = "put", "delete", "append"


@dataclass(slots=True)
class WriteOp:
    kind: str  # PUT_OP, DELETE_OP or APPEND_OP (path is then the collection's directory)
    user: str
    path: str
    body: bytes = b""
    content_type: str = ""
    replay: tuple[bytes, int] | None = None  # (signature digest, timestamp) for the writer's replay memory


@dataclass(slots=True)
class WriteResult:
    status: int  # 201 created, 204 overwritten or deleted, 200 item already present
    seq: int  # the record's seq (of the existing item for a 200)
    digest: bytes  # the value's BLAKE3 digest (empty for a DELETE)
    path: str  # the key written (the item's path for an append)
    user: str = ""


def apply_write(keyspace: Any, op: WriteOp, replay: Any = None, now: float = 0.0) -> WriteResult:
    """Apply `op` to `keyspace`; `replay` (an http.auth.ReplayMemory) checks op.replay first."""
    if op.replay is not None and replay is not None:
        if replay.seen(op.replay[0], now):
            raise Unauthorized("replayed signature: this write was already accepted", code=REPLAYED)
        result = _apply(keyspace, op)
        replay.remember(op.replay[0], op.replay[1], now)  # only an accepted write uses its signature up
        return result
    return _apply(keyspace, op)


def _apply(keyspace: Any, op: WriteOp) -> WriteResult:
    if op.kind == PUT_OP:
        rec, created = keyspace.put(op.user, op.path, op.body, op.content_type)
        return WriteResult(201 if created else 204, rec.seq, rec.digest, op.path, op.user)
    if op.kind == DELETE_OP:
        rec = keyspace.delete(op.user, op.path)
        if rec is None:
            raise NotFound(f"no value at {key_uri(op.user, op.path)}")
        return WriteResult(204, rec.seq, b"", op.path, op.user)
    if op.kind == APPEND_OP:
        item_path = op.path + item_name(op.body)
        existing = keyspace.get(op.user, item_path)
        if existing is not None:
            return WriteResult(200, existing.seq, existing.digest, item_path, op.user)
        rec, _ = keyspace.put(op.user, item_path, op.body, op.content_type)
        assert rec.kind == PUT
        return WriteResult(201, rec.seq, rec.digest, item_path, op.user)
    raise ValueError(f"unknown write {op.kind!r}")


class LocalWrites:
    """`app.writes` of a single process: apply now, frame now."""

    def __init__(self, keyspace: Any):
        self.keyspace = keyspace

    def submit(self, request: Any, op: WriteOp, frame: Callable[[WriteResult], Any]) -> Any:
        return frame(apply_write(self.keyspace, op))
