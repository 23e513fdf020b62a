"""The admin API (SPEC 5.2), enabled by `--admin-secret-file FILE`; without it every `/admin/` request is 404.

Each request carries `Authorization: Bearer <the file's contents, stripped>` (compared in constant time), else
401 — checked before anything about the path is said, so an outsider learns nothing past "there is an admin
API". Then:
  POST   /admin/signup-tokens          → 201 {"token": "<t>"}
  DELETE /admin/signup-tokens/<t>      → 204 (also for a token already used, revoked or unknown)
  GET    /admin/users                  → 200 {"users": [{"user", "bytes", "keys", "disabled"}]}
  POST   /admin/users/<user>/disable   → 204; /enable → 204
  DELETE /admin/users/<user>           → 204: every key of the user deleted, one DEL event each (in batches,
                                          one per loop turn), the user's signup forgotten (a disabled user
                                          stays disabled)
An unknown path is 404, a known path with another method 405. Admin requests are not rate limited.
Invariant: each change is on disk before its answer (user table fsynced; deletes answered after their commit).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from pathlib import Path
from typing import Any

from ..errors import NotFound, Unauthorized
from ..http.message import Request, Response, error_response, json_response
from ..http.offload import Deferred
from ..http.router import MethodNotAllowed
from ..names import decode_user

log = logging.getLogger("homestream.admin")


def load_secret(path: str) -> bytes:
    """The secret, stripped; ValueError when the file is empty (an empty secret would open the API to all)."""
    secret = Path(path).read_bytes().strip()
    if not secret:
        raise ValueError(f"admin_secret_file {path} is empty (make a secret with: openssl rand -hex 32)")
    if len(secret) < 16:
        log.warning("the admin secret in %s is shorter than 16 characters: use openssl rand -hex 32", path)
    return secret


def admin(app: Any, request: Request, param: str) -> Response:
    secret = app.admin_secret
    if secret is None:
        raise NotFound("no resource here: the admin API is off (start with --admin-secret-file)")
    header = request.headers.get(b"authorization") or b""
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), secret):
        raise Unauthorized("the admin API needs Authorization: Bearer <the admin secret>")
    parts = param.split("/")
    method = request.method
    policy = app.policy
    if parts == ["signup-tokens"]:
        _allow(method, "POST", request.path)
        return json_response(201, {"token": policy.table.issue_token()})
    if len(parts) == 2 and parts[0] == "signup-tokens" and parts[1]:
        _allow(method, "DELETE", request.path)
        policy.table.revoke_token(parts[1])
        return Response(204)
    if parts == ["users"]:
        _allow(method, "GET", request.path)
        return json_response(200, {"users": policy.users()})
    if len(parts) == 3 and parts[0] == "users" and parts[2] in ("disable", "enable"):
        _allow(method, "POST", request.path)
        policy.table.set_disabled(_user(parts[1]), parts[2] == "disable")
        return Response(204)
    if len(parts) == 2 and parts[0] == "users":
        _allow(method, "DELETE", request.path)
        return delete_user(app, request, _user(parts[1]))
    raise NotFound(f"no admin resource at {request.path}")


DELETE_BATCH = 256  # keys deleted per turn of the event loop (a few ms), so a big user never stalls the server


def delete_user(app: Any, request: Request, user: str) -> Any:
    """Delete every key `user` holds now (one DEL record and event each) and forget their signup; 204 after the
    commit of the last DEL. A user with more than DELETE_BATCH keys is deleted a batch per loop turn, the answer
    then a Deferred (engine/http/offload.py) that the connection finishes like a checked signature."""
    paths = app.keyspace.paths(user)
    if len(paths) <= DELETE_BATCH:
        return _deleted(app, user, _delete_batch(app, user, paths, 0))
    deferred = Deferred(request)
    loop = asyncio.get_running_loop()
    state = [0, 0]  # next index, last seq

    def step() -> None:
        start = state[0]
        try:
            state[1] = _delete_batch(app, user, paths[start:start + DELETE_BATCH], state[1])
            state[0] = start + DELETE_BATCH
            if state[0] < len(paths):
                loop.call_soon(step)
                return
            response = _deleted(app, user, state[1])
        except Exception:  # the log failed under us: what was deleted stays deleted, the caller may retry
            log.exception("deleting user %s", user)
            response = error_response(500, "storage_error", "deleting the user's keys failed part way; retry")
        if deferred.on_done is not None:
            deferred.on_done(request, response)

    loop.call_soon(step)
    return deferred


def _delete_batch(app: Any, user: str, paths: list[str], last: int) -> int:
    keyspace = app.keyspace
    for path in paths:
        record = keyspace.delete(user, path)  # None: deleted meanwhile by the user
        if record is not None:
            last = record.seq
    return last


def _deleted(app: Any, user: str, last: int) -> Response:
    app.policy.table.forget(user)
    return Response(204, durable_seq=last)


def _allow(method: str, allowed: str, path: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(f"{method} is not allowed on {path}; allowed: {allowed}")


def _user(text: str) -> str:
    decode_user(text)  # InvalidName (400) for anything but a user id
    return text
