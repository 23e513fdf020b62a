"""POST /signup?token=<t> (SPEC 5.2): a user, signing with their own key, spends a signup token.

Signed like a write (signed path `/signup`, empty body, replay-protected); answers 201 with `{"user": ...}`.
Order: parameters (400), auth (401), the client's request rate (429), then the token: unknown, used or revoked
→ 403. With `--signup open` it answers 201 and records nothing (anyone may write; a user holding data keeps
writing after a switch to `token` or `closed`, so open signups need no memory that strangers could fill); with
`closed` every signup is 403. Invariant: a token is spent exactly once, and the
spending is on disk (engine/policy/users.py) before the 201 leaves.
"""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest, Forbidden
from ..http.message import Request, Response, json_response
from ..policy.signups import signup_refusal


def signup(app: Any, request: Request, param: str) -> Response:
    token = request.arg("token")
    policy = app.policy
    if policy.mode == "token" and not token:
        raise BadRequest("name the signup token: POST /signup?token=<token>")
    if request.body:
        raise BadRequest("POST /signup takes an empty body")
    user = app.auth.verify(request.header(b"authorization"), "POST", request.path, request.body, write=True)
    policy.check_pending()
    table = policy.table
    if policy.mode == "token":
        refusal = None if table.use_token(token, user) else signup_refusal("token", False)
    else:  # open: nothing to record (anyone may write; users holding data keep writing after a switch)
        refusal = signup_refusal(policy.mode, True)
    if refusal is not None:
        raise Forbidden(refusal)
    return json_response(201, {"user": user})
