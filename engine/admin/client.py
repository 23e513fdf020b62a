"""The admin API seen from the client side (SPEC 5.2): one call per endpoint over httpx, for the CLI and tests.

Invariant: every failure leaves as the client library's ClientFailure (ApiError with the server's status and
code, ConnectionFailed when unreachable), so the CLI reports it in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ..client.errors import ApiError, ConnectionFailed, KeyFileError


def read_secret(path: str) -> str:
    try:
        secret = Path(path).read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read the admin secret file {path}: {exc}") from None
    if not secret:
        raise KeyFileError(f"the admin secret file {path} is empty")
    return secret


class AdminClient:
    def __init__(self, url: str, secret: str, timeout: float = 600.0):
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout, connect=10.0),
                                  headers={"authorization": f"Bearer {secret}"})

    def _call(self, method: str, path: str, expect: int) -> Any:
        try:
            resp = self._http.request(method, "/admin/" + path)
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot reach {self.url}: {exc}") from None
        if resp.status_code != expect:
            raise ApiError.from_response(resp.status_code, resp.content, dict(resp.headers))
        return resp.json() if resp.content else None

    def token(self) -> str:
        return self._call("POST", "signup-tokens", 201)["token"]

    def revoke(self, token: str) -> None:
        self._call("DELETE", "signup-tokens/" + quote(token, safe=""), 204)

    def users(self) -> list[dict]:
        return self._call("GET", "users", 200)["users"]

    def disable(self, user: str) -> None:
        self._call("POST", f"users/{quote(user, safe='')}/disable", 204)

    def enable(self, user: str) -> None:
        self._call("POST", f"users/{quote(user, safe='')}/enable", 204)

    def delete_user(self, user: str) -> None:
        self._call("DELETE", "users/" + quote(user, safe=""), 204)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
